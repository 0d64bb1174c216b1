"""Swarm bootstrap: init on the first manager, join of every other host with the token it yields, node labels.

Every step is a create/delete script pair (pulumi-command over SSH, see storage.host_command), idempotent
(each first asks `docker info` for the node's swarm state), and ordered so that a delete leaves the swarm
cleanly: services go first, then each joined host leaves (a manager is demoted first), then the first
manager removes the departed node entries, and the first manager leaves last.

Join tokens are read on the first manager into secret outputs and reach the joining hosts on standard
input, never in a script or a trigger. Each join prints only the node's id; the labels step on the first
manager reads it from standard input.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

import pulumi

from mediastack.host.directories import host_command
from mediastack.host.scripts import script
from mediastack.model.config import Host, StackConfig
from mediastack.plan.placement import managers, node_labels
from mediastack_vocabulary import Label

SWARM_PORT = 2377
_STATE = "docker info --format '{{.Swarm.LocalNodeState}}'"
_NODE_ID = "docker info --format '{{.Swarm.NodeID}}'"


def init_create(host: Host) -> str:
    return f"""#!/bin/sh
# Initialises the swarm on the first manager unless this node is already in one; prints the node id.
set -eu
state=$({_STATE})
if [ "$state" != active ]; then
  docker swarm init --advertise-addr {shlex.quote(host.address)} >&2
else
  echo "swarm: already active here" >&2
fi
{_NODE_ID}
"""


def init_delete() -> str:
    return f"""#!/bin/sh
# The first manager leaves last, when it is the only node left: the swarm is gone. With other nodes still in it
# (the init step replaced, not the stack deleted) it leaves the swarm alone.
set -eu
if [ "$({_STATE})" != active ]; then
  echo "swarm: not in a swarm"
  exit 0
fi
others=$(docker node ls -q | grep -vxF "$({_NODE_ID})" || true)
if [ -n "$others" ]; then
  echo "swarm: other nodes are still in the swarm; left in place"
  exit 0
fi
docker swarm leave --force >&2
echo "swarm: left and dissolved"
"""


def token_create(role: str) -> str:
    return f"""#!/bin/sh
# The {role} join token (a secret output).
set -eu
docker swarm join-token -q {role}
"""


def token_delete() -> str:
    return "echo 'swarm: a join token has nothing to revert'\n"


def join_create(host: Host, manager: Host) -> str:
    return f"""#!/bin/sh
# Joins the swarm with the token on standard input unless this node is already in one; prints the node id.
set -eu
state=$({_STATE})
if [ "$state" != active ]; then
  IFS= read -r token
  docker swarm join --token "$token" --advertise-addr {shlex.quote(host.address)} \\
    {shlex.quote(f"{manager.address}:{SWARM_PORT}")} >&2
else
  echo "swarm: already active here" >&2
fi
{_NODE_ID}
"""


def join_delete() -> str:
    return script("swarm_join_delete.sh", {})


def _by_host(host: Host) -> str:
    # The mediastack.host label stays until the node is removed: it is how the manager finds the node.
    return f"docker node ls -q --filter {shlex.quote(f'node.label=mediastack.host={host.name}')}"


def labels_create(host: Host) -> str:
    adds = " ".join(f"--label-add {shlex.quote(f'{k}={v}')}" for k, v in sorted(node_labels(host).items()))
    return f"""#!/bin/sh
# Labels the node whose id is on standard input with its host facts (placement constraints read them).
set -eu
IFS= read -r id
docker node update {adds} "$id" >&2
echo "labels: {host.name} labelled"
"""


def labels_delete(host: Host) -> str:
    removes = " ".join(f"--label-rm {shlex.quote(k)}" for k in sorted(node_labels(host)) if k != Label.host)
    return f"""#!/bin/sh
# Removes the host facts from the node (mediastack.host stays until the node entry is removed).
set -eu
for id in $({_by_host(host)}); do
  docker node update {removes} "$id" >&2
done
echo "labels: {host.name} unlabelled"
"""


def member_create(host: Host) -> str:
    return f"echo 'swarm: {host.name} may join'\n"


def member_delete(host: Host) -> str:
    return f"""#!/bin/sh
# After {host.name} left: removes its node entry on the first manager.
set -eu
for id in $({_by_host(host)}); do
  docker node rm --force "$id" >&2
done
echo "swarm: {host.name} removed"
"""


def bootstrap_scripts(config: StackConfig) -> dict[str, str]:
    """By file name, as `mediastack render` writes them under swarm/."""
    first = config.hosts[0]
    scripts = {
        "init-create.sh": init_create(first),
        "init-delete.sh": init_delete(),
        "token-worker.sh": token_create("worker"),
        "token-manager.sh": token_create("manager"),
        "join-delete.sh": join_delete(),
    }
    for host in config.hosts:
        scripts[f"labels-{host.name}-create.sh"] = labels_create(host)
        scripts[f"labels-{host.name}-delete.sh"] = labels_delete(host)
        if host is not first:
            scripts[f"join-{host.name}-create.sh"] = join_create(host, first)
            scripts[f"member-{host.name}-delete.sh"] = member_delete(host)
    return scripts


@dataclass(frozen=True)
class SwarmClusterArgs:
    config: StackConfig
    # Per host, what must be in place before it joins (host tuning: daemon.json is read at dockerd start).
    prepared: dict[str, list[pulumi.Resource]]


class SwarmCluster(pulumi.ComponentResource):
    """The swarm: initialised, joined by every host, every node labelled with its host facts."""

    node_ids: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, args: SwarmClusterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mediastack:swarm:SwarmCluster", name, None, opts)
        config = args.config
        first = config.hosts[0]

        def after(*deps: pulumi.Resource, host: Host | None = None) -> pulumi.ResourceOptions:
            prepared = args.prepared.get(host.name, []) if host else []
            return pulumi.ResourceOptions(parent=self, depends_on=[*deps, *prepared])

        init = host_command(f"{name}-init", first, init_create(first), init_delete(), after(host=first))
        secret = pulumi.ResourceOptions(additional_secret_outputs=["stdout"])
        tokens = {
            role: host_command(
                f"{name}-token-{role}",
                first,
                token_create(role),
                token_delete(),
                pulumi.ResourceOptions.merge(after(init), secret),
                stdout_is_secret=True,  # printed, the manager token would hand the cluster to whoever reads the log
            )
            for role in ("worker", "manager")
        }
        self.node_ids = {first.name: init.stdout}
        self.steps: list[pulumi.Resource] = [init]
        manager_names = {h.name for h in managers(config)}
        for host in config.hosts[1:]:
            member = host_command(
                f"{name}-{host.name}-member", first, member_create(host), member_delete(host), after(init)
            )
            role = "manager" if host.name in manager_names else "worker"
            join = host_command(
                f"{name}-{host.name}-join",
                host,
                join_create(host, first),
                join_delete(),
                after(member, tokens[role], host=host),
                triggers=[role],
                # Secret under any engine (the provider marks stdout secret through additional_secret_outputs).
                stdin=pulumi.Output.secret(tokens[role].stdout),
            )
            self.node_ids[host.name] = join.stdout
            self.steps += [member, join]
        for host in config.hosts:
            labels = host_command(
                f"{name}-{host.name}-labels",
                first,
                labels_create(host),
                labels_delete(host),
                after(init),
                stdin=self.node_ids[
                    host.name
                ],  # an input from the join: labelled after it, unlabelled before it leaves
            )
            self.steps.append(labels)
        self.register_outputs({"nodes": sorted(self.node_ids)})
