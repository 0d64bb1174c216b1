#!/bin/sh
# Removes the stack's host directories that are still empty and that the create step made (its record says
# which); never touches data, nor a directory that was there before (/srv).
set -eu
ROOT="${ROOT:-}"
removed=0
record="$ROOT/var/lib/mediastack/created/storage"
if [ ! -f "$record" ]; then
  echo "storage: no record of the directories the stack created; all left in place"
  exit 0
fi
for dir in \
#@directories
do
  if grep -qxF -e "$dir" "$record" && [ -d "$ROOT$dir" ] && rmdir "$ROOT$dir" 2>/dev/null; then
    removed=$((removed + 1))
  fi
done
rm -f "$record"
(cd "$ROOT/" && rmdir -p var/lib/mediastack/created 2>/dev/null) || true
echo "storage: $removed empty directories removed"
