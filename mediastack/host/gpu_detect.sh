#!/bin/sh
# mediastack: report the host's transcoding hardware; changes nothing.
set -u
#@parameters
ROOT="${ROOT:-}"
found=none
render=""
for node in "$ROOT"/dev/dri/renderD*; do
  [ -e "$node" ] && render=$(basename "$node") && break
done
if [ -n "$render" ]; then
  vendor=$(cat "$ROOT/sys/class/drm/$render/device/vendor" 2>/dev/null || true)
  case "$vendor" in
    0x8086) found=intel ;;
    0x1002) found=amd ;;
    0x10de) found=nvidia ;;
    *) found=dri ;;
  esac
fi
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  found=nvidia
fi
echo "gpu: configured $CONFIGURED, detected $found"
if [ "$found" != "$CONFIGURED" ] && [ "$found" != "dri" ]; then
  echo "gpu: the stack config says $CONFIGURED; set hosts[].gpu to $found to match the hardware"
fi
