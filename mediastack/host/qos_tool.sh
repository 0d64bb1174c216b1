#!/bin/sh
#@origin
# Usage: mediastack-qos apply | clear | status. Managed by mediastack (pulumi); see docs/host-tuning.md.
set -eu
#@parameters
# What each device's root qdisc was before the first apply (tc state and this record both end at reboot).
SAVED="${MEDIASTACK_QOS_STATE:-/run/mediastack/qos}"

state() {
  for dev in "$IFACE" "$BRIDGE"; do
    tc qdisc show dev "$dev" 2>/dev/null || true
    tc class show dev "$dev" 2>/dev/null || true
  done
  nft list table inet "$TABLE" 2>/dev/null || true
}

root_htb() {
  # HTB cannot change its own parameters in place: keep a matching root, replace any other (noting, once,
  # what it was, so that clear puts it back).
  if ! tc qdisc show dev "$1" | grep -q "^qdisc htb 1: root .* default 0x$2 "; then
    if [ ! -e "$SAVED/$1" ]; then
      mkdir -p "$SAVED"
      tc qdisc show dev "$1" 2>/dev/null | sed -n '/ root /{p;q;}' > "$SAVED/$1"
    fi
    tc qdisc del dev "$1" root 2>/dev/null || true
    tc qdisc add dev "$1" root handle 1: htb default "$2"
  fi
}

restore_root() {
  # After our root is gone: the kernel's default root (handle 0:) comes back by itself; any other is added
  # again as tc showed it (sizes like 10240p read back as numbers), or with its defaults if tc refuses those.
  [ -f "$SAVED/$1" ] || return 0
  read -r _ kind handle _ rest < "$SAVED/$1" || true
  rm -f "$SAVED/$1"
  rmdir "$SAVED" 2>/dev/null || true
  case "$handle" in
    "" | 0:) return 0 ;;
  esac
  params=$(printf '%s\n' "$rest" | sed -e 's/^refcnt [0-9]* *//' -e 's/\([0-9]\)p\( \|$\)/\1\2/g')
  # shellcheck disable=SC2086 # tc's own words, split on purpose
  if tc qdisc add dev "$1" root handle "$handle" "$kind" $params 2>/dev/null; then
    echo "qos: $1's earlier root qdisc ($kind $handle) restored"
  elif tc qdisc add dev "$1" root handle "$handle" "$kind" 2>/dev/null; then
    echo "qos: $1's earlier root qdisc ($kind $handle) restored with its defaults; it had: $params" >&2
  else
    echo "qos: could not restore $1's earlier root qdisc: $kind $handle $params" >&2
  fi
}

leaves=fq_codel
leaf() {
  # fq_codel keeps each class's queue short and fair between flows; pfifo where the kernel lacks it.
  if ! tc qdisc replace dev "$1" parent "$2" handle "$3" fq_codel 2>/dev/null; then
    tc qdisc replace dev "$1" parent "$2" handle "$3" pfifo limit 1000
    leaves=pfifo
  fi
}

apply() {
  if ! ip link show "$IFACE" >/dev/null 2>&1; then
    echo "qos: interface $IFACE does not exist; set hosts[].link.interface to the internet-facing one" >&2
    exit 1
  fi
  before=$(state)
#@shaping
  if [ "$before" = "$(state)" ]; then
    echo "qos: unchanged"
  else
    echo "qos: applied ($CAPS; leaf queues $leaves)"
  fi
  if [ "$leaves" = pfifo ]; then
    echo "qos: this kernel has no fq_codel; the classes use pfifo queues" >&2
  fi
}

clear() {
  before=$(state)
  if tc qdisc show dev "$IFACE" 2>/dev/null | grep -q "^qdisc htb 1: root"; then
    tc qdisc del dev "$IFACE" root
  fi
  restore_root "$IFACE"
  if tc qdisc show dev "$BRIDGE" 2>/dev/null | grep -q "qdisc htb 1: root"; then
    tc qdisc del dev "$BRIDGE" root
  fi
  restore_root "$BRIDGE"
  nft delete table inet "$TABLE" 2>/dev/null || true
  if [ "$before" = "$(state)" ]; then
    echo "qos: nothing to clear"
  else
    echo "qos: cleared"
  fi
}

case "${1:-}" in
  apply) apply ;;
  clear) clear ;;
  status) state ;;
  *) echo "usage: $0 apply|clear|status" >&2; exit 2 ;;
esac
