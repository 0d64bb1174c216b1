"""The host's own kill switch for the download clients, beside gluetun's.

With a VPN, the download clients have no network of their own: they share the VPN container's
namespace, and gluetun's firewall inside it lets nothing out but the tunnel. That is one lock, and it
lives inside a container. The host adds a second one where the container cannot change it: of what the
downloads bridge forwards out of the host, only the tunnel (UDP, or UDP and TCP for OpenVPN, to the VPN
servers' port) passes; everything else is dropped and counted. So if gluetun's firewall is ever off,
misconfigured or mid-restart with the tunnel down, a client still reaches nothing outside. Nor can it use
the host itself as a way out: from the bridge, the host accepts only replies to what it started. The rules
are in place before Docker starts any container at boot, and stopping the unit leaves them in place.

`mediastack-vpn-guard apply` is idempotent (the nftables table is replaced atomically); `clear` removes
the table. Installed with a boot unit by the same create/delete pair as the shaping (host_tuning).
"""

from __future__ import annotations

from .config import DOWNLOADS_BRIDGE, StackConfig, VpnType
from .host_tuning import tool_create, tool_delete
from .quoting import sh

NFT_TABLE = "mediastack_vpn_guard"
NAME = "mediastack-vpn-guard"


def guard_tool(port: int, tcp_too: bool, bridge: str = DOWNLOADS_BRIDGE) -> str:
    protocols = "{ udp, tcp }" if tcp_too else "udp"
    return f"""#!/bin/sh
# {NAME}: of what {bridge} forwards out of the host, only the VPN tunnel ({protocols} port {port}) passes.
# Usage: {NAME} apply | clear | status. Managed by mediastack (pulumi); see components/vpn_guard.py.
set -eu
TABLE={NFT_TABLE}
BRIDGE={sh(bridge)}

state() {{
  nft list table inet "$TABLE" 2>/dev/null | grep -v "counter packets" || true
}}

apply() {{
  before=$(state)
  # Replaced as a whole (the first line makes sure there is a table to delete).
  nft -f - <<EOF
table inet $TABLE
delete table inet $TABLE
table inet $TABLE {{
  chain forward {{
    type filter hook forward priority filter - 10; policy accept;
    iifname "$BRIDGE" oifname != "$BRIDGE" meta l4proto {protocols} th dport {port} accept
    iifname "$BRIDGE" oifname != "$BRIDGE" counter drop
  }}
  chain input {{
    type filter hook input priority filter - 10; policy accept;
    iifname "$BRIDGE" ct state established,related accept
    iifname "$BRIDGE" counter drop
  }}
}}
EOF
  if [ "$before" = "$(state)" ]; then
    echo "vpn-guard: unchanged"
  else
    echo "vpn-guard: applied (only {protocols} port {port} leaves $BRIDGE)"
  fi
}}

clear() {{
  if nft delete table inet "$TABLE" 2>/dev/null; then
    echo "vpn-guard: cleared"
  else
    echo "vpn-guard: nothing to clear"
  fi
}}

case "${{1:-}}" in
  apply) apply ;;
  clear) clear ;;
  status) nft list table inet "$TABLE" ;;
  *) echo "usage: $0 apply|clear|status" >&2; exit 2 ;;
esac
"""


def guard_unit() -> str:
    """Applied at boot before Docker starts any container (the rules name the bridge, which need not exist
    yet), and not cleared when the unit stops: only the stack's delete step (`clear`) opens the switch."""
    return f"""[Unit]
Description=mediastack: downloads leave the host only through the VPN tunnel (nftables)
DefaultDependencies=no
After=local-fs.target
Before=docker.service network-pre.target
Wants=network-pre.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/{NAME} apply

[Install]
WantedBy=multi-user.target docker.service
"""


def guard_scripts(config: StackConfig) -> dict[str, str]:
    """By file name, as `mediastack render` writes them under hosts/<host>/ (none without a VPN)."""
    vpn = config.downloads.vpn
    if vpn is None:
        return {}
    tool = guard_tool(vpn.port, tcp_too=vpn.type is VpnType.openvpn)
    unit = guard_unit()
    return {
        "vpn-guard.sh": tool,
        f"{NAME}.service": unit,
        "vpn-guard-create.sh": tool_create("vpn-guard", NAME, tool, unit),
        "vpn-guard-delete.sh": tool_delete("vpn-guard", NAME),
    }
