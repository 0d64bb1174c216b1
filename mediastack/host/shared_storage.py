"""The filesystem every cluster node sees: a GlusterFS replicated volume the stack builds, or an existing
NFS export or CephFS. It holds the data root and Immich's library only; app config directories (SQLite)
and caches stay on each node's own disk.

Scripts take ROOT like the other host scripts (a sandbox directory in tests; empty on a host) for every
file they touch (/etc/fstab, the brick and mount directories); the programs they call (gluster, mount,
umount, mountpoint) are the host's. Each is idempotent, and each delete undoes exactly its create:
the fstab line goes, the mount point is removed if empty, the volume is stopped and deleted only when no
client has it mounted (so replacing the step under running services never pulls the storage away).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from mediastack.host.directories import host_command
from mediastack.host.scripts import script
from mediastack.model.config import Host, SharedStorageKind, StackConfig
from mediastack.plan.placement import storage_hosts
from mediastack.quoting import fstab_field, sh

MARK = "# mediastack shared storage"  # the marker line ends with ": <mount point>"
CREATED_DIR = "/var/lib/mediastack/created"


def make_dirs(label: str, path: str) -> str:
    """Shell lines that create ROOT+path with its missing parents, noting which they were (once), so that
    remove_dirs takes away exactly those and no directory that was there before."""
    return f"""record="$ROOT{CREATED_DIR}/{label}"
missing=""
dir={sh(path)}
while [ ! -d "$ROOT$dir" ]; do
  missing="$dir
$missing"
  dir=$(dirname "$dir")
done
if [ -n "$missing" ]; then
  mkdir -p "$(dirname "$record")"
  printf '%s' "$missing" >> "$record"
  mkdir -p "$ROOT"{sh(path)}
fi
"""


def remove_dirs(label: str) -> str:
    """Shell lines that remove the directories make_dirs created, deepest first, each only when empty."""
    return f"""record="$ROOT{CREATED_DIR}/{label}"
if [ -f "$record" ]; then
  sort -r "$record" | while IFS= read -r dir; do
    if [ -n "$dir" ]; then rmdir "$ROOT$dir" 2>/dev/null || true; fi
  done
  rm -f "$record"
  rmdir -p "$(dirname "$record")" 2>/dev/null || true
fi
"""


def gluster_brick(config: StackConfig) -> str:
    assert config.storage is not None
    g = config.storage.glusterfs
    return f"{g.brick_root}/{g.volume}"


def _fstab(source: str, mount: str, kind: str, options: str) -> str:
    # Each field encoded as fstab(5) reads it: no value can split a field or start another line.
    return " ".join(fstab_field(f) for f in (source, mount, kind, options)) + " 0 0"


def fstab_line(config: StackConfig) -> str:
    storage = config.storage
    assert storage is not None
    mount = storage.mount_point
    if storage.kind is SharedStorageKind.glusterfs:
        hosts = storage_hosts(config)
        backups = ":".join(h.address for h in hosts[1:])
        # Any storage host serves the volume file; the client then talks to every brick itself.
        options = "defaults,_netdev,noatime" + (f",backup-volfile-servers={backups}" if backups else "")
        return _fstab(f"{hosts[0].address}:/{storage.glusterfs.volume}", mount, "glusterfs", options)
    if storage.kind is SharedStorageKind.nfs:
        assert storage.nfs is not None
        nfs = storage.nfs
        return _fstab(f"{nfs.server}:{nfs.export}", mount, "nfs", f"{nfs.options},_netdev")
    assert storage.cephfs is not None
    ceph = storage.cephfs
    options = f"name={ceph.user},secretfile={ceph.secret_file},noatime,_netdev"
    return _fstab(f"{','.join(ceph.monitors)}:{ceph.path}", mount, "ceph", options)


def fstab_marker(config: StackConfig) -> str:
    """The comment line written right above the stack's fstab line: the delete removes exactly that pair."""
    assert config.storage is not None
    return f"{MARK}: {config.storage.mount_point}"


def _mount_script(config: StackConfig, purpose: str) -> tuple[str, str]:
    """The mount point, and a script's first lines: what it does, ROOT, the fstab and its line."""
    assert config.storage is not None
    mount = config.storage.mount_point
    return (
        mount,
        f"""#!/bin/sh
# {purpose}
set -eu
ROOT="${{ROOT:-}}"
fstab="$ROOT/etc/fstab"
line={sh(fstab_line(config))}
mark={sh(fstab_marker(config))}
mount_point={sh(mount)}
""",
    )


def mount_create(config: StackConfig) -> str:
    mount, head = _mount_script(
        config, "Mounts the shared data filesystem: one fstab line (added once), mounted if not yet."
    )
    return f"""{head}{make_dirs("shared-mount", mount)}if grep -qxF "$mark" "$fstab" 2>/dev/null; then
  :
elif grep -qxF "$line" "$fstab" 2>/dev/null; then
  echo "shared storage: the same fstab line is already there unmarked (not ours: left alone on delete)"
else
  printf '%s\\n%s\\n' "$mark" "$line" >> "$fstab"
  echo "shared storage: fstab entry added"
fi
if mountpoint -q "$ROOT$mount_point"; then
  echo "shared storage: $mount_point already mounted"
else
  mount "$ROOT$mount_point"
  echo "shared storage: $mount_point mounted"
fi
"""


def mount_delete(config: StackConfig) -> str:
    _, head = _mount_script(
        config,
        "Unmounts the shared filesystem, removes exactly the fstab lines mount-create added, and the mount "
        "point if empty.",
    )
    # Exactly the marker line and the line right after it when that is ours; any other line stays, even an
    # identical one the stack did not write. Values reach awk through the environment, never as awk code.
    return f"""{head}if mountpoint -q "$ROOT$mount_point"; then
  umount "$ROOT$mount_point"
  echo "shared storage: $mount_point unmounted"
fi
if [ -f "$fstab" ] && grep -qxF "$mark" "$fstab"; then
  kept="$fstab.mediastack.$$"
  MARK_LINE="$mark" OUR_LINE="$line" awk '
    after_mark {{ after_mark = 0; if ($0 == ENVIRON["OUR_LINE"]) next }}
    $0 == ENVIRON["MARK_LINE"] {{ after_mark = 1; next }}
    {{ print }}
  ' "$fstab" > "$kept"
  cat "$kept" > "$fstab"
  rm -f "$kept"
  echo "shared storage: fstab entry removed"
fi
{remove_dirs("shared-mount")}"""


def brick_create(config: StackConfig) -> str:
    brick = gluster_brick(config)
    return f"""#!/bin/sh
# The brick directory on this storage host's own disk.
set -eu
ROOT="${{ROOT:-}}"
command -v gluster >/dev/null || {{ echo "glusterfs-server is not installed on this host" >&2; exit 1; }}
{make_dirs("gluster-brick", brick)}printf 'gluster: brick %s ready\\n' {sh(brick)}
"""


def brick_delete(config: StackConfig) -> str:
    return f"""#!/bin/sh
# Removes the brick directory only when empty (data in it stays after the volume is deleted).
set -eu
ROOT="${{ROOT:-}}"
{remove_dirs("gluster-brick")}echo "gluster: brick directory released"
"""


def gluster_clients(config: StackConfig) -> str:
    """auth.allow: every host of the cluster (each mounts the volume) and nothing else. The option takes a
    comma-separated list of addresses or host names and defaults to `*` (Red Hat Gluster Storage 3.5
    Administration Guide, 11.3 Supported Volume Options)."""
    return ",".join(dict.fromkeys(h.address for h in config.hosts))


def gluster_tls(config: StackConfig) -> bool:
    storage = config.storage
    return storage is not None and storage.kind is SharedStorageKind.glusterfs and storage.glusterfs.tls


# GlusterFS TLS (Gluster Administrator Guide, "Setting up GlusterFS with SSL/TLS", gluster/glusterdocs
# docs/Administrator-Guide/SSL.md): each node's certificate in /etc/ssl/glusterfs.pem, its key in
# /etc/ssl/glusterfs.key, the CA it trusts in /etc/ssl/glusterfs.ca; the volume options client.ssl and server.ssl
# turn on TLS for I/O, auth.ssl-allow lists the certificate names allowed to connect; the file
# /var/lib/glusterd/secure-access turns it on for the management connections. Each node makes its own key (it
# never leaves the node); the first storage host holds the cluster's CA and signs each node's request.
TLS_KEY_DELETE = 'rm -f "${ROOT:-}/etc/ssl/glusterfs.key"\necho "gluster tls: key removed"'
TLS_SIGN_DELETE = "echo 'gluster tls: the CA stays in /var/lib/mediastack/gluster-ca (remove it by hand)'"
TLS_INSTALL_DELETE = """#!/bin/sh
# Takes TLS away again: the certificate, the CA and secure-access; glusterd, where it runs, restarts without.
set -eu
ROOT="${ROOT:-}"
rm -f "$ROOT/etc/ssl/glusterfs.pem" "$ROOT/etc/ssl/glusterfs.ca" "$ROOT/var/lib/glusterd/secure-access"
dir=$(openssl version -d | sed -n 's/^OPENSSLDIR: "\\(.*\\)"$/\\1/p')
for f in glusterfs.pem glusterfs.ca glusterfs.key; do
  if [ -n "$dir" ] && [ -L "$ROOT$dir/$f" ]; then rm -f "$ROOT$dir/$f"; fi
done
if [ -z "$ROOT" ] && command -v systemctl >/dev/null && systemctl -q is-active glusterd; then
  systemctl restart glusterd
fi
echo "gluster tls: removed"
"""


def tls_names(config: StackConfig) -> list[str]:
    """The certificate names (CN) of the cluster's nodes: auth.ssl-allow, and what the signer checks."""
    return [h.name for h in config.hosts]


def tls_key_script(host: Host) -> str:
    return script("gluster_tls_key.sh", {"parameters": f"CN={sh(host.name)}"})


def tls_sign_script(config: StackConfig, requests: dict[str, str]) -> str:
    """The signing step, given each node's certificate request (PEM, from its key step) by host name."""
    assert config.storage is not None
    calls = "\n".join(f"sign {sh(name)} {sh(requests[name].strip())}" for name in tls_names(config))
    return script(
        "gluster_tls_sign.sh",
        {"parameters": f"CA_NAME={sh('mediastack ' + config.storage.glusterfs.volume + ' CA')}", "requests": calls},
    )


def signed_certificates(stdout: str) -> dict[str, str]:
    """The signing step's output by name ("ca" and each host): the PEM after each "### <name>" line."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in stdout.splitlines():
        if line.startswith("### "):
            current = found.setdefault(line[4:].strip(), [])
        elif current is not None and line.strip():
            current.append(line)
    return {name: "\n".join(lines) for name, lines in found.items()}


def tls_install_script(host: Host, signed: dict[str, str]) -> str:
    params = [f"CN={sh(host.name)}", f"CERT={sh(signed.get(host.name, ''))}", f"CA={sh(signed.get('ca', ''))}"]
    return script("gluster_tls_install.sh", {"parameters": "\n".join(params)})


def volume_create(config: StackConfig) -> str:
    """The script gluster_volume_create.sh with its parameters (PEERS and BRICKS: words of host names or
    addresses and paths from the config's grammars, which admit no space or glob character)."""
    assert config.storage is not None
    g = config.storage.glusterfs
    hosts = storage_hosts(config)
    brick = gluster_brick(config)
    params = [
        f"VOLUME={sh(g.volume)}",
        f"PEERS={sh(' '.join(h.address for h in hosts[1:]))}",
        f"BRICKS={sh(' '.join(f'{h.address}:{brick}' for h in hosts))}",
        f"REPLICA={2 if len(hosts) == 2 else 3}",
        f"CLIENTS={sh(gluster_clients(config))}",
        f"TLS_NAMES={sh(','.join(tls_names(config)) if gluster_tls(config) else '')}",
    ]
    return script("gluster_volume_create.sh", {"parameters": "\n".join(params)})


def volume_delete(config: StackConfig) -> str:
    assert config.storage is not None
    g = config.storage.glusterfs
    peers = " ".join(sh(h.address) for h in storage_hosts(config)[1:])
    return f"""#!/bin/sh
# Stops and deletes the volume (the files stay in the bricks) and detaches the peers, but only when no client
# still has it mounted: a replaced step under running services leaves the storage alone.
set -eu
volume={sh(g.volume)}
if ! gluster --mode=script volume info "$volume" >/dev/null 2>&1; then
  echo "gluster: no volume $volume"
  exit 0
fi
clients=$(gluster --mode=script volume status "$volume" clients 2>/dev/null | grep -c '^[0-9]' || true)
if [ "$clients" -gt 0 ]; then
  echo "gluster: volume $volume still mounted by $clients client(s); left in place"
  exit 0
fi
if gluster --mode=script volume info "$volume" | grep -q '^Status: Started'; then
  gluster --mode=script volume stop "$volume"
fi
gluster --mode=script volume delete "$volume"
for peer in {peers}; do
  gluster --mode=script peer detach "$peer" || true
done
echo "gluster: volume $volume deleted"
"""


def storage_scripts(config: StackConfig) -> dict[str, str]:
    """By file name, as `mediastack render` writes them under shared-storage/."""
    scripts = {"mount-create.sh": mount_create(config), "mount-delete.sh": mount_delete(config)}
    if config.storage is not None and config.storage.kind is SharedStorageKind.glusterfs:
        scripts.update(
            {
                "brick-create.sh": brick_create(config),
                "brick-delete.sh": brick_delete(config),
                "volume-create.sh": volume_create(config),
                "volume-delete.sh": volume_delete(config),
            }
        )
    return scripts


@dataclass(frozen=True)
class SharedStorageArgs:
    config: StackConfig
    # The hosts that mount it (every node: any may run a service that reads the data root).
    hosts: list[Host]


class SharedStorage(pulumi.ComponentResource):
    """The shared data filesystem: built (GlusterFS) or reached (NFS, CephFS), mounted on every node."""

    def __init__(self, name: str, args: SharedStorageArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mediastack:storage:SharedStorage", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        config = args.config
        scripts = storage_scripts(config)
        ready: list[pulumi.Resource] = []
        if "volume-create.sh" in scripts:
            hosts = storage_hosts(config)
            bricks = [
                host_command(f"{name}-{h.name}-brick", h, scripts["brick-create.sh"], scripts["brick-delete.sh"], child)
                for h in hosts
            ]
            tls = self._tls(name, config) if gluster_tls(config) else []
            volume = host_command(
                f"{name}-volume",
                hosts[0],
                scripts["volume-create.sh"],
                scripts["volume-delete.sh"],
                pulumi.ResourceOptions(parent=self, depends_on=[*bricks, *tls]),
            )
            ready = [volume]
        self.mounts = {
            h.name: host_command(
                f"{name}-{h.name}-mount",
                h,
                scripts["mount-create.sh"],
                scripts["mount-delete.sh"],
                pulumi.ResourceOptions(parent=self, depends_on=ready),
            )
            for h in args.hosts
        }
        self.register_outputs({"mounted": sorted(self.mounts)})

    def _tls(self, name: str, config: StackConfig) -> list[pulumi.Resource]:
        """Every node's key and request, the CA's signatures on the first storage host, every node's
        certificate in place: before the volume is probed, created or set to TLS."""
        child = pulumi.ResourceOptions(parent=self)
        keys = {
            h.name: host_command(f"{name}-{h.name}-tls-key", h, tls_key_script(h), TLS_KEY_DELETE, child)
            for h in config.hosts
        }
        requests = pulumi.Output.all(**{n: k.stdout for n, k in keys.items()})
        signer = host_command(
            f"{name}-tls-ca",
            storage_hosts(config)[0],
            requests.apply(lambda r: tls_sign_script(config, r)),
            TLS_SIGN_DELETE,
            pulumi.ResourceOptions(parent=self, depends_on=list(keys.values())),
        )
        signed = signer.stdout.apply(signed_certificates)

        def install(host: Host) -> pulumi.Output[str]:
            return signed.apply(lambda certs: tls_install_script(host, certs))

        return [
            host_command(
                f"{name}-{h.name}-tls",
                h,
                install(h),
                TLS_INSTALL_DELETE,
                pulumi.ResourceOptions(parent=self, depends_on=[signer]),
            )
            for h in config.hosts
        ]
