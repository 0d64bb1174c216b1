#!/bin/sh
#@origin
# Usage: mediastack-vpn-guard apply | clear | status. Managed by mediastack (pulumi); see components/vpn_guard.py.
set -eu
#@parameters

state() {
  nft list table inet "$TABLE" 2>/dev/null | grep -v "counter packets" || true
}

# The rules that let the tunnel out: to the VPN servers (ENDPOINTS4/ENDPOINTS6: nftables set elements) on the
# VPN port, or to any address on that port when the config names no server.
tunnel_rules() {
  out="iifname \"$BRIDGE\" oifname != \"$BRIDGE\""
  allow="meta l4proto $PROTOCOLS th dport $PORT accept"
  if [ -z "$ENDPOINTS4$ENDPOINTS6" ]; then
    printf '    %s %s\n' "$out" "$allow"
  fi
  if [ -n "$ENDPOINTS4" ]; then
    printf '    %s ip daddr { %s } %s\n' "$out" "$ENDPOINTS4" "$allow"
  fi
  if [ -n "$ENDPOINTS6" ]; then
    printf '    %s ip6 daddr { %s } %s\n' "$out" "$ENDPOINTS6" "$allow"
  fi
}

apply() {
  before=$(state)
  tunnel=$(tunnel_rules)
  # Replaced as a whole (the first line makes sure there is a table to delete).
  nft -f - <<RULES
table inet $TABLE
delete table inet $TABLE
table inet $TABLE {
  chain forward {
    type filter hook forward priority filter - 10; policy accept;
$tunnel
    iifname "$BRIDGE" oifname != "$BRIDGE" counter drop
  }
  chain input {
    type filter hook input priority filter - 10; policy accept;
    iifname "$BRIDGE" ct state established,related accept
    iifname "$BRIDGE" counter drop
  }
}
RULES
  if [ "$before" = "$(state)" ]; then
    echo "vpn-guard: unchanged"
  else
    echo "vpn-guard: applied (only $PROTOCOLS port $PORT${TO:+ to $TO} leaves $BRIDGE)"
  fi
}

clear() {
  if nft delete table inet "$TABLE" 2>/dev/null; then
    echo "vpn-guard: cleared"
  else
    echo "vpn-guard: nothing to clear"
  fi
}

case "${1:-}" in
  apply) apply ;;
  clear) clear ;;
  status) nft list table inet "$TABLE" ;;
  *) echo "usage: $0 apply|clear|status" >&2; exit 2 ;;
esac
