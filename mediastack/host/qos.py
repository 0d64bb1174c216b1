"""Download bandwidth control: the download clients cannot saturate the line, and streams keep priority.

The download clients reach the internet only through the `downloads` Docker network, whose bridge has a
fixed name (DOWNLOADS_BRIDGE). The host shapes two places:

- Upload, on the internet-facing interface: an HTB tree with two classes. 1:10 carries everything else
  (remote streams through Traefik, LAN streams, the host) at priority 0 up to the interface's speed;
  1:20 carries the download clients at priority 1, capped at `downloads.max_up`. Their packets are put
  into 1:20 by one nftables rule that sets the packet's priority (HTB reads it as a class id) as they are
  forwarded from the bridge to the interface, before Docker's masquerade hides their source. No tc
  classifier module is needed, only HTB and nftables.
- Download, on the bridge's egress (what the host forwards to the clients): HTB capped at
  `downloads.max_down`. Capping below the line rate keeps the ISP's queue empty, so a stream's packets do
  not wait behind a torrent's.

Every leaf gets fq_codel (fair queueing with a short, managed queue) where the kernel has it; a kernel
built without it gets pfifo, and the script says so.

`mediastack-qos apply` is idempotent (tc and nft `replace`); `clear` removes exactly what apply made. A
systemd unit applies it at boot (tc state does not survive a reboot), installed and removed by the
create/delete pair the Pulumi command runs, with host_tuning's backup-once and exact-restore steps.
"""

from __future__ import annotations

from dataclasses import dataclass

from mediastack.host.files import tool_create, tool_delete, tool_unit
from mediastack.host.scripts import script
from mediastack.model.config import DOWNLOADS_BRIDGE, StackConfig
from mediastack.model.units import format_rate
from mediastack.quoting import sh

UNIT_FILE = "/etc/systemd/system/mediastack-qos.service"
NFT_TABLE = "mediastack_qos"
# HTB class ids: the rest of the traffic (priority) and the download clients (capped).
PRIORITY_CLASS = "1:10"
DOWNLOADS_CLASS = "1:20"


@dataclass(frozen=True)
class QosPlan:
    interface: str  # internet-facing interface
    nic_speed: int  # bit/s
    bridge: str
    up: int | None  # download clients' upload cap, bit/s
    down: int | None  # download clients' download cap, bit/s


def qos_plan(config: StackConfig) -> QosPlan | None:
    """What the host shapes, or None when the host has no `link` (the clients' own limits still apply)."""
    link = config.host.link
    if link is None:
        return None
    down, up = config.download_caps()
    return QosPlan(interface=link.interface, nic_speed=link.nic_speed, bridge=DOWNLOADS_BRIDGE, up=up, down=down)


def _htb_params(rate: int) -> str:
    """Burst of 1 ms at the class's rate (HTB's default is one packet, too small at gigabit speeds) and a
    quantum in the range HTB wants."""
    rate_bytes = rate // 8
    burst = max(rate_bytes // 1000, 1600)
    quantum = min(max(rate_bytes // 1000, 1514), 200000)
    return f"burst {burst} cburst {burst} quantum {quantum}"


def _uplink(plan: QosPlan) -> str:
    if plan.up is None:
        return '  echo "qos: no upload cap configured; $IFACE left alone"\n'
    nic, up = plan.nic_speed, plan.up
    rest = nic - up
    return f"""  root_htb "$IFACE" 10
  tc class replace dev "$IFACE" parent 1: classid 1:1 htb rate {format_rate(nic)} {_htb_params(nic)}
  tc class replace dev "$IFACE" parent 1:1 classid {PRIORITY_CLASS} htb rate {format_rate(rest)} \\
    ceil {format_rate(nic)} prio 0 {_htb_params(nic)}
  tc class replace dev "$IFACE" parent 1:1 classid {DOWNLOADS_CLASS} htb rate {format_rate(up)} \\
    ceil {format_rate(up)} prio 1 {_htb_params(up)}
  leaf "$IFACE" {PRIORITY_CLASS} 10:
  leaf "$IFACE" {DOWNLOADS_CLASS} 20:
  # Replaced as a whole (the first line makes sure there is a table to delete).
  nft -f - <<EOF
table inet $TABLE
delete table inet $TABLE
table inet $TABLE {{
  chain forward {{
    type filter hook forward priority mangle; policy accept;
    iifname "$BRIDGE" oifname "$IFACE" meta priority set {DOWNLOADS_CLASS}
  }}
}}
EOF
"""


def _downlink(plan: QosPlan) -> str:
    if plan.down is None:
        return '  echo "qos: no download cap configured; $BRIDGE left alone"\n'
    down = plan.down
    return f"""  if ip link show "$BRIDGE" >/dev/null 2>&1; then
    root_htb "$BRIDGE" 20
    tc class replace dev "$BRIDGE" parent 1: classid {DOWNLOADS_CLASS} htb rate {format_rate(down)} \\
      ceil {format_rate(down)} {_htb_params(down)}
    leaf "$BRIDGE" {DOWNLOADS_CLASS} 20:
  else
    echo "qos: $BRIDGE does not exist yet (no download client network); download shaping waits for the next apply" >&2
  fi
"""


def qos_tool(plan: QosPlan) -> str:
    """The script installed as mediastack-qos (qos_tool.sh): `apply`, `clear` or `status`."""
    caps = ", ".join(
        f"{name} {format_rate(rate)}" for name, rate in (("down", plan.down), ("up", plan.up)) if rate is not None
    )
    blocks = {
        "origin": f"# mediastack-qos: download clients capped ({caps}); everything else keeps priority.",
        "parameters": "\n".join(
            [f"IFACE={sh(plan.interface)}", f"BRIDGE={sh(plan.bridge)}", f"TABLE={NFT_TABLE}", f"CAPS={sh(caps)}"]
        ),
        "shaping": (_uplink(plan) + _downlink(plan)).removesuffix("\n"),
    }
    return script("qos_tool.sh", blocks)


def qos_unit() -> str:
    return tool_unit("mediastack-qos", "download bandwidth control (tc and nftables)")


def qos_create(plan: QosPlan) -> str:
    return tool_create("qos", "mediastack-qos", qos_tool(plan), qos_unit())


def qos_delete() -> str:
    return tool_delete("qos", "mediastack-qos")


def qos_scripts(config: StackConfig) -> dict[str, str]:
    """By file name, as `mediastack render` writes them under hosts/<host>/ (none without a `link`)."""
    plan = qos_plan(config)
    if plan is None:
        return {}
    return {
        "qos.sh": qos_tool(plan),
        "mediastack-qos.service": qos_unit(),
        "qos-create.sh": qos_create(plan),
        "qos-delete.sh": qos_delete(),
    }
