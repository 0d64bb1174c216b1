"""Stand-in images for a plan: the real images' names and tags, built locally from busybox-static.

Derived from the plan itself (so they follow whatever the program runs after other changes), each stand-in
keeps the facts a Docker engine acts on:
- the name:tag the program references, so the image resolves locally with no pull;
- the health-check binary the container's health test calls (curl, wget, traefik, pg_isready, ...), on PATH,
  answering from the app's own state: an HTTP probe of the URL in the test, or whether the app runs;
- the app: busybox httpd serving the health URL's path on its port, started by the entrypoint;
- the entrypoint behaviour that matters for ownership: linuxserver-style images (PUID/PGID in the
  environment) start as root, create and chown /config to PUID:PGID, then drop to PUID; the others run as
  the container's user. Either way the app writes a file into every writable bind mount first and the
  container exits (and restarts) when it cannot: a directory the image's user cannot write shows as restarts.
What they do not keep (the real program's own code, its config parsing) docs/verification.md names.
"""

from __future__ import annotations

import re
import shlex
import tempfile
from pathlib import Path

from engine_apply import CONTAINER, SERVICE, container_image

import dockerd
from mediastack_cli.offline import PlanResult

URL = re.compile(r"https?://(?:127\.0\.0\.1|localhost):(\d+)(/[^\s'\"]*)?")
DEFAULT_PORT = 8080

ENTRYPOINT = r"""#!/bin/sh
# Stand-in entrypoint: ownership as the real image does it, then the app (httpd) as the image's user.
set -u
if [ "$(id -u)" = 0 ] && [ -n "${PUID:-}" ]; then
  mkdir -p /config && chown "$PUID:${PGID:-$PUID}" /config || exit 71
  run="/usr/bin/setpriv --reuid=$PUID --regid=${PGID:-$PUID} --clear-groups"
elif [ "$(id -u)" = 0 ] && [ -n "${STANDIN_DROP_TO:-}" ]; then
  # An image whose entrypoint starts as root, hands what it writes to its user and drops to it (valkey,
  # postgres: image facts): the chown needs CHOWN, as in the real image.
  # What the engine mounted into such a directory (a Swarm config: a read-only file) is left alone: the real
  # entrypoints chown their own data directories, never a file mounted into them.
  mounted=$(cut -d' ' -f2 /proc/self/mounts)
  for dir in $STANDIN_CHOWN; do
    [ -d "$dir" ] || continue
    find "$dir" ! -user "${STANDIN_DROP_TO%%:*}" | while IFS= read -r path; do
      if [ "$path" != "$dir" ] && printf '%s\n' "$mounted" | grep -qxF "$path"; then
        continue
      fi
      chown "$STANDIN_DROP_TO" "$path" || exit 71
    done || exit 71
  done
  run="/usr/bin/setpriv --reuid=${STANDIN_DROP_TO%%:*} --regid=${STANDIN_DROP_TO##*:} --clear-groups"
else
  run=""
fi
for dir in $STANDIN_WRITABLE; do
  [ -d "$dir" ] || continue
  if ! $run sh -c "echo ok > '$dir/.standin-write'"; then
    echo "stand-in: $(id -u):$(id -g) -> ${PUID:-self} cannot write $dir" >&2
    exit 73
  fi
done
$run httpd -f -p "$STANDIN_PORT" -h /standin/www &
if [ -n "${STANDIN_PROCESS:-}" ]; then
  # The process name a health check looks for in /proc/*/comm (a script's name is its comm); it lives while
  # the app does, so stopping the app fails the check.
  $run "/standin/$STANDIN_PROCESS" &
fi
wait
# The app stopped: the container stays up so its health check can report it.
while :; do sleep 3600; done
"""

PROBE = r"""#!/bin/sh
# Stand-in health-check binary: probes the app like the real one (exit 0 only when it answers).
url="$STANDIN_URL"
if [ -z "$url" ]; then
  pidof httpd >/dev/null
  exit $?
fi
timeout -s KILL 8 busybox wget -q -O /dev/null "$url"
"""


def _probe_url(tests: list[str]) -> tuple[int, str] | None:
    for word in tests:
        match = URL.search(word)
        if match:
            return int(match.group(1)), match.group(2) or "/"
    return None


def _app_port(inputs: dict) -> tuple[int, str, str]:
    """The port the app listens on, the path the health check asks for, and the probe URL ("" = process)."""
    tests = list((inputs.get("healthcheck") or {}).get("tests", []))
    found = _probe_url(tests)
    if found:
        port, path = found
        return port, path, f"http://127.0.0.1:{port}{path}"
    if len(tests) > 1 and tests[1] == "traefik":  # `traefik healthcheck --ping` asks the ping entrypoint
        addresses = [t.split("=:", 1)[1] for t in tests if t.startswith("--entrypoints.") and "=:" in t]
        port = int(addresses[-1]) if addresses else DEFAULT_PORT
        return port, "/ping", f"http://127.0.0.1:{port}/ping"
    return DEFAULT_PORT, "/", ""


def _health_binaries(tests: list[str]) -> list[str]:
    if not tests or tests[0] == "NONE":
        return []
    if tests[0] == "CMD-SHELL":
        return [w for w in re.findall(r"[A-Za-z_][\w.-]*", tests[1])[:1]]
    return [tests[1]] if len(tests) > 1 else []


def container_facts(inputs: dict) -> dict:
    """A Swarm service's container spec in a container's input names (what `build` reads)."""
    if "taskSpec" not in inputs:
        return inputs
    spec = inputs["taskSpec"]["containerSpec"]
    return {"name": inputs["name"], "healthcheck": spec.get("healthcheck"), "mounts": spec.get("mounts", [])}


def _image_facts(name: str):
    """The catalog's facts about the image a service runs (components/image_facts.py), if it is a catalog service."""
    from components.catalog import CATALOG

    service = CATALOG.get(name)
    return service.facts if service is not None else None


def build_all(engine: dockerd.Engine, plan: PlanResult) -> dict[str, str]:
    """Builds one stand-in per image the plan's containers run (skipping those present); image -> service."""
    built: dict[str, str] = {}
    for resource in plan.resources:
        if resource.type not in (CONTAINER, SERVICE):
            continue
        reference = container_image(plan, resource)
        if reference in built:
            continue
        built[reference] = resource.inputs["name"]
        if any(reference in (image.tags or []) for image in engine.client.images.list()):
            continue
        build(engine, reference, container_facts(resource.inputs))
    return built


def build(engine: dockerd.Engine, reference: str, inputs: dict) -> None:
    port, path, url = _app_port(inputs)
    tests = list((inputs.get("healthcheck") or {}).get("tests", []))
    writable = sorted(
        m["target"] for m in inputs.get("mounts", []) if m["type"] == "bind" and not m.get("readOnly", False)
    )
    with tempfile.TemporaryDirectory(prefix="standin") as scratch:
        root = dockerd.busybox_rootfs(
            Path(scratch), (*dockerd.APPLETS, "pidof", "chown", "echo", "find", "cut", "grep")
        )
        dockerd.copy_program(root, "/usr/bin/setpriv")  # util-linux's: busybox's cannot change the user
        (root / "bin" / "busybox").chmod(0o755)
        standin = root / "standin"
        www = standin / "www"
        page = www / (path.split("?")[0].lstrip("/") or "index.html")
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text("ok\n")
        (standin / "entrypoint").write_text(ENTRYPOINT)
        (standin / "entrypoint").chmod(0o755)
        for directory in ("usr/bin", "usr/local/bin"):
            (root / directory).mkdir(parents=True, exist_ok=True)
        for binary in _health_binaries(tests):
            shim = root / "usr" / "local" / "bin" / Path(binary).name
            shim.write_text(PROBE)
            shim.chmod(0o755)
        process = re.search(r"([A-Za-z_][\w.-]*) /proc/\[0-9\]\*/comm", " ".join(tests))
        if process:
            named = standin / process.group(1)
            named.write_text("#!/bin/sh\nsleep 2\nwhile pidof httpd >/dev/null; do sleep 2; done\n")
            named.chmod(0o755)
        (root / "config").mkdir(exist_ok=True)
        (root / "etc" / "passwd").write_text(
            "root:x:0:0:root:/root:/bin/sh\nabc:x:911:911::/config:/bin/false\nnobody:x:65534:65534:nobody:/:/bin/false\n"
        )
        facts = _image_facts(inputs.get("name", ""))
        user = []
        if facts is not None and facts.starts_as_root and facts.user.split(":")[0] not in ("0", "root"):
            user = [f"ENV STANDIN_DROP_TO={facts.user}", f"ENV STANDIN_CHOWN={shlex.quote(' '.join(facts.writes))}"]
        elif facts is not None and not facts.starts_as_root and facts.user.split(":")[0].isdigit():
            user = [f"USER {facts.user}"]  # the image's own USER (the container's `user` overrides it)
        changes = (
            *user,
            'ENTRYPOINT ["/standin/entrypoint"]',
            "ENV PATH=/usr/local/bin:/usr/bin:/bin",
            f"ENV STANDIN_PORT={port}",
            f"ENV STANDIN_URL={url}",
            f"ENV STANDIN_WRITABLE={shlex.quote(' '.join(writable))}" if writable else "ENV STANDIN_WRITABLE=",
            f"LABEL org.mediastack.standin={reference}",
            f"ENV STANDIN_PROCESS={process.group(1)}" if process else "ENV STANDIN_PROCESS=",
        )
        dockerd.import_rootfs(engine, root, reference, changes)
