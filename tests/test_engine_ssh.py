"""The host scripts over real SSH, as pulumi-command's `command:remote:Command` runs them: Debian's
openssh-server in a network namespace of its own, each `create` sent as the session's command with its
`stdin` and its environment (pulumi-command sets variables with the session's `env` request, which sshd
takes only for names in AcceptEnv), twice, then every `delete` in reverse dependency order.

ROOT, the scripts' own prefix for every path, is the one variable sent: it points them at a sandbox standing
for the host's `/`, which must end exactly as it began."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from engine_apply import REMOTE_COMMAND, dependency_order, unsealed_plan

from conftest import ROOT, require_tool
from mediastack_cli.offline import read_stack

pytestmark = pytest.mark.engine

PORT = 2222


def _snapshot(root: Path) -> dict[str, tuple[str, bytes | None]]:
    found: dict[str, tuple[str, bytes | None]] = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        found[key] = ("dir", None) if path.is_dir() else ("file", path.read_bytes())
    return found


@pytest.fixture(scope="module")
def ssh_host(tmp_path_factory):
    for tool in ("sshd", "ssh", "ssh-keygen", "nsenter", "ip"):
        require_tool(tool) if tool != "sshd" else (shutil.which("sshd") or require_tool("/usr/sbin/sshd"))
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("sshd in a network namespace needs root in CI")
        pytest.skip("sshd in a network namespace needs root")
    work = tmp_path_factory.mktemp("ssh")
    netns = f"mssh{os.getpid()}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True)
    for name in ("host", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / name)], check=True)
    (work / "authorized_keys").write_text((work / "client.pub").read_text())
    Path("/run/sshd").mkdir(exist_ok=True)
    config = work / "sshd_config"
    config.write_text(
        f"Port {PORT}\nListenAddress 127.0.0.1\nHostKey {work / 'host'}\n"
        f"AuthorizedKeysFile {work / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
        f"PasswordAuthentication no\nStrictModes no\nUsePAM no\nAcceptEnv ROOT\nPidFile {work / 'sshd.pid'}\n"
    )
    sshd = subprocess.Popen(
        [
            "nsenter",
            f"--net=/run/netns/{netns}",
            shutil.which("sshd") or "/usr/sbin/sshd",
            "-D",
            "-f",
            str(config),
            "-E",
            str(work / "sshd.log"),
        ],
    )
    try:
        yield work, netns
    finally:
        sshd.terminate()
        sshd.wait(timeout=10)
        subprocess.run(["ip", "netns", "del", netns], check=False)


def _remote(ssh_host, command: str, stdin: str, sandbox: Path) -> subprocess.CompletedProcess[str]:
    work, netns = ssh_host
    return subprocess.run(
        [
            "nsenter",
            f"--net=/run/netns/{netns}",
            "ssh",
            "-i",
            str(work / "client"),
            "-p",
            str(PORT),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
            "-o",
            f"SetEnv=ROOT={sandbox}",
            "root@127.0.0.1",
            command,
        ],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_host_scripts_over_ssh_twice_then_deleted_leave_the_host_as_it_was(ssh_host, tmp_path):
    plan = unsealed_plan(read_stack(ROOT, "prod"))
    commands = [r for r in dependency_order(plan) if r.type == REMOTE_COMMAND]
    assert commands
    sandbox = tmp_path / "host"
    # What the host had before: settings of its own, which the scripts must keep or restore.
    (sandbox / "etc" / "docker").mkdir(parents=True)
    (sandbox / "etc" / "docker" / "daemon.json").write_text('{"debug": true}\n')
    (sandbox / "etc" / "sysctl.d").mkdir()
    (sandbox / "etc" / "sysctl.d" / "10-own.conf").write_text("vm.swappiness = 60\n")
    for directory in ("etc/systemd/system", "usr/local/sbin", "var/lib"):  # on every Debian host
        (sandbox / directory).mkdir(parents=True, exist_ok=True)
    before = _snapshot(sandbox)
    after_first: dict[str, tuple[str, bytes | None]] = {}
    for round_ in (1, 2):
        for command in commands:
            done = _remote(ssh_host, command.inputs["create"], command.inputs.get("stdin") or "", sandbox)
            assert done.returncode == 0, (round_, command.name, done.stderr[-1500:])
        if round_ == 1:
            after_first = _snapshot(sandbox)
    assert after_first != before
    second = _snapshot(sandbox)
    assert {k for k in second if second[k] != after_first.get(k)} <= {
        k for k in second if "backup" in k or k.endswith(".log")
    }
    for command in reversed(commands):
        done = _remote(ssh_host, command.inputs["delete"], "", sandbox)
        assert done.returncode == 0, (command.name, done.stderr[-1500:])
    left = _snapshot(sandbox)
    # Kept on purpose: the first-start files are the apps' state once written (the seeds step's delete says
    # so), and the backup repository's password outlives the tool (docs/backups.md); with their directories.
    kept_files = [
        k for k, (kind, _) in left.items() if kind == "file" and k.startswith(("srv/", "var/lib/mediastack/restic/"))
    ]
    assert any(k.endswith("restic/password") for k in kept_files)
    kept = {str(parent) for k in kept_files for parent in Path(k).parents} | set(kept_files)
    changed = sorted(k for k in left if left[k] != before.get(k) and k not in kept)
    assert changed == [], "\n".join(changed)
