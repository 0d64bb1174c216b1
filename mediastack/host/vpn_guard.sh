#!/bin/sh
#@origin
# Usage: mediastack-vpn-guard apply | clear | status | rejoin. Managed by mediastack (pulumi); see
# mediastack/host/vpn_guard.py.
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

# A download client whose VPN container is down longer than its health check allows is ended by the check, and
# its restart fails ("cannot join network of a non running container: <id>"); Docker 20.10 does not try
# again. Once the VPN container is healthy, start the exited containers labelled as download clients that share
# its namespace and whose last start failed: the engine records that error (State.Error); a container a user
# stopped has none, and one whose restart policy is "no" was not meant to come back.
rejoin() {
  format='{{.Id}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}'
  if ! vpn=$(docker inspect --type container --format "$format" "$VPN_CONTAINER" 2>/dev/null); then
    echo "vpn-guard: no container $VPN_CONTAINER: nothing to rejoin"
    return 0
  fi
  read -r id status health <<EOF
$vpn
EOF
  if [ "$status" != running ] || [ "$health" != healthy ]; then
    echo "vpn-guard: $VPN_CONTAINER is $status (health: $health): no client started until it is healthy"
    return 0
  fi
  format='{{.Name}} {{.HostConfig.NetworkMode}} {{.HostConfig.RestartPolicy.Name}} {{if .State.Error}}failed{{else}}stopped{{end}}'
  exited=$(docker ps --all --quiet --no-trunc --filter "label=$ROLE_LABEL=$CLIENT_ROLE" --filter status=exited)
  for client in $exited; do
    read -r name mode policy how <<EOF
$(docker inspect --type container --format "$format" "$client")
EOF
    if [ "$mode" != "container:$id" ] && [ "$mode" != "container:$VPN_CONTAINER" ]; then
      continue  # not in this VPN container's namespace (one replaced since: `pulumi up` replaces its clients)
    fi
    if [ "$how" != failed ] || [ "$policy" = no ]; then
      continue  # stopped on purpose
    fi
    if docker start "$client" >/dev/null; then
      echo "vpn-guard: started ${name#/} in $VPN_CONTAINER's namespace (its restart had failed while $VPN_CONTAINER was down)"
    else
      echo "vpn-guard: could not start ${name#/}; the next run tries again" >&2
    fi
  done
}

case "${1:-}" in
  apply) apply ;;
  clear) clear ;;
  status) nft list table inet "$TABLE" ;;
  rejoin) rejoin ;;
  *) echo "usage: $0 apply|clear|status|rejoin" >&2; exit 2 ;;
esac
