"""Host tuning: kernel settings and Docker daemon settings, applied idempotently and reverted exactly.

Each setting group is a pair of POSIX shell scripts run by pulumi-command on the host: `create`
installs (backing up once whatever was there), `delete` puts back exactly what was there before. Both
accept ROOT, a path prefix, so the tests run them against a sandbox directory; with ROOT set they do
not touch the running kernel or daemon.

Obsolete advice this replaces, and why:
- `echo vm.swappiness=10 >> /etc/sysctl.conf` appends again on every run and cannot be undone
  cleanly: a drop-in under /etc/sysctl.d/ is one file we own.
- `mem_swappiness` on containers does nothing on cgroup v2; host `vm.swappiness` plus
  `memory_swap == memory` on critical containers is what keeps them out of swap.
- `storage-opts: overlay2.override_kernel_check` is obsolete (and rejected by current Docker).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pulumi

from mediastack.host.command import host_command
from mediastack.host.files import (  # noqa: F401  (re-exported)
    _BACKUP_ONCE,
    BACKUP_DIR,
    _backup_prelude,
    install_file,
    restore_file,
    tool_create,
    tool_delete,
    tool_unit,
)
from mediastack.host.scripts import script
from mediastack.model.config import Host
from mediastack.quoting import sh, sh_text

if TYPE_CHECKING:
    from mediastack.host.qos import QosPlan

SYSCTL_FILE = "/etc/sysctl.d/90-mediastack.conf"
DAEMON_FILE = "/etc/docker/daemon.json"
GIB = 1024**3


def sysctl_settings(host: Host) -> dict[str, str]:
    # inotify: Jellyfin and the *arr apps watch every library folder; each watch costs up to ~1 KiB of
    # kernel memory, so size it to the host (512k watches per 8 GiB, at most 2M).
    watches = min(max(host.memory // (8 * GIB), 1) * 524288, 2097152)
    return {
        "vm.swappiness": "10",  # keep the media server's pages in RAM; swap only under real pressure
        "vm.vfs_cache_pressure": "50",  # keep directory and inode caches: library scans walk huge trees
        "vm.dirty_background_ratio": "5",  # start writeback early: large downloads do not stall streams
        "vm.dirty_ratio": "15",
        "fs.inotify.max_user_watches": str(watches),
        "fs.inotify.max_user_instances": "1024",
        "net.core.somaxconn": "4096",
        "net.core.rmem_max": "16777216",  # room for high-bandwidth streams and downloads
        "net.core.wmem_max": "16777216",
        "net.ipv4.tcp_rmem": "4096 131072 16777216",
        "net.ipv4.tcp_wmem": "4096 65536 16777216",
        "net.core.default_qdisc": "fq_codel",  # fair queueing: one flow cannot bloat the queue for the rest
    }


def daemon_settings() -> dict[str, object]:
    return {
        "log-driver": "local",
        "log-opts": {"max-size": "10m", "max-file": "5"},
        "live-restore": True,  # containers keep running while dockerd restarts or upgrades
        "default-ulimits": {"nofile": {"Name": "nofile", "Soft": 65536, "Hard": 65536}},
        "no-new-privileges": True,
    }


def _restore_script(label: str, target: str, reapply: str) -> str:
    return f"""#!/bin/sh
# mediastack: put back exactly the {label} that was there before (or none), then re-apply.
set -eu
ROOT="${{ROOT:-}}"
reverted=""
{restore_file(label, target)}if [ -z "$ROOT" ] && [ -n "$reverted" ]; then
  {reapply}
fi
"""


_SYSCTL_HEAD = "# Managed by mediastack (pulumi). Removed, and any earlier file restored, on delete.\n"


def sysctl_create(host: Host) -> str:
    body = "".join(f"{k} = {v}\n" for k, v in sysctl_settings(host).items())
    return f"""#!/bin/sh
# mediastack: kernel settings for a streaming and transcoding host, as a drop-in. Idempotent.
set -eu
{_backup_prelude(SYSCTL_FILE)}new=$({sh_text(_SYSCTL_HEAD + body)})
if [ -f "$target" ] && [ "$(cat "$target")" = "$new" ]; then
  echo "sysctl: unchanged"
  exit 0
fi
mkdir -p "$(dirname "$target")" "$(dirname "$backup")"
{_BACKUP_ONCE}printf '%s\\n' "$new" > "$target"
if [ -z "$ROOT" ]; then
  sysctl -q -p "$target"
fi
echo "sysctl: written $target and applied"
"""


def sysctl_delete() -> str:
    return _restore_script("sysctl", SYSCTL_FILE, "sysctl -q --system")


def daemon_create(extra: Mapping[str, object] | None = None) -> str:
    """daemon_create.sh: `extra` are host-specific keys on top of daemon_settings() (on a cluster: a GPU node's
    runtime)."""
    settings = json.dumps({**daemon_settings(), **(extra or {})}, sort_keys=True)
    parameters = [f"DAEMON_FILE={sh(DAEMON_FILE)}", f"BACKUP_DIR={sh(BACKUP_DIR)}", f"SETTINGS={sh(settings)}"]
    return script(
        "daemon_create.sh", {"parameters": "\n".join(parameters), "backup_once": _BACKUP_ONCE.removesuffix("\n")}
    )


def daemon_delete() -> str:
    return _restore_script("daemon.json", DAEMON_FILE, 'kill -HUP "$(pidof dockerd)" 2>/dev/null || true')


def gpu_detect_script(host: Host) -> str:
    """Read-only: what transcoding hardware the host really has, next to what the stack config says."""
    return script("gpu_detect.sh", {"parameters": f"CONFIGURED={sh(host.gpu.value)}"})


def tuning_scripts(host: Host, daemon_extra: Mapping[str, object] | None = None) -> dict[str, str]:
    """By file name, as `mediastack render` writes them under hosts/<host>/."""
    return {
        "sysctl-create.sh": sysctl_create(host),
        "sysctl-delete.sh": sysctl_delete(),
        "daemon-create.sh": daemon_create(daemon_extra),
        "daemon-delete.sh": daemon_delete(),
        "gpu-detect.sh": gpu_detect_script(host),
    }


def host_facts(host: Host, reserve_for_host: int, swarm_node: Mapping[str, str] | None = None) -> dict[str, str]:
    """The host's capacities for the policy pack (host-capacity; on a cluster also its Swarm role and node labels,
    for the cluster policies), carried by its sysctl step's environment: a change updates that one command in place
    (its create runs again, idempotent) and replaces no container and updates no Swarm service."""
    return {
        "MEDIASTACK_HOST": host.name,
        "MEDIASTACK_HOST_CPUS": str(host.cpus),
        "MEDIASTACK_HOST_MEMORY": str(host.memory),
        "MEDIASTACK_HOST_RESERVE": str(reserve_for_host),
        **(swarm_node or {}),
    }


@dataclass(frozen=True)
class HostTuningArgs:
    host: Host
    # Memory the host keeps for itself (stack config reserve_for_host), one of the facts the pack checks against.
    reserve_for_host: int = 0
    qos: QosPlan | None = None
    # The downloads network: its bridge must exist before shaping, and a new bridge needs shaping again.
    downloads_network: pulumi.Resource | None = None
    downloads_network_id: pulumi.Input[str] | None = None
    # With a VPN: the host's kill switch on the downloads bridge (create and delete scripts).
    vpn_guard: tuple[str, str] | None = None
    # Host-specific daemon.json keys (a cluster's NVIDIA node: its default runtime).
    daemon_extra: Mapping[str, object] | None = None
    # A cluster node: its Swarm facts (swarm_stack.swarm_node_facts) beside its capacities, for the cluster policies.
    swarm_node: Mapping[str, str] | None = None


class HostTuning(pulumi.ComponentResource):
    """Kernel and Docker daemon settings and download shaping on one host, each a command with a create and
    an exact revert."""

    def __init__(self, name: str, args: HostTuningArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mediastack:host:HostTuning", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        scripts = tuning_scripts(args.host, args.daemon_extra)
        self.steps = {
            step: host_command(
                f"{name}-{step}",
                args.host,
                scripts[f"{step}-create.sh"],
                scripts[f"{step}-delete.sh"],
                child,
                environment=host_facts(args.host, args.reserve_for_host, args.swarm_node) if step == "sysctl" else None,
            )
            for step in ("sysctl", "daemon")
        }
        if args.qos is not None:
            from mediastack.host.qos import qos_create, qos_delete

            network = args.downloads_network
            self.steps["qos"] = host_command(
                f"{name}-qos",
                args.host,
                qos_create(args.qos),
                qos_delete(),
                pulumi.ResourceOptions(parent=self, depends_on=[network] if network else []),
                triggers=[args.downloads_network_id] if args.downloads_network_id is not None else (),
            )
        if args.vpn_guard is not None:
            network = args.downloads_network
            self.steps["vpn-guard"] = host_command(
                f"{name}-vpn-guard",
                args.host,
                *args.vpn_guard,
                pulumi.ResourceOptions(parent=self, depends_on=[network] if network else []),
            )
        if args.host.detect_gpu:
            # Read-only: its delete has nothing to revert.
            self.steps["gpu"] = host_command(
                f"{name}-gpu-detect", args.host, gpu_detect_script(args.host), "echo 'gpu: nothing to revert'", child
            )
        self.register_outputs({step: c.stdout for step, c in self.steps.items()})
