#!/bin/sh
# mediastack: Docker daemon settings merged into daemon.json (other keys are kept). Idempotent.
set -eu
#@parameters
ROOT="${ROOT:-}"
target="$ROOT$DAEMON_FILE"
backup="$ROOT$BACKUP_DIR$DAEMON_FILE"
# Merging JSON needs a JSON parser: python3 is on every host that runs Docker's own tooling here; the script
# refuses clearly when it is missing rather than overwriting the file.
if ! command -v python3 >/dev/null; then
  echo "daemon.json: python3 is needed to merge JSON; nothing was changed" >&2
  exit 1
fi
mkdir -p "$(dirname "$target")" "$(dirname "$backup")"
# The obsolete overlay2.override_kernel_check storage option is dropped (current Docker rejects it).
merged=$(python3 - "$target" "$SETTINGS" 2>"$target.mediastack-report" <<'MERGE'
import json, sys
path, settings = sys.argv[1], json.loads(sys.argv[2])
try:
    with open(path) as f:
        current = json.load(f)
except FileNotFoundError:
    current = {}
opts = [o for o in current.get("storage-opts", []) if not o.startswith("overlay2.override_kernel_check")]
if "storage-opts" in current:
    current["storage-opts"] = opts
    if not opts:
        del current["storage-opts"]
merged = {**current, **settings}
changed = sorted(k for k in settings if current.get(k) != settings[k])
restart = [k for k in changed if k in ("log-driver", "log-opts", "default-ulimits", "no-new-privileges")]
print(json.dumps(merged, indent=2, sort_keys=True))
print("changed: " + (", ".join(changed) or "nothing"), file=sys.stderr)
print("restart needed for new containers: " + ("yes (" + ", ".join(restart) + ")" if restart else "no"),
      file=sys.stderr)
MERGE
)
report=$(cat "$target.mediastack-report")
rm -f "$target.mediastack-report"
if [ -f "$target" ] && [ "$(cat "$target")" = "$merged" ]; then
  echo "daemon.json: unchanged"
  exit 0
fi
#@backup_once
printf '%s\n' "$merged" > "$target"
echo "daemon.json: $report"
if [ -z "$ROOT" ]; then
  # live-restore is reloadable; the logging and ulimit defaults apply to containers created after a restart
  kill -HUP "$(pidof dockerd)" 2>/dev/null || true
  echo "daemon.json: reloaded dockerd (SIGHUP); restart it in a quiet moment for the rest"
fi
