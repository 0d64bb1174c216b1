#!/bin/sh
#@origin
# directory by the user its image writes as. Idempotent.
# ROOT prefixes every path (empty on a real host; a sandbox directory in tests).
set -eu
ROOT="${ROOT:-}"
changed=0
record="$ROOT/var/lib/mediastack/created/storage"
mkdir -p "$(dirname "$record")"
repaired=0
make_dir() {
  target="$ROOT$1"
  # Only what this script creates gets the stack's owner and mode; existing directories are the user's.
  if [ ! -d "$target" ]; then
    mkdir "$target"
    printf '%s\n' "$1" >> "$record"
    if [ "$(id -u)" = 0 ]; then
      chown "$2" "$target"
    fi
    chmod "$3" "$target"
    changed=$((changed + 1))
  elif [ "$4" = repair ] && [ "$(id -u)" = 0 ] && [ "$(stat -c %u:%g "$target")" != "$2" ]; then
    chown "$2" "$target"
    chmod "$3" "$target"
    repaired=$((repaired + 1))
  fi
}
#@directories
if [ "$repaired" -gt 0 ]; then
  echo "storage: $repaired directories handed to the user their image writes as"
fi
echo "storage: $changed directories created"
