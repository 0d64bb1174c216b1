"""`mediastack preflight`: the checks as plain functions (facts + config -> findings, each message asserted),
then the command end to end against the tests' own Docker engine and against hosts that cannot be reached."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from conftest import ROOT, raw_config
from mediastack.model.units import GIB, MIB
from mediastack.plan.loading import parse_stack_config
from mediastack.plan.resolve import resolve
from mediastack_cli import preflight as pf
from mediastack_cli.main import app
from mediastack_cli.preflight import checks, probe
from mediastack_cli.preflight import facts as pf_facts
from mediastack_cli.preflight.facts import EngineFacts, Filesystem, HostFacts, Published
from mediastack_cli.preflight.probe import SshCommands

runner = CliRunner()


def stack(raw: dict[str, Any] | None = None, name: str = "t"):
    return resolve(parse_stack_config(raw or raw_config("dev"), name), name)


def dev(**host: Any) -> dict[str, Any]:
    raw = raw_config("dev")
    raw["hosts"][0].update(host)
    return raw


def engine(**kw: Any) -> EngineFacts:
    fits = dict(
        version="28.5.1",
        api_version="1.51",
        min_api_version="1.24",
        os="Debian GNU/Linux 12 (bookworm)",
        kernel="6.1.0",
        cgroup_version="2",
        cgroup_driver="systemd",
        storage_driver="overlay2",
        containerd_store=False,
        runtimes=("io.containerd.runc.v2", "runc"),
        default_runtime="runc",
        cpus=4,
        memory=8 * GIB - 200 * MIB,
        docker_root="/var/lib/docker",
        memory_limit=True,
        swap_limit=True,
        cpu_quota=True,
    )
    return EngineFacts(**{**fits, **kw})  # type: ignore[arg-type]


def disk(fstype: str = "ext4", free: int = 500 * GIB, mount: str = "/", probed: str = "/srv") -> Filesystem:
    return Filesystem(probed, fstype, 1000 * GIB, free, mount)


def host_facts(**kw: Any) -> HostFacts:
    roles = ("config_root", "cache_root", "data_root", "photos_root", "docker_root")
    fits: dict[str, Any] = dict(
        render_gid=None, dri=None, filesystems={r: disk() for r in roles}, listening=frozenset()
    )
    return HostFacts(**{**fits, **kw})


def findings(s=None, e: EngineFacts | None = None, f: HostFacts | None = None) -> list[tuple[str, str, str, str]]:
    s = s or stack()
    return [
        (x.check, x.severity, x.message, x.fix)
        for x in checks.check_host(s, s.config.host, e or engine(), f or host_facts())
    ]


def test_a_host_that_fits_has_no_finding():
    assert findings() == []


# -- engine version, API pins, cgroup, image store -------------------------------------------------------------


def test_an_engine_below_the_gateway_priority_api_is_a_mismatch_when_download_clients_run():
    got = findings(e=engine(version="27.5.1", api_version="1.47"))
    assert got == [
        (
            "engine",
            "mismatch",
            "Docker Engine 27.5.1 serves API 1.47; the stack needs API 1.48 (Docker 28.0) for the download "
            "clients' gateway priority (GwPriority)",
            "upgrade Docker Engine on dev to 28.0 or later",
        )
    ]


def test_without_download_clients_api_1_41_is_enough():
    raw = raw_config("dev")
    raw["bundles"] = ["media"]
    assert [s.name for s in stack(raw).services if s.spec.role == "download_client"] == []
    assert findings(stack(raw), engine(version="20.10.24", api_version="1.41", min_api_version="1.12")) == []
    got = findings(stack(raw), engine(version="19.03.15", api_version="1.40", min_api_version="1.12"))
    assert [g[2] for g in got] == [
        "Docker Engine 19.03.15 serves API 1.40; the stack needs API 1.41 (Docker 20.10) for cgroup v2 support and "
        "Swarm services' capability lists"
    ]


def test_the_gateway_need_matches_the_plan_that_sets_gw_priority():
    """The services preflight counts as needing API 1.48 are exactly those the program gives a gwPriority."""
    from conftest import containers, plan

    planned = {
        name
        for name, c in containers(plan("dev")).items()
        if any(n.get("gwPriority") for n in c.get("networksAdvanced", []))
    }
    s = stack()
    assert planned, "the dev stack runs download clients"
    needing = {
        x.name
        for x in s.services
        if pf_facts.NetworkRole.downloads in x.networks and x.spec.role in ("download_client", "vpn")
    }
    assert needing == planned
    assert pf_facts.GATEWAY_NEED in pf_facts.engine_needs(s)


def test_traefik_pinned_to_api_1_24_on_an_engine_that_refuses_it():
    raw = raw_config("dev")
    raw["services"] = {**raw.get("services", {}), "traefik": {"image_tag": "v3.5.3"}}  # an older pin, overridden
    got = findings(stack(raw), e=engine(version="29.0.1", api_version="1.52", min_api_version="1.44"))
    tag = pf_facts.image_tag(stack(raw).get("traefik").image)
    assert tag == "v3.5.3"
    assert got == [
        (
            "engine",
            "mismatch",
            f"traefik {tag} talks to Docker at API 1.24 (traefik pkg/provider/docker/pdocker.go at v3.5.3); Docker "
            "Engine 29.0.1 refuses API versions below 1.44",
            "set mediastack:services.traefik.image_tag to v3.6.1 or later, or start dockerd on dev with "
            "DOCKER_MIN_API_VERSION=1.24",
        )
    ]


@pytest.mark.parametrize(
    ("tag", "min_api", "fires"),
    [
        ("v3.5.3", "1.44", True),
        ("v3.6.0", "1.44", True),
        ("v3.5.3", "1.24", False),  # DOCKER_MIN_API_VERSION=1.24
        ("v3.5.3", "1.12", False),  # Docker 20.10
        ("v3.6.1", "1.44", False),
        ("v3.6.2", "1.44", False),
    ],
)
def test_the_traefik_pin_by_tag_and_engine_floor(tag: str, min_api: str, fires: bool):
    raw = raw_config("dev")
    raw["services"]["traefik"] = {"image_tag": tag}
    got = findings(stack(raw), engine(version="29.0.1", api_version="1.52", min_api_version=min_api))
    assert any("talks to Docker at API 1.24" in g[2] for g in got) is fires


def test_cgroup_v1_and_unenforced_limits_are_mismatches():
    got = findings(e=engine(cgroup_version="1", swap_limit=False, memory_limit=False, cpu_quota=False))
    assert got == [
        (
            "cgroup",
            "mismatch",
            "cgroup v1: the stack's memory limits and no-swap settings are written for cgroup v2 (mem_swappiness and "
            "the v1 controllers behave differently)",
            "boot dev with the unified hierarchy (kernel argument systemd.unified_cgroup_hierarchy=1)",
        ),
        (
            "cgroup",
            "mismatch",
            "the engine cannot enforce memory limits: every tier's limit would be ignored",
            "enable the cgroup controllers on dev (docker info lists the warnings)",
        ),
        (
            "cgroup",
            "mismatch",
            "the engine cannot enforce CPU limits: every tier's limit would be ignored",
            "enable the cgroup controllers on dev (docker info lists the warnings)",
        ),
        (
            "cgroup",
            "mismatch",
            "the kernel has no swap accounting: memory_swap = memory (no swap for critical services) is ignored",
            "enable swap accounting on dev (cgroup v2, or kernel argument swapaccount=1 on cgroup v1)",
        ),
    ]


@pytest.mark.parametrize(
    ("tag", "store", "fires"),
    [("v0.52.1", True, True), ("v0.52.1", False, False), ("v0.54.0", True, False), ("v0.55.1", True, False)],
)
def test_cadvisor_and_the_containerd_image_store(tag: str, store: bool, fires: bool):
    raw = raw_config("prod")
    raw["services"]["cadvisor"] = {"image_tag": tag}
    s = stack(raw)
    h = s.config.host
    e = engine(cpus=h.cpus, memory=h.memory, containerd_store=store)
    got = [x for x in checks.check_engine(h, e, s) if x.check == "image-store"]
    expected = (
        f"cadvisor {tag} sees no containers on an engine using the containerd image store "
        "(google/cadvisor 7eda190, tag v0.54.0)"
    )
    assert [x.message for x in got] == ([expected] if fires else [])
    if fires:
        assert got[0].fix == "set mediastack:services.cadvisor.image_tag to v0.54.0 or later"


def test_the_containerd_store_is_read_from_docker_info():
    info = {"Driver": "overlayfs", "DriverStatus": [["driver-type", "io.containerd.snapshotter.v1"]], "NCPU": 2}
    assert EngineFacts.from_api({}, info, []).containerd_store is True
    legacy = {"Driver": "overlay2", "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"]]}
    assert EngineFacts.from_api({}, legacy, []).containerd_store is False


# -- GPU ------------------------------------------------------------------------------------------------------


def test_intel_gpu_without_dri_or_render_group():
    got = findings(stack(dev(gpu="intel", render_gid=105)), f=host_facts())
    assert got == [
        (
            "gpu",
            "mismatch",
            "gpu is intel but dev has no /dev/dri",
            "install the intel GPU driver on dev, or set gpu: none",
        ),
        (
            "gpu",
            "mismatch",
            "gpu is intel but dev has no render group",
            "install the GPU driver (it creates the render group) on dev",
        ),
    ]


def test_render_gid_that_differs_from_the_hosts_group():
    got = findings(stack(dev(gpu="amd", render_gid=105)), f=host_facts(render_gid=992, dri=("card0", "renderD128")))
    assert got == [
        (
            "gpu",
            "mismatch",
            "render_gid is 105 but the render group on dev has gid 992",
            "set render_gid: 992 for host dev",
        )
    ]
    assert findings(stack(dev(gpu="amd", render_gid=992)), f=host_facts(render_gid=992, dri=("renderD128",))) == []


def test_dri_without_a_render_node():
    got = findings(stack(dev(gpu="intel", render_gid=105)), f=host_facts(render_gid=105, dri=("card0",)))
    assert [g[2] for g in got] == ["gpu is intel but dev has no render node in /dev/dri"]


def test_nvidia_needs_the_runtime():
    got = findings(stack(dev(gpu="nvidia")))
    assert got == [
        (
            "gpu",
            "mismatch",
            "gpu is nvidia but the engine on dev has no nvidia runtime (runtimes: io.containerd.runc.v2, runc)",
            "install the NVIDIA Container Toolkit on dev and run `nvidia-ctk runtime configure --runtime=docker`, "
            "then restart dockerd",
        )
    ]
    assert findings(stack(dev(gpu="nvidia")), engine(runtimes=("nvidia", "runc"))) == []


def test_an_unused_gpu_is_a_note_and_does_not_fail():
    got = findings(f=host_facts(render_gid=105, dri=("card0", "renderD128")))
    assert got == [
        (
            "gpu",
            "note",
            "gpu is none but dev has /dev/dri/renderD128",
            "set gpu: intel or amd (and render_gid) to transcode in hardware",
        )
    ]
    assert pf.exit_code([pf.HostReport("dev", "", "", findings=[pf_facts.Finding("dev", *got[0])])]) == 0


# -- CPUs and memory ----------------------------------------------------------------------------------------------


def test_more_cpus_or_memory_than_the_host_has():
    got = findings(stack(dev(cpus=16, memory="64GiB")), engine(cpus=4, memory=8 * GIB - 300 * MIB))
    assert got == [
        (
            "cpus",
            "mismatch",
            "cpus is 16 but dev has 4: the tiers' reservations were fitted to CPUs the host does not have",
            "set cpus: 4 for host dev",
        ),
        (
            "memory",
            "mismatch",
            "memory is 64GiB but dev has 7892MiB: the reservations would not fit",
            "set memory: 7892MiB for host dev",
        ),
    ]


def test_memtotal_a_little_below_the_installed_memory_fits_and_fewer_cpus_is_a_note():
    assert findings(e=engine(memory=int(8 * GIB * 0.97))) == []
    got = findings(e=engine(cpus=8))
    assert got == [
        ("cpus", "note", "cpus is 4; dev has 8", "set cpus: 8 for host dev to size the tiers for all of them")
    ]


# -- paths and disk --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fstype", ["nfs", "nfs4", "cifs", "smb3", "fuse.glusterfs", "ceph", "fuse.sshfs", "9p"])
def test_config_root_on_a_network_filesystem_is_refused(fstype: str):
    fs = {**host_facts().filesystems, "config_root": disk(fstype, mount="/srv/mediastack-dev")}
    got = findings(f=host_facts(filesystems=fs))
    assert got == [
        (
            "paths",
            "mismatch",
            f"config_root /srv/mediastack-dev/config is on {fstype} (/srv/mediastack-dev): the apps' SQLite "
            "databases lock up and corrupt on a network filesystem",
            "set mediastack:paths.config_root to a directory on a local disk of dev",
        )
    ]


@pytest.mark.parametrize("fstype", ["ext4", "xfs", "btrfs", "zfs", "fuseblk"])
def test_local_filesystems_hold_config_root(fstype: str):
    fs = {**host_facts().filesystems, "config_root": disk(fstype)}
    assert findings(f=host_facts(filesystems=fs)) == []


def test_data_root_on_nfs_is_fine_and_cache_root_on_nfs_is_a_note():
    fs = {
        **host_facts().filesystems,
        "data_root": disk("nfs4", mount="/mnt/nas"),
        "cache_root": disk("nfs4", mount="/mnt/c"),
    }
    got = findings(f=host_facts(filesystems=fs))
    assert got == [
        (
            "paths",
            "note",
            "cache_root /srv/mediastack-dev/cache is on nfs4: transcode and cache writes cross the network",
            "put cache_root on a local SSD",
        )
    ]


def test_config_root_on_tmpfs_is_lost_at_reboot():
    fs = {**host_facts().filesystems, "config_root": disk("tmpfs", mount="/dev/shm")}
    got = findings(f=host_facts(filesystems=fs))
    assert got == [
        (
            "paths",
            "mismatch",
            "config_root /srv/mediastack-dev/config is on tmpfs (/dev/shm): everything in it is lost at reboot",
            "put config_root on a local disk of dev",
        )
    ]


def test_free_space_is_added_up_per_filesystem():
    s = stack()
    needs = checks.disk_needs(s, s.config.host)
    on_disk = sum(needs.values())
    assert needs["docker_root"] == len({x.image for x in s.services}) * GIB + len(s.services) * 50 * MIB
    assert needs["cache_root"] == s.config.paths.artwork_cache_size  # transcodes on tmpfs in dev
    # Everything on one disk: enough for each path alone is not enough for all of them together.
    tight = {r: disk(free=on_disk - MIB) for r in host_facts().filesystems}
    got = findings(f=host_facts(filesystems=tight))
    assert [g[:2] for g in got] == [("disk", "mismatch")]
    assert got[0][2].startswith(f"{(on_disk - MIB) // MIB}MiB free on / (config_root, cache_root, data_root, ")
    assert "the stack needs at least" in got[0][2]
    roomy = {r: disk(free=on_disk) for r in host_facts().filesystems}
    assert findings(f=host_facts(filesystems=roomy)) == []


def test_transcodes_on_disk_need_room_in_cache_root():
    raw = raw_config("dev")
    raw["paths"]["transcode_tmpfs"] = None
    s = stack(raw)
    assert checks.disk_needs(s, s.config.host)["cache_root"] == s.config.paths.artwork_cache_size + 10 * GIB


def test_a_path_whose_filesystem_cannot_be_read():
    fs = {k: v for k, v in host_facts().filesystems.items() if k != "photos_root"}
    got = findings(f=host_facts(filesystems=fs))
    assert got == [
        ("paths", "mismatch", "photos_root /srv/mediastack-dev/photos: cannot read its filesystem", "check the path")
    ]


# -- ports --------------------------------------------------------------------------------------------------------


def test_ports_taken_by_a_container_or_a_program():
    e = engine(published=(Published("old-nginx", 80, ""),))
    got = findings(e=e, f=host_facts(listening=frozenset({80, 443, 22})))
    assert got == [
        (
            "ports",
            "mismatch",
            "port 80 on dev is published by container old-nginx; traefik needs it",
            "stop or move old-nginx (docker rm -f old-nginx)",
        ),
        (
            "ports",
            "mismatch",
            "port 443 on dev is taken by a program outside Docker; traefik needs it",
            "stop that program (`ss -ltnp 'sport = :443'` on dev names it)",
        ),
    ]


def test_the_stacks_own_traefik_holding_the_ports_is_fine():
    e = engine(published=(Published("traefik", 80, "traefik"), Published("traefik", 443, "traefik")))
    assert findings(e=e, f=host_facts(listening=frozenset({80, 443}))) == []


# -- parsing -------------------------------------------------------------------------------------------------------


def test_parsers():
    assert probe.parse_getent_group("render:x:105:\n") == 105
    assert probe.parse_getent_group("") is None
    tcp = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
        "   0: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n"
        "   1: 0100007F:1F90 0100007F:D2B4 01 00000000:00000000 00:00000000 00000000     0        0 2 1\n"
        "   0: 00000000000000000000000000000000:01BB 00000000000000000000000000000000:0000 0A 0 0 0 0 0 3 1\n"
    )
    assert probe.parse_listening(tcp) == frozenset({80, 443})
    df = "Type     1B-blocks        Avail Mounted on\next4  1000 400 /\nnfs4 2000 100 /mnt/my share\n"
    assert probe.parse_df(df) == [("ext4", 1000, 400, "/"), ("nfs4", 2000, 100, "/mnt/my share")]
    assert probe.ancestors("/srv/a/b") == ["/srv/a/b", "/srv/a", "/srv", "/"]
    assert pf_facts.older("1.41", "1.48") and not pf_facts.older("1.48", "1.48") and pf_facts.older("v3.5.3", "v3.6.1")
    assert pf_facts.image_tag("traefik:v3.6.1@sha256:" + "0" * 64) == "v3.6.1"


def test_commands_never_put_a_config_value_into_a_shell_string(monkeypatch, tmp_path: Path):
    """Over ssh the remote command is one shlex-quoted string; a path with shell syntax stays one argument."""
    seen: list[list[str]] = []

    def fake_run(argv, **kw):
        seen.append(argv)
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(probe.subprocess, "run", fake_run)
    ssh = probe.SshCommands("-oProxyCommand=x", "nas.lan")
    ssh.run(["stat", "--", "/srv/$(touch /tmp/pwned); x"])
    argv = seen[0]
    assert argv[: argv.index("--") + 2] == [
        "ssh",
        "-T",
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=10",
        "-l",
        "-oProxyCommand=x",
        "--",
        "nas.lan",
    ]
    assert argv[-1] == "env LC_ALL=C stat -- '/srv/$(touch /tmp/pwned); x'"


# -- end to end: the tests' own Docker engine -------------------------------------------------------------------


def write_project(tmp_path: Path, name: str, config: dict[str, Any]) -> Path:
    project = tmp_path / f"project-{name}"
    project.mkdir()
    shutil.copy(ROOT / "Pulumi.yaml", project / "Pulumi.yaml")
    doc = {"config": {f"mediastack:{k}": v for k, v in config.items()}}
    (project / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump(doc))
    return project


def on_engine_host(engine, tmp_path: Path, **host: Any) -> dict[str, Any]:
    """The dev stack on the engine's machine: its endpoint, its real CPUs and memory, paths under tmp_path."""
    info = engine.client.info()
    raw = raw_config("dev")
    raw["hosts"][0].update(
        {
            "address": "localhost",
            "docker_host": engine.host,
            "cpus": info["NCPU"],
            "memory": f"{info['MemTotal'] // MIB}MiB",
        }
    )
    raw["hosts"][0].update(host)
    raw["paths"].update(
        {k: str(tmp_path / "srv" / k) for k in ("data_root", "config_root", "cache_root", "photos_root")}
    )
    raw["bundles"] = ["media"]  # no download clients: API 1.41 (Docker 20.10) is enough
    return raw


def run_in_engine_netns(engine, project: Path, stack_name: str, *extra: str, env: dict[str, str] | None = None):
    """The command in a real process inside the engine's network namespace: its /proc/net/tcp is where the
    engine publishes ports, as a host's is where its Docker publishes them."""
    return subprocess.run(
        [
            "nsenter",
            f"--net=/run/netns/{engine.netns}",
            sys.executable,
            "-m",
            "mediastack_cli",
            "preflight",
            "--stack",
            stack_name,
            "--project",
            str(project),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env=env,
        cwd=ROOT,
    )


def mount_of(path: Path) -> str:
    return subprocess.run(["df", "--output=target", str(path)], capture_output=True, text=True).stdout.split("\n")[1]


def machine_cgroup_version() -> str:
    fstype = subprocess.run(["stat", "-f", "-c", "%T", "/sys/fs/cgroup"], capture_output=True, text=True).stdout
    return "2" if fstype.strip() == "cgroup2fs" else "1"


@pytest.mark.engine
def test_a_fitting_config_on_the_real_engine(docker_engine, tmp_path: Path):
    project = write_project(tmp_path, "fit", on_engine_host(docker_engine, tmp_path))
    done = run_in_engine_netns(docker_engine, project, "fit", "--json")
    doc = json.loads(done.stdout)
    [host] = doc["hosts"]
    version = docker_engine.client.version()
    info = docker_engine.client.info()
    assert host["docker"] == docker_engine.host and host["commands"] == "locally"
    assert host["engine"]["version"] == version["Version"] and version["Version"].startswith("20.10")
    assert host["engine"]["api_version"] == "1.41" and host["engine"]["min_api_version"] == version["MinAPIVersion"]
    assert host["engine"]["cgroup_version"] == machine_cgroup_version()
    assert host["engine"]["storage_driver"] == "vfs" and host["engine"]["containerd_store"] is False
    assert host["engine"]["docker_root"] == info["DockerRootDir"]
    assert host["facts"]["filesystems"]["config_root"]["probed"] == str(tmp_path)  # the nearest existing parent
    # Whatever this machine's kernel decides about cgroups is all that may be reported.
    others = [f for f in host["findings"] if f["check"] != "cgroup"]
    assert others == []
    cgroup = [f["message"] for f in host["findings"] if f["severity"] == "mismatch"]
    assert any(m.startswith("cgroup v1:") for m in cgroup) is (machine_cgroup_version() == "1")
    assert done.returncode == doc["exit"] == (1 if cgroup else 0), done.stderr


@pytest.mark.engine
def test_a_config_that_does_not_fit_the_real_engine(docker_engine, tmp_path: Path):
    import dockerd

    rootfs = dockerd.busybox_rootfs(tmp_path / "rootfs")
    dockerd.import_rootfs(docker_engine, rootfs, "mediastack-test/preflight:1", ('CMD ["sh"]',))
    network = docker_engine.client.networks.create(
        "preflight-net",
        driver="bridge",
        ipam={"Config": [{"Subnet": docker_engine.subnet()}]},  # type: ignore[dict-item]
    )
    web = docker_engine.client.containers.run(
        "mediastack-test/preflight:1",
        ["sleep", "600"],
        name="preflight-web",
        network=network.name,
        ports={"80/tcp": 80},
        detach=True,
    )
    info = docker_engine.client.info()
    library = tmp_path / "srv" / "data_root" / "media"
    library.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "preflight-library", str(library)], check=True)
    volatile = tmp_path / "volatile"  # a tmpfs of the test's own (system directories such as /dev/shm are refused)
    volatile.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "preflight-volatile", str(volatile)], check=True)
    try:
        raw = on_engine_host(
            docker_engine,
            tmp_path,
            cpus=info["NCPU"] + 8,
            memory=f"{4 * info['MemTotal'] // GIB + 4}GiB",
            gpu="intel",
            render_gid=4242,
        )
        raw["bundles"] = ["media", "arr", "downloads"]  # download clients: API 1.48 (Docker 28)
        raw["paths"]["config_root"] = f"{volatile}/config"
        project = write_project(tmp_path, "misfit", raw)
        done = run_in_engine_netns(docker_engine, project, "misfit")
        assert done.returncode == 1, done.stdout + done.stderr
        text = " ".join(done.stdout.split())
        v = docker_engine.client.version()["Version"]
        assert (
            f"mismatch engine: Docker Engine {v} serves API 1.41; the stack needs API 1.48 (Docker 28.0) for the "
            "download clients' gateway priority (GwPriority); fix: upgrade Docker Engine on dev to 28.0 or later"
        ) in text
        assert (
            f"mismatch cpus: cpus is {info['NCPU'] + 8} but dev has {info['NCPU']}: the tiers' reservations were "
            f"fitted to CPUs the host does not have; fix: set cpus: {info['NCPU']} for host dev"
        ) in text
        assert f"memory: {info['MemTotal'] // MIB}MiB for host dev" in text
        assert (
            f"mismatch paths: config_root {volatile}/config is on tmpfs ({volatile}): "
            "everything in it is lost at reboot"
        ) in text
        assert (
            "mismatch ports: port 80 on dev is published by container preflight-web; traefik needs it; fix: stop "
            "or move preflight-web (docker rm -f preflight-web)"
        ) in text
        if not Path("/dev/dri").exists():
            assert "mismatch gpu: gpu is intel but dev has no /dev/dri" in text
        if machine_cgroup_version() == "2":
            assert "cgroup v1" not in text
        assert (
            f"mismatch paths: {library} is on {library}, the rest of data_root on {mount_of(tmp_path)}: imports "
            "between them become copies instead of hardlinks"
        ) in text
    finally:
        subprocess.run(["umount", str(library)], check=False)
        subprocess.run(["umount", str(volatile)], check=False)
        web.remove(force=True)
        network.remove()


# -- hosts that cannot be reached -------------------------------------------------------------------------------


def test_a_closed_docker_socket_exits_2_naming_it(tmp_path: Path):
    path = tmp_path / "closed.sock"
    closed = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    closed.bind(str(path))  # bound, never listening: connections are refused
    try:
        raw = dev(docker_host=f"unix://{path}")
        project = write_project(tmp_path, "closed", raw)
        result = runner.invoke(app, ["preflight", "--stack", "closed", "--project", str(project)])
    finally:
        closed.close()
    assert result.exit_code == 2, result.output
    assert f"host dev: cannot reach Docker at unix://{path}: Connection refused" in " ".join(result.output.split())


def test_an_ssh_port_nothing_listens_on_exits_2_naming_the_ssh_command(tmp_path: Path):
    if shutil.which("ssh") is None:
        pytest.skip("no ssh client (Debian package openssh-client)")
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # a loopback port nothing listens on
    project = write_project(tmp_path, "refused", dev(docker_host=f"ssh://deploy@127.0.0.1:{port}"))
    result = runner.invoke(app, ["preflight", "--stack", "refused", "--project", str(project), "--json"])
    assert result.exit_code == 2
    doc = json.loads(result.stdout)
    assert doc["exit"] == 2
    assert doc["hosts"][0]["unreachable"] == (
        f"Docker at ssh://deploy@127.0.0.1:{port} (ssh -T -o BatchMode=yes -o ConnectTimeout=10 -l deploy -p {port} "
        f"-- 127.0.0.1 'docker system dial-stdio'): ssh: connect to host 127.0.0.1 port {port}: Connection refused"
    )


STAND_IN_SSH = """#!/bin/sh
# A stand-in ssh: logs its arguments, then {behaviour}
printf '%s\\n' "$@" >> "{log}"
{body}
"""


def stand_in_ssh(tmp_path: Path, body: str) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "ssh"
    script.write_text(STAND_IN_SSH.format(behaviour="acts as told", log=tmp_path / "ssh.log", body=body))
    script.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


def test_an_ssh_host_that_refuses_exits_2(tmp_path: Path, monkeypatch):
    env = stand_in_ssh(tmp_path, 'echo "ssh: connect to host nas.lan port 22: Connection refused" >&2\nexit 255')
    monkeypatch.setenv("PATH", env["PATH"])
    project = write_project(tmp_path, "nas", dev(address="nas.lan", ssh_user="deploy"))
    result = runner.invoke(app, ["preflight", "--stack", "nas", "--project", str(project)])
    assert result.exit_code == 2
    assert (
        "host dev: cannot reach Docker at ssh://deploy@nas.lan (ssh -T -o BatchMode=yes -o ConnectTimeout=10 -l "
        "deploy -- nas.lan 'docker system dial-stdio'): ssh: connect to host nas.lan port 22: Connection refused"
    ) in " ".join(result.output.split())


@pytest.mark.engine
def test_a_host_over_ssh_reads_the_same_engine(docker_engine, tmp_path: Path, monkeypatch):
    """Over a stand-in ssh that runs its command on this machine (the `remote` host), with the engine as that
    host's Docker: the Docker API goes through `docker system dial-stdio`, the commands through quoted strings."""
    import dockerd

    body = (
        'while [ "$1" != "--" ]; do shift; done; shift 2\n'
        f'if [ "$1" = "docker system dial-stdio" ]; then exec {dockerd.docker_client()} --host {docker_engine.host} '
        "system dial-stdio; fi\n"
        'exec sh -c "$1"'
    )
    env = stand_in_ssh(tmp_path, body)
    raw = on_engine_host(docker_engine, tmp_path, address="nas.lan", ssh_user="deploy")
    del raw["hosts"][0]["docker_host"]  # the default: ssh://deploy@nas.lan
    project = write_project(tmp_path, "nas", raw)
    done = run_in_engine_netns(docker_engine, project, "nas", "--json", env=env)
    assert done.stdout, done.stderr
    doc = json.loads(done.stdout)
    [host] = doc["hosts"]
    assert host["unreachable"] is None, host
    assert host["docker"] == "ssh://deploy@nas.lan"
    assert host["commands"] == "over ssh (ssh -T -o BatchMode=yes -o ConnectTimeout=10 -l deploy -- nas.lan)"
    assert host["engine"]["version"] == docker_engine.client.version()["Version"]
    assert host["facts"]["filesystems"]["config_root"]["probed"] == str(tmp_path)
    assert [f for f in host["findings"] if f["check"] != "cgroup"] == []
    log = (tmp_path / "ssh.log").read_text().splitlines()
    assert "docker system dial-stdio" in log and "BatchMode=yes" in log
    assert any(line.startswith("env LC_ALL=C stat '--printf=%n\\0' -- / ") for line in log), log
    # The config model refuses shell syntax in paths; the transport quotes anyway: an argument with shell syntax
    # reaches the remote shell as one quoted argument, never as code.
    marker = tmp_path / "pwned"
    hostile = f"{tmp_path}/config$(touch${{IFS}}{marker});echo"
    monkeypatch.setenv("PATH", env["PATH"])
    ran = SshCommands("deploy", "nas.lan").run(["stat", "--", hostile])
    assert f"'{hostile}'" in (tmp_path / "ssh.log").read_text()
    assert ran is not None and not marker.exists()


def test_a_data_tree_split_over_filesystems_breaks_hardlinks():
    fs = {
        **host_facts().filesystems,
        "data_root/torrents": disk(mount="/"),
        "data_root/media": disk("xfs", mount="/mnt/library"),
    }
    got = findings(f=host_facts(filesystems=fs))
    assert got == [
        (
            "paths",
            "mismatch",
            "/srv/mediastack-dev/data/media is on /mnt/library, the rest of data_root on /: imports between them "
            "become copies instead of hardlinks",
            "keep the whole data tree /srv/mediastack-dev/data on one filesystem of dev",
        )
    ]


def test_unreachable_wins_over_mismatches_in_the_exit_code():
    bad = pf_facts.Finding("a", "cpus", "mismatch", "m", "f")
    assert pf.exit_code([pf.HostReport("a", "", "", findings=[bad])]) == 1
    assert pf.exit_code([pf.HostReport("a", "", "", findings=[bad]), pf.HostReport("b", "", "", unreachable="x")]) == 2
    assert pf.exit_code([pf.HostReport("a", "", "")]) == 0


def test_a_cluster_is_read_host_by_host():
    s = stack(raw_config("cluster"), "cluster")
    gpu1, node2, node3 = s.config.hosts
    # The shared data tree is mounted by the stack itself: only the node-local paths are read before.
    assert checks.path_roles(s.config, node2) == {"config_root": "/srv/media/config", "cache_root": "/srv/media/cache"}
    # No gateway priority on Swarm: API 1.41 is enough even with download clients.
    assert pf_facts.engine_needs(s) == [pf_facts.BASE_NEED]
    # Services pinned elsewhere are not counted on a host; those that may run anywhere are.
    assert "immich-postgres" in pf_facts.services_on(s, node2) and "immich-postgres" not in pf_facts.services_on(
        s, node3
    )
    fs = {r: disk() for r in ("config_root", "cache_root", "docker_root")}
    facts = host_facts(filesystems=fs)
    e = engine(cpus=8, memory=32 * GIB - 500 * MIB)
    got = [(x.host, x.message) for x in checks.check_host(s, gpu1, e, facts)]
    assert got == [
        (
            "gpu1",
            "gpu is nvidia but the engine on gpu1 has no nvidia runtime (runtimes: io.containerd.runc.v2, runc)",
        )
    ]
    e3 = engine(cpus=2, memory=16 * GIB)
    assert [x.message for x in checks.check_host(s, node3, e3, facts)] == [
        "cpus is 4 but node3 has 2: the tiers' reservations were fitted to CPUs the host does not have"
    ]


@pytest.mark.engine
def test_docker_answers_but_ssh_for_the_commands_refuses(docker_engine, tmp_path: Path):
    env = stand_in_ssh(tmp_path, 'echo "ssh: connect to host nas.lan port 22: Connection refused" >&2\nexit 255')
    raw = on_engine_host(docker_engine, tmp_path, address="nas.lan", ssh_user="deploy")  # docker_host: the engine
    project = write_project(tmp_path, "split", raw)
    done = run_in_engine_netns(docker_engine, project, "split", env=env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert (
        "host dev: cannot reach the host over ssh (ssh -T -o BatchMode=yes -o ConnectTimeout=10 -l deploy -- "
        "nas.lan): ssh: connect to host nas.lan port 22: Connection refused"
    ) in " ".join(done.stderr.split())
