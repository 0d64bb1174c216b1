"""The host's own kill switch for the download clients, beside gluetun's.

With a VPN, the download clients have no network of their own: they share the VPN container's
namespace, and gluetun's firewall inside it lets nothing out but the tunnel. That is one lock, and it
lives inside a container. The host adds a second one where the container cannot change it: of what the
downloads bridge forwards out of the host, only the tunnel (UDP, or UDP and TCP for OpenVPN, to the VPN
servers' port, and to the servers' addresses when the config names them: `downloads.vpn.endpoints`) passes;
everything else is dropped and counted. So if gluetun's firewall is ever off,
misconfigured or mid-restart with the tunnel down, a client still reaches nothing outside. Nor can it use
the host itself as a way out: from the bridge, the host accepts only replies to what it started. The rules
are in place before Docker starts any container at boot, and stopping the unit leaves them in place.

`mediastack-vpn-guard apply` is idempotent (the nftables table is replaced atomically); `clear` removes
the table. Installed with a boot unit by the same create/delete pair as the shaping (host_tuning).

`mediastack-vpn-guard rejoin` (a timer runs it every 30 s) starts the download clients the engine left
stopped: when the VPN container is down longer than a client's health check allows, the check ends the
client and its restart fails ("cannot join network of a non running container: <id>"); Docker 20.10
does not try again, so the client would stay down after the VPN container returns. Once that container is
healthy, `rejoin` starts each exited container labelled as a download client whose network mode is the VPN
container's and whose last start failed (the engine records the error; a user's `docker stop` leaves none).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from mediastack.catalog.services import CATALOG
from mediastack.host.scripts import script
from mediastack.host.tuning import tool_create, tool_delete
from mediastack.model.config import DOWNLOADS_BRIDGE, StackConfig, VpnType
from mediastack.quoting import sh
from mediastack_vocabulary import Label, Role

NFT_TABLE = "mediastack_vpn_guard"
NAME = "mediastack-vpn-guard"
REJOIN = "mediastack-vpn-rejoin"
VPN_CONTAINER = next(s.name for s in CATALOG.values() if s.role == Role.vpn)
# As often as the clients' own health check runs (single/service.py HEALTH_INTERVAL): a client the engine left
# stopped is back within one check of the VPN container turning healthy.
REJOIN_EVERY = "30s"


def guard_tool(port: int, tcp_too: bool, bridge: str = DOWNLOADS_BRIDGE, endpoints: Sequence[str] = ()) -> str:
    """The script installed as mediastack-vpn-guard (vpn_guard.sh): `apply`, `clear`, `status` or `rejoin`. With
    `endpoints` (addresses or networks, from the config's grammar) the VPN port passes only to them."""
    protocols = "{ udp, tcp }" if tcp_too else "udp"
    nets = [ipaddress.ip_network(e, strict=True) for e in endpoints]
    shown = [str(n.network_address) if n.num_addresses == 1 else str(n) for n in nets]
    v4 = ", ".join(t for t, n in zip(shown, nets, strict=True) if n.version == 4)
    v6 = ", ".join(t for t, n in zip(shown, nets, strict=True) if n.version == 6)
    to = ", ".join(shown)
    blocks = {
        "origin": f"# {NAME}: of what {bridge} forwards out of the host, only the VPN tunnel ({protocols} port "
        f"{port}{' to ' + to if to else ''}) passes.",
        "parameters": "\n".join(
            [
                f"TABLE={NFT_TABLE}",
                f"BRIDGE={sh(bridge)}",
                f"PORT={port}",
                f"PROTOCOLS={sh(protocols)}",
                f"ENDPOINTS4={sh(v4)}",
                f"ENDPOINTS6={sh(v6)}",
                f"TO={sh(to)}",
                f"VPN_CONTAINER={sh(VPN_CONTAINER)}",
                f"ROLE_LABEL={sh(Label.role)}",
                f"CLIENT_ROLE={sh(Role.download_client.value)}",
            ]
        ),
    }
    return script("vpn_guard.sh", blocks)


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


def rejoin_units() -> dict[str, str]:
    """`rejoin` as a oneshot service and the timer that runs it (after Docker: it asks the engine)."""
    service = f"""[Unit]
Description=mediastack: start the download clients the engine left stopped outside the VPN container
After=docker.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/{NAME} rejoin
"""
    timer = f"""[Unit]
Description=mediastack: every {REJOIN_EVERY}, start the download clients the engine left stopped

[Timer]
OnBootSec=1min
OnUnitActiveSec={REJOIN_EVERY}
AccuracySec=5s

[Install]
WantedBy=timers.target
"""
    return {f"{REJOIN}.service": service, f"{REJOIN}.timer": timer}


def guard_scripts(config: StackConfig) -> dict[str, str]:
    """By file name, as `mediastack render` writes them under hosts/<host>/ (none without a VPN)."""
    vpn = config.downloads.vpn
    if vpn is None:
        return {}
    tool = guard_tool(vpn.port, tcp_too=vpn.type is VpnType.openvpn, endpoints=vpn.endpoints)
    unit = guard_unit()
    rejoin = rejoin_units()
    return {
        "vpn-guard.sh": tool,
        f"{NAME}.service": unit,
        **rejoin,
        "vpn-guard-create.sh": tool_create("vpn-guard", NAME, tool, unit, rejoin),
        "vpn-guard-delete.sh": tool_delete("vpn-guard", NAME, list(rejoin)),
    }
