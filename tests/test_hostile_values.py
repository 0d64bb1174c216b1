"""No config value runs as code (docs/security.md).

A corpus of hostile values (command substitution, backticks, quotes, line breaks that would end a
here-document or add an fstab line, NUL, ${IFS}, option injection, non-ASCII digits, a trailing newline) is
put into every scalar key of two full configs (a single host with every optional section, and a cluster on
each kind of shared storage). For each, either the config model refuses it with the usual one-line message
naming the key (never a traceback), or every file the program generates is rendered and every host script
is run in a sandbox root with stand-ins for docker, gluster and mount: no value may execute. Each value that
would execute creates a canary file; the canary never appears.
"""

from __future__ import annotations

import copy
import hashlib
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import load_generated_yaml, raw_config, require_tool
from mediastack.host.backup import repository_credentials, stdin_text
from mediastack.plan.loading import ConfigError, parse_stack_config
from mediastack_cli.main import rendered_files

FAKES = Path(__file__).resolve().parent / "fakes" / "fake_tools.py"
PROGRAMS = ("docker", "gluster", "mount", "umount", "mountpoint")


def hostile_values(canary: Path) -> list[str]:
    touch = f"touch {canary}"
    return [
        f"$({touch})",
        f"`{touch}`",
        f"x'; {touch}; '",
        f'x"; {touch}; "',
        f"x\n{touch}\n",
        f"x\nMEDIASTACK_FILE\n{touch}\n",  # the old install here-document's terminator
        f"x\nMEDIASTACK_SEED\n{touch}\n",
        f"x\nEOF\n{touch}\n",
        "x\x00y",
        f"x${{IFS}}{touch.replace(' ', '${IFS}')}",
        f"-oProxyCommand={touch}",
        "--",
        "-o",
        "١٢٣",  # Arabic-Indic digits: int() reads them, systemd and tc do not
        "media\n",  # a trailing newline
        f"/srv/media/$({touch})",
        f"/srv/media`{touch}`",
        f"/srv/media\n{touch}",
        f"/srv/media/x y,nosuid {canary} none bind 0 0\nnone /mnt",  # fstab field and line injection
        "//srv/./media",
        "/",
        "/etc",
        f"sftp:u@h:/r\n{touch}",
        f"s3:https://h/b/$({touch})",
        f"http://h/$({touch})",
        f"a@b.org\n{touch}",
        f"*-*-* 03:30:00\nExecStartPre={touch}",
    ]


def single_host() -> dict[str, Any]:
    """prod with every optional string key set."""
    cfg = raw_config("prod")
    cfg["hosts"][0]["docker_host"] = "ssh://deploy@nas.home.arpa:22"
    cfg["backups"] = {
        **cfg["backups"],
        "repository": "s3:https://s3.example.org/media-backups/nas",
        "password": "correct horse battery staple",
        "s3_access_key_id": "AKIAEXAMPLE",
        "s3_secret_access_key": "s3cr3t/key",
    }
    cfg["downloads"] = {
        **cfg.get("downloads", {}),
        "vpn": {
            "provider": "mullvad",
            "wireguard_private_key": "wOEI9rqqbDwnN8/Bpp22sVz48T71vJ4fYmFWujulwUU=",
            "wireguard_addresses": "10.64.222.21/32",
            "server_countries": ["Netherlands"],
        },
    }
    cfg["alerting"] = {
        "webhook_urls": ["https://hooks.example.org/alert"],
        "ntfy_url": "https://ntfy.sh/media-alerts",
        "email": {
            "to": "ops@example.org",
            "sender": "media@example.org",
            "smarthost": "smtp.example.org:587",
            "username": "media",
            "password": "smtp-password",
        },
    }
    cfg["wiring"] = {"urls": {"sonarr": "https://192.168.1.10:8989"}}
    cfg["jellyfin_api_key"] = "0123456789abcdef0123456789abcdef"
    cfg["postgres_settings"] = {"work_mem": "64MB"}
    services = cfg.setdefault("services", {})
    services["sonarr"] = {
        "image_tag": "4.0.14",
        "subdomain": "series",
        "env": {"SONARR__LOG__LEVEL": "info"},
        "mounts": [{"source": "/srv/extra", "target": "/extra"}],
    }
    return cfg


def cluster(kind: str) -> dict[str, Any]:
    cfg = raw_config("cluster")
    if kind == "nfs":
        cfg["storage"] = {"kind": "nfs", "nfs": {"server": "nas.home.arpa", "export": "/export/media"}}
    elif kind == "cephfs":
        cfg["storage"] = {
            "kind": "cephfs",
            "cephfs": {"monitors": ["10.0.0.1", "10.0.0.2:6789"], "path": "/media", "user": "mediastack"},
        }
    return cfg


def leaves(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path of every scalar in the config, and of every key of a free-form mapping (env, settings)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if path and path[-1] in ("env", "postgres_settings"):
                yield (*path, ("key", key))
            yield from leaves(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from leaves(value, (*path, i))
    else:
        yield path


def with_value(cfg: dict[str, Any], path: tuple[Any, ...], value: str) -> dict[str, Any]:
    out = copy.deepcopy(cfg)
    node: Any = out
    for part in path[:-1]:
        node = node[part]
    last = path[-1]
    if isinstance(last, tuple):  # a mapping's key
        node[value] = node.pop(last[1])
    else:
        node[last] = value
    return out


MUST_SUCCEED = {
    "storage-create.sh",
    "storage-delete.sh",
    "seeds-create.sh",
    "sysctl-create.sh",
    "daemon-create.sh",
    "backup-create.sh",
    "mediastack-backup.sh",
    "qos-create.sh",
    "vpn-guard-create.sh",
    "init-create.sh",
    "brick-create.sh",
    "mount-create.sh",
    "volume-create.sh",
}


class Sandbox:
    """One root per host, the stand-ins on PATH, and a record of the scripts already run (by content)."""

    def __init__(self, top: Path, canary: Path):
        self.top = top
        self.canary = canary
        self.bin = top / "bin"
        self.bin.mkdir(parents=True)
        for program in PROGRAMS:
            (self.bin / program).symlink_to(FAKES)
        self.seen: set[str] = set()
        self.runs = 0

    def run(self, rel: str, script: str, stdin: str = "", then: str = "") -> None:
        """Run `script` (with `stdin`), then `then` in the same root; nothing may create the canary, and the
        sandbox's fstab keeps well-formed lines only."""
        digest = hashlib.sha256((rel + script + stdin + then).encode()).hexdigest()
        if digest in self.seen:
            return
        self.seen.add(digest)
        self.runs += 1
        case = self.top / f"case{self.runs}"
        root = case / "root"
        (root / "etc").mkdir(parents=True)
        (root / "etc/fstab").write_text("UUID=0a1b / ext4 errors=remount-ro 0 1\n")
        state = case / "cluster"
        state.mkdir()
        env = {
            "PATH": f"{self.bin}:/usr/bin:/bin",
            "ROOT": str(root),
            "FAKE_CLUSTER": str(state),
            "FAKE_NODE": "node1",
            "MEDIASTACK_STATE_DIR": str(root / "state"),
            "MEDIASTACK_METRICS_DIR": str(root / "metrics"),
            "RESTIC": "true",
            "DOCKER": "docker",
        }
        syntax = subprocess.run(["sh", "-n", "-c", script], capture_output=True, text=True, timeout=30)
        assert syntax.returncode == 0, f"{rel} is not valid shell: {syntax.stderr}"
        for text, given in ((script, stdin), (then, "")):
            if text:
                done = subprocess.run(
                    ["sh", "-c", text, rel], input=given, env=env, capture_output=True, text=True, timeout=30
                )
                # A script that stopped early proves nothing: these must run to their end with any accepted value.
                if rel.rsplit("/", 1)[-1] in MUST_SUCCEED:
                    assert done.returncode == 0, f"{rel} failed: {done.stderr}"
        assert not self.canary.exists(), f"{rel} ran a config value as code:\n{script}"
        for line in (root / "etc/fstab").read_text().splitlines():
            assert line.startswith("#") or len(line.split()) == 6, f"{rel} wrote a malformed fstab line: {line!r}"


def check_refusal(error: ConfigError, path: tuple[Any, ...]) -> None:
    message = str(error)
    lines = message.splitlines()
    assert lines[0].startswith("stack 'hostile': "), message
    assert all(line.startswith("  - mediastack:") for line in lines[1:]), message
    assert len(lines) >= 2, message
    assert "Traceback" not in message


def exercise(sandbox: Sandbox, config: Any) -> None:
    files = rendered_files("hostile", config)
    for rel, content in files.items():
        if rel.endswith((".yml", ".yaml")):
            load_generated_yaml(content)  # generated YAML stays YAML
        if not rel.endswith(".sh"):
            continue
        name = rel.rsplit("/", 1)[-1]
        if name == "backup-create.sh":
            stdin = stdin_text(config.backups.password or "generated", repository_credentials(config))
            sandbox.run(rel, content, stdin)
            continue
        if name == "mediastack-backup.sh":
            # The tool reads the credentials the create script wrote: run both, the tool with a restic stand-in.
            create = files[rel.replace("mediastack-backup.sh", "backup-create.sh")]
            stdin = stdin_text(config.backups.password or "generated", repository_credentials(config))
            state = 'MEDIASTACK_STATE_DIR="$ROOT/var/lib/mediastack/restic"'
            tool = f"{state} sh -c {shlex.quote(content)} tool restic snapshots"
            sandbox.run(rel, create, stdin, then=tool)
            continue
        if name.startswith("join-") or name.startswith("labels-"):
            sandbox.run(rel, content, "SWMTKN-1-worker\n")
            continue
        if name.endswith(("qos.sh", "vpn-guard.sh")):
            continue  # the tools change the kernel's tc and nftables: their install scripts run, they do not
        sandbox.run(rel, content)


BASES = {
    "single-host": single_host,
    "cluster-glusterfs": lambda: cluster("glusterfs"),
    "cluster-nfs": lambda: cluster("nfs"),
    "cluster-cephfs": lambda: cluster("cephfs"),
}


@pytest.mark.parametrize("base", sorted(BASES))
def test_no_config_value_runs_as_code(base: str, tmp_path: Path) -> None:
    require_tool("python3")  # the stand-ins
    canary = tmp_path / "canary"
    cfg = BASES[base]()
    parse_stack_config(cfg, "hostile")  # the base itself is valid
    sandbox = Sandbox(tmp_path / "sandbox", canary)
    refused = accepted = 0
    rendered: set[str] = set()
    values = hostile_values(canary)
    paths = list(leaves(cfg))
    assert len(paths) > 40
    for path in paths:
        for value in values:
            try:
                config = parse_stack_config(with_value(cfg, path, value), "hostile")
            except ConfigError as error:
                check_refusal(error, path)
                refused += 1
                continue
            accepted += 1
            key = config.model_dump_json()
            if key in rendered:
                continue
            rendered.add(key)
            exercise(sandbox, config)
    assert not canary.exists()
    assert refused > accepted  # most hostile values are refused at the edge
    print(f"{base}: {len(paths)} keys x {len(values)} values: {refused} refused, {accepted} accepted, "
          f"{len(rendered)} distinct configs rendered, {sandbox.runs} scripts run")  # fmt: skip
