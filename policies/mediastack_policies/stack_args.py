"""What every stack policy reads first: the workloads, their networks and the policy's config."""

from __future__ import annotations

from typing import Any

from pulumi_policy import (
    StackValidationArgs,
)

from mediastack_vocabulary import (
    WORKLOAD_LABELS,
)

from .shapes import (
    NETWORK,
    Report,
    Workload,
    workload,
)


def workloads_of(args: StackValidationArgs) -> list[tuple[Workload, str]]:
    found = []
    for r in args.resources:
        w = workload(r.resource_type, r.name, r.props)
        if w is not None:
            found.append((w, r.urn))
    return found


def classified(args: StackValidationArgs, report: Report, concern: str) -> list[tuple[Workload, str]]:
    """The workloads the program labelled; each one without its labels is reported as unknown, never passed:
    what it is (an *arr app, a download client, a database) is read from those labels."""
    known = []
    for w, urn in workloads_of(args):
        missing = [key for key in WORKLOAD_LABELS if not w.labels.get(key)]
        if missing:
            report(
                f"{w.service}: unknown workload (no {', '.join(missing)} label), so {concern} cannot be checked; "
                "deploy it through the mediastack program, or give it the program's labels",
                urn,
            )
        else:
            known.append((w, urn))
    return known


def networks_of(args: StackValidationArgs) -> dict[str, bool]:
    """Docker network name -> internal."""
    return {
        str(r.props.get("name")): bool(r.props.get("internal"))
        for r in args.resources
        if r.resource_type == NETWORK and r.props.get("name")
    }


def stack_config(args: StackValidationArgs) -> dict[str, Any]:
    return dict(args.get_config() or {})


def workloads_by_name(workloads: list[Workload]) -> dict[str, Workload]:
    """Workloads by every name they answer to on the networks: service, container name, and VPN aliases."""
    found: dict[str, Workload] = {}
    for w in workloads:
        found.setdefault(w.service, w)
        found.setdefault(w.name, w)
    # An alias names the container that answers for another (the VPN container for its clients): the client's
    # own workload, found above, is what the route means.
    for w in workloads:
        for net in w.raw.get("networksAdvanced") or []:
            for alias in net.get("aliases") or [] if isinstance(net, dict) else []:
                found.setdefault(str(alias), w)
    return found
