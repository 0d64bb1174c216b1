"""Reading a host: a fixed, read-only set of commands (locally for localhost, over ssh otherwise), what they
print, and the Docker API at the endpoint the stack's provider uses. No config value is ever part of a shell
string: commands are argv lists, quoted with shlex for ssh."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import threading
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mediastack.model.config import Host, StackConfig

from .checks import path_roles
from .facts import DATA_TREE_PARTS, EngineFacts, Filesystem, HostFacts

COMMAND_TIMEOUT_S = 30
SSH_CONNECT_TIMEOUT_S = 10
LOCAL_ADDRESSES = ("localhost", "127.0.0.1", "::1")

# -- parsing what the commands print ---------------------------------------------------------------------------


def parse_getent_group(text: str) -> int | None:
    fields = text.strip().split(":")
    return int(fields[2]) if len(fields) >= 3 and fields[2].isdigit() else None


def parse_listening(text: str) -> frozenset[int]:
    """Ports in LISTEN state (st 0A) from /proc/net/tcp and /proc/net/tcp6."""
    ports = set()
    for line in text.splitlines():
        cols = line.split()
        if len(cols) > 3 and cols[3] == "0A" and ":" in cols[1]:
            with contextlib.suppress(ValueError):
                ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return frozenset(ports)


def parse_df(text: str) -> list[tuple[str, int, int, str]]:
    """Rows of `df -B1 --output=fstype,size,avail,target`: (fstype, size, free, mount)."""
    rows = []
    for line in text.splitlines()[1:]:
        cols = line.split(None, 3)
        if len(cols) == 4 and cols[1].isdigit() and cols[2].isdigit():
            rows.append((cols[0], int(cols[1]), int(cols[2]), cols[3]))
    return rows


def ancestors(path: str) -> list[str]:
    """The path and its parents, deepest first."""
    p = Path(path)
    return [str(p), *(str(a) for a in p.parents)]


# -- transport -------------------------------------------------------------------------------------------------


class Unreachable(Exception):
    """A host that cannot be read; the message names how it was tried."""


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str


class Commands:
    """Runs a fixed, read-only command (an argv list) on a host."""

    how: str

    def run(self, argv: Sequence[str]) -> Ran:
        raise NotImplementedError


class LocalCommands(Commands):
    how = "locally"

    def run(self, argv: Sequence[str]) -> Ran:
        try:
            done = subprocess.run(
                ["env", "LC_ALL=C", *argv], capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise Unreachable(f"the host locally ({shlex.join(argv)}): {error}") from None
        return Ran(done.returncode, done.stdout, done.stderr)


def ssh_argv(user: str | None, address: str, port: str | None = None) -> list[str]:
    argv = ["ssh", "-T", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={SSH_CONNECT_TIMEOUT_S}"]
    if user:
        argv += ["-l", user]
    if port:
        argv += ["-p", port]
    return [*argv, "--", address]


class SshCommands(Commands):
    def __init__(self, user: str, address: str):
        self.prefix = ssh_argv(user, address)
        self.how = f"over ssh ({shlex.join(self.prefix)})"

    def run(self, argv: Sequence[str]) -> Ran:
        remote = shlex.join(["env", "LC_ALL=C", *argv])
        try:
            done = subprocess.run(
                [*self.prefix, remote], capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise Unreachable(f"the host {self.how}: {error}") from None
        if done.returncode == 255:  # ssh's own failure: no connection, no login
            raise Unreachable(f"the host {self.how}: {_last_line(done.stderr) or 'ssh exited 255'}")
        return Ran(done.returncode, done.stdout, done.stderr)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def commands_for(host: Host) -> Commands:
    if host.address in LOCAL_ADDRESSES:
        return LocalCommands()
    return SshCommands(host.ssh_user, host.address)


class SshRelay:
    """A local unix socket whose every connection is `ssh ... docker system dial-stdio` on the host: how the
    Docker CLI (cli/connhelper) and so the stack's Docker provider reach an ssh:// endpoint."""

    def __init__(self, endpoint: str):
        url = urllib.parse.urlsplit(endpoint)
        remote = ["docker", "system", "dial-stdio"]
        if url.path.strip("/"):
            remote = ["docker", f"--host=unix://{url.path}", "system", "dial-stdio"]
        self.argv = [*ssh_argv(url.username, url.hostname or "", str(url.port) if url.port else None)]
        self.argv.append(shlex.join(remote))
        self.how = shlex.join(self.argv)
        self.errors: list[str] = []
        self._dir = tempfile.mkdtemp(prefix="mediastack-preflight-")
        self.path = str(Path(self._dir) / "docker.sock")
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(self.path)
        self._server.listen(4)
        self._procs: list[subprocess.Popen[bytes]] = []
        self._outs: list[threading.Thread] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            try:
                proc = subprocess.Popen(
                    self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
                )
            except OSError as error:
                self.errors.append(str(error))
                conn.close()
                continue
            self._procs.append(proc)
            threading.Thread(target=self._pump_in, args=(conn, proc), daemon=True).start()
            out = threading.Thread(target=self._pump_out, args=(conn, proc), daemon=True)
            self._outs.append(out)
            out.start()

    def _pump_in(self, conn: socket.socket, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdin is not None
        with contextlib.suppress(OSError, ValueError):
            while chunk := conn.recv(65536):
                proc.stdin.write(chunk)
                proc.stdin.flush()
        with contextlib.suppress(OSError, ValueError):
            proc.stdin.close()

    def _pump_out(self, conn: socket.socket, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None and proc.stderr is not None
        with contextlib.suppress(OSError, ValueError):
            while chunk := os.read(proc.stdout.fileno(), 65536):
                conn.sendall(chunk)
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_RDWR)
        conn.close()
        code = proc.wait()
        if code != 0:
            self.errors.append(_last_line(proc.stderr.read().decode(errors="replace")) or f"ssh exited {code}")

    def failure(self) -> str | None:
        """Why ssh ended, once it has (it ends on its own when it cannot connect)."""
        for thread in list(self._outs):
            thread.join(timeout=SSH_CONNECT_TIMEOUT_S + 5)
        return self.errors[-1] if self.errors else None

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._server.close()
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        shutil.rmtree(self._dir, ignore_errors=True)


@contextlib.contextmanager
def docker_client(endpoint: str) -> Iterator[Any]:
    """A Docker SDK client for the endpoint; Unreachable (naming the endpoint and how) when it does not answer."""
    import docker
    import docker.errors

    relay = SshRelay(endpoint) if endpoint.startswith("ssh://") else None
    base_url = f"unix://{relay.path}" if relay else endpoint
    how = f"{endpoint} ({relay.how})" if relay else endpoint
    try:
        try:
            client = docker.DockerClient(base_url=base_url, version="auto", timeout=COMMAND_TIMEOUT_S)
        except docker.errors.DockerException as error:
            reason = (relay.failure() if relay else None) or _reason(error)
            raise Unreachable(f"Docker at {how}: {reason}") from None
        try:
            yield client
        finally:
            client.close()
    finally:
        if relay:
            relay.close()


def _reason(error: Exception) -> str:
    text = str(error)
    for known in ("Connection refused", "No such file or directory", "Permission denied", "timed out"):
        if known in text:
            return known
    return text.removeprefix("Error while fetching server API version: ")


def docker_endpoint(host: Host) -> str:
    from mediastack.single.stack import docker_endpoint as stack_endpoint

    return stack_endpoint(host)


def read_engine(client: Any) -> EngineFacts:
    return EngineFacts.from_api(client.version(), client.info(), client.api.containers(all=False))


def read_host(commands: Commands, config: StackConfig, host: Host, docker_root: str) -> HostFacts:
    group = commands.run(["getent", "group", "render"])
    dri = commands.run(["ls", "-1", "/dev/dri"])
    tcp = commands.run(["cat", "/proc/net/tcp", "/proc/net/tcp6"])
    roles = {**path_roles(config, host), "docker_root": docker_root}
    if "data_root" in roles:
        roles.update({f"data_root/{part}": f"{roles['data_root']}/{part}" for part in DATA_TREE_PARTS})
    candidates = sorted({a for p in roles.values() for a in ancestors(p)})
    existing = set(commands.run(["stat", "--printf=%n\\0", "--", *candidates]).out.split("\0"))
    probed = {role: next(a for a in ancestors(p) if a in existing or a == "/") for role, p in roles.items()}
    order = sorted(set(probed.values()))
    df = parse_df(commands.run(["df", "-B1", "--output=fstype,size,avail,target", "--", *order]).out)
    by_path = dict(zip(order, df, strict=False)) if len(df) == len(order) else {}
    filesystems = {role: Filesystem(path, *by_path[path]) for role, path in probed.items() if path in by_path}
    return HostFacts(
        render_gid=parse_getent_group(group.out) if group.code == 0 else None,
        dri=tuple(sorted(dri.out.split())) if dri.code == 0 else None,
        filesystems=filesystems,
        listening=parse_listening(tcp.out),
    )
