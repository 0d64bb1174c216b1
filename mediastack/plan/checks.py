"""Which services a stack runs, and the checks a config must pass against the catalog before anything is
resolved: one Problem per finding, each naming the key, the value and the fix.
"""

from __future__ import annotations

import difflib
import itertools
import math
import posixpath

from mediastack.catalog.services import (
    BUNDLES,
    CATALOG,
    MountKind,
    Service,
)
from mediastack.model.config import CAPACITY_HEADROOM, LINE_SHARE_MAX, Host, Resources, StackConfig
from mediastack.model.problems import Problem
from mediastack.model.units import GIB, MIB, format_rate, format_size
from mediastack.plan.backup_checks import backup_problems
from mediastack.plan.placement import check_cluster, placement, runs_on
from mediastack.plan.resolved import ALWAYS_ON, TIER_BOUNDS
from mediastack.plan.sizing import effective_resources


def enabled_services(config: StackConfig) -> list[str]:
    bundles = set(config.bundles) if config.bundles is not None else set(BUNDLES)
    chosen: list[str] = []
    for service in CATALOG.values():
        override = config.services.get(service.name)
        on = service.name in ALWAYS_ON or service.bundle in bundles
        if override is not None and override.enabled is not None:
            on = override.enabled or service.name in ALWAYS_ON
        if service.role == "vpn" and config.downloads.vpn is None:
            on = False  # only with a VPN configured
        if service.cluster_only and not config.cluster:
            on = False
        if on:
            chosen.append(service.name)
    # Companions (exporters) run only beside what they watch, unless the user said so explicitly.
    result = []
    for name in chosen:
        service = CATALOG[name]
        explicit = config.services.get(name)
        if (
            service.companion_of
            and not (explicit and explicit.enabled)
            and not any(c in chosen for c in service.companion_of)
        ):
            continue
        result.append(name)
    return result


def _layer_problems(path: str, service: Service, resources: Resources, host: Host) -> list[Problem]:
    problems = []
    if resources.cpu_reservation > resources.cpus:
        problems.append(
            Problem(
                f"{path}.resources.cpu_reservation",
                resources.cpu_reservation,
                f"above {service.name}'s cpus limit {resources.cpus}; lower it or raise cpus",
            )
        )
    if resources.memory_reservation > resources.memory:
        problems.append(
            Problem(
                f"{path}.resources.memory_reservation",
                format_size(resources.memory_reservation),
                f"above {service.name}'s memory limit {format_size(resources.memory)}; lower it or raise memory",
            )
        )
    if resources.cpus > host.cpus:
        problems.append(
            Problem(
                f"{path}.resources.cpus",
                resources.cpus,
                f"more than host {host.name} has ({host.cpus}); at most {host.cpus}",
            )
        )
    if resources.memory > host.memory:
        problems.append(
            Problem(
                f"{path}.resources.memory",
                format_size(resources.memory),
                f"more than host {host.name} has ({format_size(host.memory)})",
            )
        )
    return problems


# The engine's API sockets under both names of the run directory; the policy pack holds the same list.
ENGINE_SOCKETS = (
    "/run/docker.sock",
    "/var/run/docker.sock",
    "/run/containerd/containerd.sock",
    "/var/run/containerd/containerd.sock",
)


def reached_socket(source: str) -> str | None:
    """The engine socket a bind of `source` exposes, with the path resolved as the kernel does (`//`, `.`, `..`):
    the socket itself or any directory above it (`/`, `/var`, `/run`)."""
    path = posixpath.normpath("/" + source.lstrip("/"))
    return next((s for s in ENGINE_SOCKETS if path == s or s.startswith(path.rstrip("/") + "/")), None)


def exposure_problems(config: StackConfig) -> list[Problem]:
    """A public UI must exist and have a login of its own; LAN ranges must not let in everyone or the stack's
    own containers."""
    problems = [Problem(f"mediastack:lan_ranges[{i}]", cidr, why) for i, cidr, why in config.lan_range_problems()]
    for name, override in config.services.items():
        for j, mount in enumerate(override.mounts):
            socket = reached_socket(mount.source)
            if socket:
                problems.append(
                    Problem(
                        f"mediastack:services.{name}.mounts[{j}].source",
                        mount.source,
                        f"reaches the engine's socket {socket}; only the socket proxy may reach the Docker API, "
                        "mount a directory that does not contain it",
                    )
                )
    for i, name in enumerate(config.exposure.public):
        path = f"mediastack:exposure.public[{i}]"
        service = CATALOG.get(name)
        if service is None:
            close = difflib.get_close_matches(name, CATALOG, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            problems.append(Problem(path, name, f"unknown service; {hint}services are: {', '.join(CATALOG)}"))
        elif service.web is None:
            problems.append(Problem(path, name, f"{name} has no web UI to make public; remove it"))
        elif service.web.login is None:
            problems.append(
                Problem(
                    path,
                    name,
                    f"{name}'s UI has no login of its own, so anyone on the internet could use it; remove it from "
                    "exposure.public (it stays reachable from lan_ranges)",
                )
            )
    return problems


def check_against_catalog(config: StackConfig) -> list[Problem]:
    """Problems only the catalog can see: names, dependencies, and whether it all fits the host."""
    problems: list[Problem] = []
    for i, bundle in enumerate(config.bundles or ()):
        if bundle not in BUNDLES:
            problems.append(
                Problem(f"mediastack:bundles[{i}]", bundle, f"unknown bundle; allowed: {', '.join(BUNDLES)}")
            )
    for name, override in config.services.items():
        path = f"mediastack:services.{name}"
        if name not in CATALOG:
            close = difflib.get_close_matches(name, CATALOG, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            problems.append(Problem(path, name, f"unknown service; {hint}services are: {', '.join(CATALOG)}"))
            continue
        if override.enabled is False and name in ALWAYS_ON:
            problems.append(Problem(f"{path}.enabled", False, f"{name} is part of the core and cannot be disabled"))
        secret_names = set(CATALOG[name].secret_env)
        for key in override.env:
            if key in secret_names:
                problems.append(
                    Problem(f"{path}.env.{key}", "...", "set by the stack as a generated secret; remove it from env")
                )
        taken = {m.target for m in CATALOG[name].mounts}
        for j, mount in enumerate(override.mounts):
            if mount.target in taken:
                problems.append(
                    Problem(
                        f"{path}.mounts[{j}].target",
                        mount.target,
                        f"already used by {name}'s own mounts ({', '.join(sorted(taken))}); pick another",
                    )
                )
    link = config.host.link
    caps = (
        (("max_down", config.downloads.max_down, link.down), ("max_up", config.downloads.max_up, link.up))
        if link
        else ()
    )
    for key, cap, line in caps:
        if cap is not None and cap > line * LINE_SHARE_MAX:
            most = format_rate(int(line * LINE_SHARE_MAX) // 1000 * 1000)
            problems.append(
                Problem(
                    f"mediastack:downloads.{key}",
                    format_rate(cap),
                    f"must stay below the line rate (hosts[0].link: {format_rate(line)}) so the queue forms on the "
                    f"host, where streams keep priority; set at most {most}",
                )
            )
    problems += exposure_problems(config)

    problems += backup_problems(config)
    if not problems:
        problems += check_cluster(config, enabled_services(config))
    if problems:
        return problems

    host = config.host
    enabled = enabled_services(config)
    for name in enabled:
        for needed in CATALOG[name].requires:
            if needed not in enabled:
                problems.append(
                    Problem(
                        f"mediastack:services.{needed}.enabled",
                        False,
                        f"{name} needs {needed}; enable {needed} or disable {name}",
                    )
                )
        explicit = config.services.get(name)
        if (
            explicit
            and explicit.enabled
            and CATALOG[name].companion_of
            and not any(c in enabled for c in CATALOG[name].companion_of)
        ):
            problems.append(
                Problem(
                    f"mediastack:services.{name}.enabled",
                    True,
                    f"{name} watches {' or '.join(CATALOG[name].companion_of)}, which is disabled",
                )
            )

    total_cpu, total_mem = 0.0, 0
    for name in enabled:
        service = CATALOG[name]
        _, resources = effective_resources(service, config)
        # On a cluster, limits must fit the biggest host the service may run on (placement checks the sums).
        fits = max(runs_on(placement(service, config), config), key=lambda h: h.memory) if config.cluster else host
        problems += _layer_problems(f"mediastack:services.{name}", service, resources, fits)
        tier = effective_resources(service, config)[0]
        bound = TIER_BOUNDS[tier.value]
        over: list[tuple[str, str, str]] = []
        if resources.cpus > bound["max_cpus"]:
            over.append(("cpus", f"{resources.cpus:g}", f"{bound['max_cpus']:g}"))
        if resources.memory > bound["max_memory_mib"] * MIB:
            over.append(("memory", format_size(resources.memory), format_size(bound["max_memory_mib"] * MIB)))
        for key, shown, most in over:
            problems.append(
                Problem(
                    f"mediastack:services.{name}.resources.{key}",
                    shown,
                    f"above the {tier.value} tier's bound ({most}; policy resource-limits); "
                    f"lower it or move {name} to a bigger tier (services.{name}.tier)",
                )
            )
        total_cpu += resources.cpu_reservation
        total_mem += resources.memory_reservation
        transcodes = any(m.kind is MountKind.transcode for m in service.mounts)
        if transcodes and config.paths.transcode_tmpfs and config.paths.transcode_tmpfs * 2 > resources.memory:
            problems.append(
                Problem(
                    "mediastack:paths.transcode_tmpfs",
                    format_size(config.paths.transcode_tmpfs),
                    f"more than half of {name}'s memory limit {format_size(resources.memory)} (tmpfs pages count "
                    f"against it); lower it, raise {name}'s memory, or set null to transcode under cache_root",
                )
            )

    available_mem = int((host.memory - config.reserve_for_host) * (1 - CAPACITY_HEADROOM)) // MIB * MIB
    if config.cluster:
        return problems  # per host, in placement.check_cluster
    if total_mem > available_mem:
        problems.append(
            Problem(
                "mediastack:hosts[0].memory",
                format_size(host.memory),
                f"memory reservations of the enabled services total {format_size(total_mem)}, more than the "
                f"{format_size(max(available_mem, 0))} left after reserve_for_host and 10% headroom; "
                + smallest_fit(config, enabled),
            )
        )
    if total_cpu > host.cpus * (1 - CAPACITY_HEADROOM) + 1e-9:
        problems.append(
            Problem(
                "mediastack:hosts[0].cpus",
                host.cpus,
                f"CPU reservations of the enabled services total {total_cpu:g}, more than the host has less 10% "
                f"headroom ({host.cpus * (1 - CAPACITY_HEADROOM):g}); " + smallest_fit(config, enabled),
            )
        )
    return problems


def _reserved(config: StackConfig, names: list[str]) -> tuple[float, int]:
    picked = [effective_resources(CATALOG[n], config)[1] for n in names]
    return sum(r.cpu_reservation for r in picked), sum(r.memory_reservation for r in picked)


def smallest_fit(config: StackConfig, enabled: list[str]) -> str:
    """The smallest change that makes a single host's reservations fit: leaving out the one bundle that frees the
    least while fitting, else the host size the enabled services need."""
    host = config.host
    available = (host.memory - config.reserve_for_host) * (1 - CAPACITY_HEADROOM)
    cpu, mem = _reserved(config, enabled)
    options = []
    bundles = sorted({CATALOG[n].bundle for n in enabled} - {"core"})
    for count in (1, 2):
        for left_out in itertools.combinations(bundles, count):
            rest = [n for n in enabled if CATALOG[n].bundle not in left_out]
            rest_cpu, rest_mem = _reserved(config, rest)
            if rest_cpu <= host.cpus * (1 - CAPACITY_HEADROOM) + 1e-9 and rest_mem <= available:
                options.append((count, cpu - rest_cpu, mem - rest_mem, left_out))
        if options:
            break
    memory = math.ceil((mem / (1 - CAPACITY_HEADROOM) + config.reserve_for_host) / GIB) * GIB
    threads = math.ceil(cpu / (1 - CAPACITY_HEADROOM) - 1e-9)
    need = f"a host with at least {threads} CPU threads and {format_size(memory)}"
    if options:
        *_, left_out = min(options)
        kept = [b for b in (config.bundles if config.bundles is not None else BUNDLES) if b not in ("core", *left_out)]
        what = " and ".join(left_out)
        return f"the smallest change that fits: leave out {what} (bundles: [{', '.join(kept)}]), or {need}"
    return f"the smallest change that fits: {need}, or lower the tiers' reservations"
