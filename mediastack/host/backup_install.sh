#!/bin/sh
# mediastack: install mediastack-backup with its timers. Idempotent. Standard input: the repository password on the first
# line, then the repository's credentials as shell assignments (never in the plan or on a command line).
set -eu
ROOT="${ROOT:-}"
changed=""
#@files
state="$ROOT/var/lib/mediastack/restic"
mkdir -p "$state"
chmod 711 "$state"
password=""
IFS= read -r password || true
if [ -z "$password" ]; then
  echo "backup: no repository password on standard input" >&2
  exit 1
fi
credentials=$(cat)
umask 077
if [ ! -f "$state/password" ] || [ "$(cat "$state/password")" != "$password" ]; then
  printf '%s\n' "$password" > "$state/password.new"
  mv "$state/password.new" "$state/password"
  changed="$changed password"
fi
if [ -n "$credentials" ]; then
  if [ ! -f "$state/env" ] || [ "$(cat "$state/env")" != "$credentials" ]; then
    printf '%s\n' "$credentials" > "$state/env.new"
    mv "$state/env.new" "$state/env"
    changed="$changed credentials"
  fi
elif [ -f "$state/env" ]; then
  rm -f "$state/env"
  changed="$changed credentials"
fi
chmod 600 "$state/password"
if [ -z "$changed" ]; then
  echo "backup: files unchanged"
else
  echo "backup: installed$changed"
fi
if [ -z "$ROOT" ]; then
  missing=""
  command -v restic >/dev/null 2>&1 || missing="$missing restic"
  command -v sqlite3 >/dev/null 2>&1 || missing="$missing sqlite3"
  if [ -n "$missing" ]; then
    if command -v apt-get >/dev/null 2>&1; then
      # shellcheck disable=SC2086
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
    else
      echo "backup: install$missing on this host (Debian: apt-get install$missing)" >&2
      exit 1
    fi
  fi
  systemctl daemon-reload
  /usr/local/sbin/mediastack-backup init
  systemctl enable --now --quiet mediastack-backup.timer mediastack-backup-check.timer
fi
