#!/usr/bin/env python3
"""Stand-ins for docker, gluster, mount, umount and mountpoint that keep state in files and refuse what the
real programs refuse, so the swarm and storage scripts can run for real in a sandbox.

Called through a symlink named after the program. Environment:
  FAKE_CLUSTER  directory with the cluster-wide state (swarm.json, gluster.json, mounts.json)
  FAKE_NODE     this node's name (its swarm membership is in swarm.json under it)
  FAKE_LOG      file every call is appended to, as `<node> <program> <args>`
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

CLUSTER = Path(os.environ["FAKE_CLUSTER"])
NODE = os.environ.get("FAKE_NODE", "local")


def load(name: str, default: Any) -> Any:
    path = CLUSTER / name
    return json.loads(path.read_text()) if path.exists() else default


def save(name: str, value: Any) -> None:
    path = CLUSTER / name
    if value in ({}, [], None):
        path.unlink(missing_ok=True)  # an empty state leaves no file, so a full revert leaves the sandbox as it was
    else:
        path.write_text(json.dumps(value, sort_keys=True))


def fail(message: str, code: int = 1) -> None:
    print(message, file=sys.stderr)
    sys.exit(code)


# -- docker ------------------------------------------------------------------------------------------


def docker(args: list[str]) -> None:
    swarm = load("swarm.json", {})
    nodes: dict[str, dict[str, Any]] = swarm.get("nodes", {})
    mine = next((i for i, n in nodes.items() if n["node"] == NODE and n["status"] == "ready"), None)

    def need_manager() -> None:
        if mine is None or not nodes[mine]["manager"]:
            fail("Error response from daemon: This node is not a swarm manager.")

    if args[:2] == ["info", "--format"]:
        fmt = args[2]
        if fmt == "{{.Swarm.LocalNodeState}}":
            print("active" if mine else "inactive")
        elif fmt == "{{.Swarm.NodeID}}":
            print(mine or "")
        elif fmt == "{{.Swarm.ControlAvailable}}":
            print("true" if mine and nodes[mine]["manager"] else "false")
        else:
            fail(f"fake docker: unknown format {fmt}")
        return
    if args[:2] == ["swarm", "init"]:
        if mine:
            fail("Error response from daemon: This node is already part of a swarm.")
        if swarm:
            fail("fake docker: a swarm already exists elsewhere")
        node_id = f"id-{NODE}"
        swarm = {"tokens": {"worker": "SWMTKN-1-worker", "manager": "SWMTKN-1-manager"}, "nodes": {}}
        swarm["nodes"][node_id] = {"node": NODE, "manager": True, "labels": {}, "status": "ready"}
        save("swarm.json", swarm)
        print(f"Swarm initialized: current node ({node_id}) is now a manager.")
        return
    if args[:3] == ["swarm", "join-token", "-q"]:
        need_manager()
        print(swarm["tokens"][args[3]])
        return
    if args[:2] == ["swarm", "join"]:
        if mine:
            fail("Error response from daemon: This node is already part of a swarm.")
        token = args[args.index("--token") + 1]
        roles = {t: r for r, t in swarm.get("tokens", {}).items()}
        if token not in roles:
            fail("Error response from daemon: invalid join token")
        node_id = f"id-{NODE}"
        if node_id in nodes and nodes[node_id]["status"] == "ready":
            fail("fake docker: stale node entry")
        nodes[node_id] = {"node": NODE, "manager": roles[token] == "manager", "labels": {}, "status": "ready"}
        save("swarm.json", swarm)
        print(f"This node joined a swarm as a {roles[token]}.")
        return
    if args[:2] == ["swarm", "leave"]:
        if not mine:
            fail("Error response from daemon: This node is not part of a swarm")
        managers = [i for i, n in nodes.items() if n["manager"] and n["status"] == "ready"]
        if nodes[mine]["manager"] and "--force" not in args:
            fail("Error response from daemon: You are attempting to leave the swarm on a node that is a manager.")
        if nodes[mine]["manager"] and managers == [mine]:
            if any(n["status"] == "ready" for i, n in nodes.items() if i != mine):
                fail("fake docker: the last manager left while other nodes are still in the swarm")
            save("swarm.json", {})  # the last manager: the swarm is gone
        else:
            nodes[mine]["status"] = "down"
            save("swarm.json", swarm)
        print("Node left the swarm.")
        return
    if args[:2] == ["node", "demote"]:
        need_manager()
        nodes[args[2]]["manager"] = False
        save("swarm.json", swarm)
        return
    if args[:2] == ["node", "update"]:
        need_manager()
        node_id = args[-1]
        if node_id not in nodes:
            fail(f"Error response from daemon: node {node_id} not found")
        rest = args[2:-1]
        for flag, value in zip(rest[::2], rest[1::2], strict=True):
            if flag == "--label-add":
                key, _, val = value.partition("=")
                nodes[node_id]["labels"][key] = val
            elif flag == "--label-rm":
                if value not in nodes[node_id]["labels"]:
                    fail(f"Error response from daemon: key {value} doesn't exist in node's labels")
                del nodes[node_id]["labels"][value]
        save("swarm.json", swarm)
        return
    if args[:3] == ["node", "ls", "-q"]:
        need_manager()
        want = args[args.index("--filter") + 1].removeprefix("node.label=") if "--filter" in args else None
        key, _, value = (want or "").partition("=")
        for node_id, n in sorted(nodes.items()):
            if want is None or n["labels"].get(key) == value:
                print(node_id)
        return
    if args[:2] == ["node", "rm"]:
        need_manager()
        node_id = args[-1]
        if nodes.get(node_id, {}).get("status") == "ready" and "--force" not in args:
            fail("Error response from daemon: node is not down and can't be removed")
        nodes.pop(node_id, None)
        save("swarm.json", swarm)
        return
    fail(f"fake docker: unsupported {' '.join(args)}")


# -- gluster -----------------------------------------------------------------------------------------


def gluster(args: list[str]) -> None:
    if args and args[0] == "--mode=script":
        args = args[1:]
    state = load("gluster.json", {})
    peers: list[str] = state.setdefault("peers", [])
    volumes: dict[str, dict[str, Any]] = state.setdefault("volumes", {})
    if args[:2] == ["peer", "probe"]:
        if args[2] not in peers:
            peers.append(args[2])
            print("peer probe: success")
        else:
            print(f"peer probe: success. Host {args[2]} port 24007 already in peer list")
    elif args[:2] == ["peer", "detach"]:
        if args[2] not in peers:
            fail(f"peer detach: failed: {args[2]} is not part of cluster")
        peers.remove(args[2])
    elif args[:2] == ["volume", "info"]:
        volume = volumes.get(args[2])
        if volume is None:
            fail(f"Volume {args[2]} does not exist", 1)
        print(f"Volume Name: {args[2]}\nType: Replicate\nStatus: {volume['status']}\nNumber of Bricks: 1 x 3 = 3")
        return
    elif args[:2] == ["volume", "create"]:
        name, rest = args[2], args[3:]
        if name in volumes:
            fail(f"volume create: {name}: failed: Volume {name} already exists")
        replica = int(rest[rest.index("replica") + 1])
        bricks = [b for b in rest if ":" in b]
        if len(bricks) % replica:
            fail("volume create: failed: brick count is not a multiple of the replica count")
        unknown = [b for b in bricks[1:] if b.split(":")[0] not in peers]
        if unknown:
            fail(f"volume create: failed: Host {unknown[0].split(':')[0]} is not in 'Peer in Cluster' state")
        volumes[name] = {"status": "Created", "replica": replica, "bricks": bricks}
    elif args[:2] == ["volume", "set"]:
        if args[2] not in volumes:
            fail(f"volume set: failed: Volume {args[2]} does not exist")
        if len(args) != 5:
            fail("Usage: volume set <VOLNAME> <KEY> <VALUE>")
        volumes[args[2]].setdefault("options", {})[args[3]] = args[4]
        print("volume set: success")
    elif args[:2] == ["volume", "start"]:
        if volumes[args[2]]["status"] == "Started":
            fail(f"volume start: {args[2]}: failed: Volume {args[2]} already started")
        volumes[args[2]]["status"] = "Started"
    elif args[:2] == ["volume", "stop"]:
        volumes[args[2]]["status"] = "Stopped"
    elif args[:2] == ["volume", "delete"]:
        if volumes[args[2]]["status"] == "Started":
            fail(f"volume delete: {args[2]}: failed: Volume {args[2]} has been started. Stop it first.")
        del volumes[args[2]]
    elif args[:2] == ["volume", "status"] and args[3:] == ["clients"]:
        mounts = load("mounts.json", {})
        print(f"Client connections for volume {args[2]}\n----------------------------------------------")
        print("Hostname                                               BytesRead    BytesWritten       OpVersion")
        for node in sorted({m["node"] for m in mounts.values() if m["type"] == "glusterfs"}):
            print(f"10.0.0.{len(node)}:49151    1024    2048    100000 {node}")
        return
    else:
        fail(f"fake gluster: unsupported {' '.join(args)}")
    save("gluster.json", {k: v for k, v in state.items() if v})


# -- mount, umount, mountpoint -----------------------------------------------------------------------


def _fstab_entry(path: str) -> list[str] | None:
    root = os.environ.get("ROOT", "")
    target = path.removeprefix(root) if root else path
    fstab = Path(f"{root}/etc/fstab")
    for line in fstab.read_text().splitlines() if fstab.exists() else []:
        fields = line.split()
        if len(fields) >= 3 and not line.startswith("#") and fields[1] == target:
            return fields
    return None


def mount(args: list[str]) -> None:
    path = args[-1]
    entry = _fstab_entry(path)
    if entry is None:
        fail(f"mount: {path}: can't find in /etc/fstab.", 1)
        return
    if not Path(path).is_dir():
        fail(f"mount: {path}: mount point does not exist.", 32)
    mounts = load("mounts.json", {})
    key = f"{NODE}:{path}"
    if key in mounts:
        fail(f"mount: {path}: already mounted.", 32)
    mounts[key] = {"node": NODE, "source": entry[0], "type": entry[2]}
    save("mounts.json", mounts)


def umount(args: list[str]) -> None:
    mounts = load("mounts.json", {})
    if mounts.pop(f"{NODE}:{args[-1]}", None) is None:
        fail(f"umount: {args[-1]}: not mounted.", 32)
    save("mounts.json", mounts)


def mountpoint(args: list[str]) -> None:
    sys.exit(0 if f"{NODE}:{args[-1]}" in load("mounts.json", {}) else 32)


def main() -> None:
    program = Path(sys.argv[0]).name
    log = os.environ.get("FAKE_LOG")
    if log:
        with open(log, "a") as f:
            f.write(f"{NODE} {program} {' '.join(sys.argv[1:])}\n")
    {"docker": docker, "gluster": gluster, "mount": mount, "umount": umount, "mountpoint": mountpoint}[program](
        sys.argv[1:]
    )


if __name__ == "__main__":
    main()
