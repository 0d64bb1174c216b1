"""GlusterFS TLS: each node's key made on the node, the cluster's CA signing each node's request on the first
storage host, the certificates where Gluster reads them; checked with the real openssl."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from conftest import raw_config, require_root, require_tool
from mediastack.host.shared_storage import (
    signed_certificates,
    storage_scripts,
    tls_install_script,
    tls_key_script,
    tls_sign_script,
)
from mediastack.model.config import Host
from mediastack.plan.loading import parse_stack_config


def _run(text: str, root: Path) -> subprocess.CompletedProcess[str]:
    root.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        ["sh", "-c", text], env={**os.environ, "ROOT": str(root)}, capture_output=True, text=True, timeout=120
    )


def _openssl_dir() -> str:
    out = _openssl("version", "-d").stdout
    return out.split('"')[1]


def _openssl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_tool("openssl"), *args], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Host], dict[str, Path], dict[str, str], str]:
    """Every step run in a sandbox root per host: (hosts, roots, every step's stdout by step, the CA's root)."""
    require_tool("openssl")
    config = parse_stack_config(raw_config("cluster"), "cluster")
    base = tmp_path_factory.mktemp("gluster-tls")
    roots = {h.name: base / h.name for h in config.hosts}
    for root in roots.values():  # the host's OpenSSL directory, where a Debian-built Gluster looks
        (root / _openssl_dir().lstrip("/")).mkdir(parents=True)
    out: dict[str, str] = {}
    requests = {}
    for h in config.hosts:
        done = _run(tls_key_script(h), roots[h.name])
        assert done.returncode == 0, done.stderr
        requests[h.name] = out[f"key {h.name}"] = done.stdout
    signer = config.hosts[0].name  # the first storage host in this config
    signed = _run(tls_sign_script(config, requests), roots[signer])
    assert signed.returncode == 0, signed.stderr
    out["sign"] = signed.stdout
    certs = signed_certificates(signed.stdout)
    for h in config.hosts:
        done = _run(tls_install_script(h, certs), roots[h.name])
        assert done.returncode == 0, done.stderr
        out[f"install {h.name}"] = done.stdout
    return list(config.hosts), roots, out, signer


def test_every_node_certificate_verifies_against_the_cluster_ca(cluster) -> None:
    hosts, roots, _, _ = cluster
    for h in hosts:
        ssl = roots[h.name] / "etc/ssl"
        verified = _openssl("verify", "-CAfile", str(ssl / "glusterfs.ca"), str(ssl / "glusterfs.pem"))
        assert verified.returncode == 0 and verified.stdout.strip().endswith(": OK"), verified.stdout + verified.stderr
        subject = _openssl("x509", "-in", str(ssl / "glusterfs.pem"), "-noout", "-subject", "-nameopt", "RFC2253")
        assert subject.stdout.strip() == f"subject=CN={h.name}"
        # The certificate is for this node's own key.
        cert_key = _openssl("x509", "-in", str(ssl / "glusterfs.pem"), "-noout", "-pubkey").stdout
        own_key = _openssl("pkey", "-in", str(ssl / "glusterfs.key"), "-pubout").stdout
        assert cert_key and cert_key == own_key, h.name
        assert (ssl / "glusterfs.key").stat().st_mode & 0o777 == 0o600
        assert (roots[h.name] / "var/lib/glusterd/secure-access").exists()
    # Every node trusts the same CA: one node's certificate verifies against another's CA file.
    a, b = (roots[h.name] / "etc/ssl" for h in hosts[:2])
    assert _openssl("verify", "-CAfile", str(b / "glusterfs.ca"), str(a / "glusterfs.pem")).returncode == 0


def test_a_certificate_from_another_ca_does_not_verify(cluster, tmp_path: Path) -> None:
    """Control: a node's own request signed by a second CA (the same script on another host) verifies against
    that CA and not against the cluster's."""
    hosts, roots, out, _ = cluster
    config = parse_stack_config(raw_config("cluster"), "cluster")
    other = _run(tls_sign_script(config, {h.name: out[f"key {h.name}"] for h in hosts}), tmp_path / "other")
    foreign = signed_certificates(other.stdout)
    (tmp_path / "cert.pem").write_text(foreign[hosts[0].name] + "\n")
    (tmp_path / "ca.pem").write_text(foreign["ca"] + "\n")
    assert _openssl("verify", "-CAfile", str(tmp_path / "ca.pem"), str(tmp_path / "cert.pem")).returncode == 0
    ssl = roots[hosts[0].name] / "etc/ssl"
    refused = _openssl("verify", "-CAfile", str(ssl / "glusterfs.ca"), str(tmp_path / "cert.pem"))
    assert refused.returncode != 0 and "unable to get local issuer certificate" in refused.stdout + refused.stderr


def test_keys_never_leave_their_node(cluster) -> None:
    hosts, roots, out, signer = cluster
    everything = "\n".join(out.values())
    assert "PRIVATE KEY" not in everything
    ca = roots[signer] / "var/lib/mediastack/gluster-ca"
    assert (ca / "ca.key").stat().st_mode & 0o777 == 0o600 and ca.stat().st_mode & 0o777 == 0o700
    for h in hosts:
        if h.name != signer:
            assert not (roots[h.name] / "var/lib/mediastack/gluster-ca").exists()


def test_steps_are_idempotent(cluster) -> None:
    hosts, roots, out, _ = cluster
    again = _run(tls_key_script(hosts[1]), roots[hosts[1].name])
    assert again.returncode == 0 and again.stdout == out[f"key {hosts[1].name}"]  # the same key, the same request


def test_the_signer_refuses_a_request_for_another_name(cluster, tmp_path: Path) -> None:
    hosts, _, out, _ = cluster
    config = parse_stack_config(raw_config("cluster"), "cluster")
    requests = {h.name: out[f"key {h.name}"] for h in hosts}
    requests[hosts[1].name] = out[f"key {hosts[2].name}"]  # node3's request handed in as node2's
    done = _run(tls_sign_script(config, requests), tmp_path / "ca")
    assert done.returncode == 1
    assert f"gluster tls: the request for {hosts[1].name} names subject=CN={hosts[2].name}; refused" in done.stderr


def test_the_volume_takes_tls_and_only_the_cluster_names() -> None:
    """What the script sets is checked against a stand-in gluster in tests/test_swarm_scripts.py; here, which
    names it allows, and that `tls: false` leaves the volume without TLS."""
    config = parse_stack_config(raw_config("cluster"), "cluster")
    create = storage_scripts(config)["volume-create.sh"]
    assert "\nTLS_NAMES=gpu1,node2,node3\n" in create
    assert 'volume set "$VOLUME" auth.ssl-allow "$TLS_NAMES"' in create
    cfg = raw_config("cluster")
    cfg["storage"]["glusterfs"] = {**cfg["storage"].get("glusterfs", {}), "tls": False}
    assert "\nTLS_NAMES=''\n" in storage_scripts(parse_stack_config(cfg, "cluster"))["volume-create.sh"]


def test_gluster_finds_them_where_it_looks(cluster) -> None:
    """A Gluster built against OpenSSL's directory (Debian's) reads <OPENSSLDIR>/glusterfs.*: links to /etc/ssl."""
    hosts, roots, _, _ = cluster
    for h in hosts:
        where = roots[h.name] / _openssl_dir().lstrip("/")
        for name in ("glusterfs.pem", "glusterfs.key", "glusterfs.ca"):
            assert os.readlink(where / name) == f"/etc/ssl/{name}", (h.name, name)


# A GlusterFS volume with the stack's TLS options, served and mounted with the certificates the steps made: in a
# network namespace and a private mount namespace (the node's /etc/ssl, OpenSSL's directory and glusterd's state
# bound over the machine's own), one node serving, another mounting.
GLUSTER_LAB = r"""
set -eu
lab=$1 server=$2 client=$3 allow=$4
mount --make-rprivate /
# glusterd's state, logs and sockets (/run/glusterd.socket) of this namespace's own, gone with it.
for d in /var/lib/glusterd /var/log/glusterfs /run; do mount -t tmpfs tmpfs "$d"; done
mkdir -p /run/gluster
stop() {
  for pid in /run/gluster/vols/v1/*.pid /run/gluster/glusterd.pid; do
    if [ -s "$pid" ]; then kill "$(cat "$pid")" 2>/dev/null || true; fi
  done
}
trap stop EXIT
as_node() {
  for d in /etc/ssl "$OPENSSLDIR"; do
    if mountpoint -q "$d"; then umount "$d"; fi
    mount --bind "$lab/$1$d" "$d"
  done
  cp "$lab/$1/var/lib/glusterd/secure-access" /var/lib/glusterd/
}
as_node "$server"
ip link set lo up
ip link add g0 type veth peer name g1
ip addr add 10.203.0.1/24 dev g0
ip link set g0 up
ip link set g1 up
glusterd -p /run/gluster/glusterd.pid --log-file=/var/log/glusterfs/glusterd.log
for _ in 1 2 3 4 5 6 7 8 9 10; do gluster --mode=script pool list >/dev/null 2>&1 && break; sleep 1; done
mkdir -p "$lab/brick" "$lab/mnt"
gluster --mode=script volume create v1 10.203.0.1:"$lab/brick" force
gluster --mode=script volume set v1 client.ssl on
gluster --mode=script volume set v1 server.ssl on
gluster --mode=script volume set v1 auth.ssl-allow "$allow"
gluster --mode=script volume start v1
as_node "$client"
if mount -t glusterfs 10.203.0.1:/v1 "$lab/mnt" 2>/dev/null && echo written > "$lab/mnt/probe"; then
  echo "mounted"
  umount "$lab/mnt"
else
  echo "refused: $(grep -ho 'remote-error=[^}]*\|alert [a-z ]*' /var/log/glusterfs/*mnt*.log | tail -1)"
fi
gluster --mode=script volume stop v1 >/dev/null 2>&1 || true
"""


def _gluster_lab(roots: dict[str, Path], tmp_path: Path, server: str, client: str, allow: str) -> str:
    for tool in ("glusterd", "gluster", "unshare", "ip"):
        require_tool(tool)
    require_root("GlusterFS needs root, a network namespace and a FUSE mount")
    if not Path("/dev/fuse").exists():
        if os.environ.get("CI") == "true":
            pytest.fail("no /dev/fuse: a GlusterFS mount needs FUSE")
        pytest.skip("no /dev/fuse: a GlusterFS mount needs FUSE")
    lab = tmp_path / "lab"
    lab.mkdir()
    for name, root in roots.items():
        subprocess.run(["cp", "-a", str(root), str(lab / name)], check=True)
    ns = f"msgl{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        done = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                ns,
                "unshare",
                "-m",
                "sh",
                "-c",
                GLUSTER_LAB,
                "lab",
                str(lab),
                server,
                client,
                allow,
            ],
            env={**os.environ, "OPENSSLDIR": _openssl_dir()},
            capture_output=True,
            text=True,
            timeout=180,
        )
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_a_node_mounts_the_volume_over_tls(cluster, tmp_path: Path) -> None:
    hosts, roots, _, _ = cluster
    names = ",".join(h.name for h in hosts)
    assert _gluster_lab(roots, tmp_path, hosts[0].name, hosts[1].name, names) == "mounted"
    assert (tmp_path / "lab/brick/probe").read_text() == "written\n"


def test_a_certificate_not_allowed_is_refused(cluster, tmp_path: Path) -> None:
    """Control: the same client, its name left out of auth.ssl-allow: Gluster refuses it."""
    hosts, roots, _, _ = cluster
    allow = ",".join(h.name for h in hosts if h.name != hosts[1].name)
    result = _gluster_lab(roots, tmp_path, hosts[0].name, hosts[1].name, allow)
    assert result == "refused: remote-error=Authentication failed", result
