"""Applies a plan to a real Docker engine the way pulumi-docker does.

pulumi-docker 4.x/5.x bridges kreuzwerker/terraform-provider-docker; every call below follows that provider's
create functions (internal/provider/resource_docker_container_funcs.go `resourceDockerContainerCreate`,
resource_docker_network_funcs.go `resourceDockerNetworkCreate`, resource_docker_image_funcs.go `findImage`), in
their order: image found locally (a pull only when it is missing: no registry here, so a missing image fails),
container created with its whole config, the default bridge disconnected and each `networks_advanced` entry
connected, every `upload` copied as a one-file tar archive into "/", started, and with `wait` polled until
healthy for `wait_timeout` seconds. docs/verification.md lists the mapping and what it leaves out.

Resources run in the order the plan's recorded dependencies allow (a component's dependency stands for all
the resources under it), never in registration order. The plan comes from the program under Pulumi's mocks
(mediastack_cli.offline) with its secrets revealed: an engine needs the real values.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import io
import json
import os
import re
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import docker.types

from mediastack_cli import offline
from mediastack_cli.offline import PlanResult, Registration, StackFiles, run_program

CONTAINER = "docker:index/container:Container"
NETWORK = "docker:index/network:Network"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
BUILT_IMAGE = "docker:index/image:Image"
LOCAL_COMMAND = "command:local:Command"
WAIT_TIMEOUT_DEFAULT_S = 60  # the provider's default `wait_timeout`


def unsealed_plan(files: StackFiles) -> PlanResult:
    """The program's plan with secret values revealed (the offline plan shows them as "[secret]")."""
    masked = offline._mask

    def reveal(value: Any) -> Any:
        if isinstance(value, dict) and value.get(offline.SECRET_SIG) == offline.SECRET_VALUE:
            return reveal(value.get("value"))
        return masked(value) if not isinstance(value, dict | list) else _walk(value, reveal)

    offline._mask = reveal  # type: ignore[assignment]
    try:
        return run_program(files)
    finally:
        offline._mask = masked  # type: ignore[assignment]


def _walk(value: Any, leaf: Callable[[Any], Any]) -> Any:
    if isinstance(value, dict):
        return {k: leaf(v) for k, v in value.items()}
    return [leaf(v) for v in value]


def _needs(plan: PlanResult) -> dict[str, set[str]]:
    """Custom resource URN -> the custom resources it waits for (a dependency on a component stands for every
    custom resource under it, as Pulumi waits for a component's children)."""
    by_urn = {r.urn: r for r in plan.resources}
    children: dict[str, list[str]] = {}
    for r in plan.resources:
        children.setdefault(r.parent, []).append(r.urn)

    def customs_under(urn: str) -> set[str]:
        found = {urn} if by_urn.get(urn) and by_urn[urn].custom else set()
        for child in children.get(urn, []):
            found |= customs_under(child)
        return found

    return {
        r.urn: set().union(*(customs_under(d) for d in r.dependencies)) - {r.urn} if r.dependencies else set()
        for r in plan.resources
        if r.custom
    }


def dependency_order(plan: PlanResult) -> list[Registration]:
    """Custom resources in an order their recorded dependencies allow (a component stands for its subtree)."""
    needs = _needs(plan)
    done: list[Registration] = []
    placed: set[str] = set()
    pending = [r for r in plan.resources if r.custom]
    while pending:
        ready = [r for r in pending if needs[r.urn] <= placed]
        if not ready:
            raise RuntimeError(f"dependency cycle among {[r.name for r in pending]}")
        # Reverse registration order among the ready ones: nothing may lean on registration order.
        for r in reversed(ready):
            done.append(r)
            placed.add(r.urn)
        pending = [r for r in pending if r.urn not in placed]
    return done


def run_concurrently(
    plan: PlanResult,
    step: Callable[[Registration], bool],
    skipped: Callable[[Registration, set[str]], None] = lambda resource, failed: None,
    parallel: int = 64,
) -> set[str]:
    """Runs `step` for every custom resource as `pulumi up` schedules its operations: concurrently (the CLI's
    `--parallel` defaults to unbounded), each one as soon as every resource it depends on is done. A step
    returning False failed: what depends on it is not attempted (returned, with the failed ones)."""
    needs = _needs(plan)
    pending = dependency_order(plan)
    done: set[str] = set()
    failed: set[str] = set()
    running: dict[concurrent.futures.Future[bool], Registration] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=parallel) as pool:
        while pending or running:
            for resource in [r for r in pending if needs[r.urn] <= done]:
                pending.remove(resource)
                if needs[resource.urn] & failed:
                    skipped(resource, needs[resource.urn] & failed)
                    failed.add(resource.urn)
                    done.add(resource.urn)
                else:
                    running[pool.submit(step, resource)] = resource
            if not running:
                continue
            finished, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in finished:
                resource = running.pop(future)
                if not future.result():
                    failed.add(resource.urn)
                done.add(resource.urn)
    return failed


@dataclass
class Applied:
    """What an apply did, in order: (verb, resource name, detail)."""

    calls: list[tuple[str, str, str]] = field(default_factory=list)
    # A Pulumi-like state: URN -> (inputs, engine id); a second apply diffs against it.
    state: dict[str, tuple[dict[str, Any], str]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def record(self, verb: str, name: str, detail: str = "") -> None:
        self.calls.append((verb, name, detail))


@dataclass
class Target:
    """Where the plan lands: the engine, a sandbox standing for the host's root filesystem (bind sources are
    taken under it), and the engine's socket standing for /var/run/docker.sock."""

    client: docker.DockerClient
    host_root: Path
    docker_socket: Path
    run_commands: tuple[str, ...] = ()  # name suffixes of command:local:Command resources to run (with ROOT)
    lowered: dict[str, str] = field(default_factory=dict)  # CPU limits above this machine's, lowered
    # A Swarm node smaller than the host it stands for: reservations scaled by node/host capacity (<= 1).
    reservation_scale: float = 1.0
    # Swarm nodes that are containers of their own: a bind source as the node sees it (replaces host_path).
    bind_source: Callable[[str], str] | None = None


def host_path(target: Target, source: str) -> str:
    """A bind source: the engine's socket for Docker's; under the sandbox root where the host steps made it
    (or it is not a system path); the machine's own system path (/sys, /proc, /dev/…) otherwise."""
    if target.bind_source is not None:
        return target.bind_source(source)
    if source in ("/var/run/docker.sock", "/run/docker.sock"):
        return str(target.docker_socket)
    sandboxed = str(target.host_root) + source
    if Path(sandboxed).exists():
        return sandboxed
    if not Path(source).exists():
        # A path every Docker host has (/var/lib/docker/image for cAdvisor) that this machine lacks: the sandboxed
        # host has it, empty (a bind mount of a missing source is refused).
        Path(sandboxed).mkdir(parents=True, exist_ok=True)
        return sandboxed
    return source


def cpu_limit(target: Target, name: str, nano_cpus: int) -> int:
    """The engine refuses a CPU limit above the machine's CPU count ("Range of CPUs is from 0.01 to N"):
    on a machine smaller than the configured host the limit is lowered to the machine's, and recorded."""
    ceiling = int((os.cpu_count() or 1) * 1e9)
    if nano_cpus > ceiling:
        target.lowered[name] = f"{nano_cpus / 1e9:g} -> {ceiling / 1e9:g} CPUs"
        return ceiling
    return nano_cpus


def host_devices(target: Target, name: str, devices: list[dict]) -> list[str] | None:
    """The engine refuses a device the machine lacks ("error gathering device information while adding custom
    device"): a GPU device (/dev/dri) this machine has not is left out, and recorded, as a lowered CPU limit is."""
    found = []
    for d in devices:
        if not Path(d["hostPath"]).exists():
            target.lowered[f"{name} {d['hostPath']}"] = "device absent on this machine, left out"
            continue
        found.append(f"{d['hostPath']}:{d.get('containerPath', d['hostPath'])}:{d.get('permissions', 'rwm')}")
    return found or None


def _images(plan: PlanResult) -> dict[str, str]:
    """URN of an image resource -> the local reference it resolves to (name:tag)."""
    refs = {}
    for r in plan.resources:
        if r.type == REMOTE_IMAGE:
            refs[r.urn] = r.inputs["name"]
        elif r.type == BUILT_IMAGE:
            refs[r.urn] = r.inputs["imageName"]
    return refs


def container_image(plan: PlanResult, container: Registration) -> str:
    """The image a container runs. The program passes the RemoteImage's `repo_digest`; an image that exists
    only locally has no repo digest (the provider's `determineRepoDigest` returns ""), so the reference is
    taken from the image resource the container depends on: the same name:tag the stand-in carries."""
    refs = _images(plan)
    spec = container.inputs.get("taskSpec", {}).get("containerSpec", {})
    wanted = str(container.inputs.get("image") or spec.get("image", ""))
    repository = _repository(wanted)
    for dependency in container.dependencies:
        if dependency in refs and _repository(refs[dependency]) == repository:
            return refs[dependency]
    return wanted


def _repository(reference: str) -> str:
    """`repo` of `repo:tag`, `repo@sha256:…` or `repo:tag@sha256:…`."""
    name = reference.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return name.rsplit(":", 1)[0] if ":" in last else name


def _duration_ns(text: str | None) -> int:
    if not text:
        return 0
    units = {"ns": 1, "us": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
    total = 0
    for number, unit in re.findall(r"([0-9.]+)(ns|us|ms|s|m|h)", text):
        total += int(float(number) * units[unit])
    return total


def _cpus_to_nano(text: str) -> int:
    return round(float(text) * 1e9)


def create_kwargs(plan: PlanResult, container: Registration, target: Target) -> dict[str, Any]:
    """`resourceDockerContainerCreate`'s container.Config and HostConfig, as the docker SDK's create arguments."""
    i = container.inputs
    mounts = []
    for m in i.get("mounts", []):
        if m["type"] == "tmpfs":
            options = m.get("tmpfsOptions", {})
            mounts.append(
                docker.types.Mount(
                    m["target"],
                    None,
                    type="tmpfs",
                    read_only=bool(m.get("readOnly", False)),
                    tmpfs_size=options.get("sizeBytes"),
                    tmpfs_mode=options.get("mode"),
                )
            )
        else:
            mounts.append(
                docker.types.Mount(
                    m["target"],
                    host_path(target, m["source"]) if m["type"] == "bind" else m["source"],
                    type=m["type"],
                    read_only=bool(m.get("readOnly", False)),
                )
            )
    health = i.get("healthcheck")
    capabilities = i.get("capabilities") or {}
    ports = {f"{p['internal']}/{p.get('protocol', 'tcp')}": p.get("external") for p in i.get("ports", [])}
    kwargs: dict[str, Any] = dict(
        image=container_image(plan, container),
        name=i["name"],
        hostname=i.get("hostname"),
        command=i.get("command"),
        entrypoint=i.get("entrypoints"),
        environment=i.get("envs"),
        user=i.get("user"),
        labels={label["label"]: label["value"] for label in i.get("labels", [])},
        healthcheck={
            "test": health["tests"],
            "interval": _duration_ns(health.get("interval")),
            "timeout": _duration_ns(health.get("timeout")),
            "start_period": _duration_ns(health.get("startPeriod")),
            "retries": int(health.get("retries", 0)),
        }
        if health
        else None,
        ports=ports or None,
        mounts=mounts,
        restart_policy={"Name": i.get("restart", "no"), "MaximumRetryCount": int(i.get("maxRetryCount", 0))},
        read_only=bool(i.get("readOnly", False)),
        log_config=docker.types.LogConfig(type=i.get("logDriver", ""), config=i.get("logOpts") or {}),
        cap_add=capabilities.get("adds"),
        cap_drop=capabilities.get("drops"),
        devices=host_devices(target, i["name"], i.get("devices", [])),
        security_opt=i.get("securityOpts"),
        mem_limit=int(i["memory"]) * 1024 * 1024 if i.get("memory") else None,
        mem_reservation=int(i["memoryReservation"]) * 1024 * 1024 if i.get("memoryReservation") else None,
        memswap_limit=(int(i["memorySwap"]) * 1024 * 1024 if int(i["memorySwap"]) > 0 else int(i["memorySwap"]))
        if i.get("memorySwap")
        else None,
        nano_cpus=cpu_limit(target, container.name, _cpus_to_nano(i["cpus"])) if i.get("cpus") else None,
        cpu_shares=int(i["cpuShares"]) if i.get("cpuShares") else None,
        network_mode=i.get("networkMode", "bridge"),  # the provider's default
        group_add=i.get("groupAdds"),
        extra_hosts=[f"{h['host']}:{h['ip']}" for h in i.get("hosts") or []] or None,
        init=bool(i.get("init", False)),
        sysctls=i.get("sysctls"),
        stop_signal=i.get("stopSignal"),
        working_dir=i.get("workingDir"),
    )
    if i.get("deviceRequests"):
        kwargs["device_requests"] = [
            docker.types.DeviceRequest(
                driver=r.get("driver", ""), count=int(r.get("count", 0)), capabilities=[r.get("capabilities", [])]
            )
            for r in i["deviceRequests"]
        ]
    return {k: v for k, v in kwargs.items() if v is not None}


def upload_archive(file: str, content: str, executable: bool = False, permissions: str = "") -> bytes:
    """The provider's one-file tar: the path as given (relative to "/"), mode 0644 or 0744 or `permissions`."""
    data = content.encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(file)
        info.size = len(data)
        info.mode = int(permissions, 8) if permissions else (0o744 if executable else 0o644)
        info.mtime = int(time.time())
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _connect(client: docker.DockerClient, network: str, container_id: str, endpoint: dict[str, Any]) -> None:
    """NetworkConnect with the provider's EndpointSettings (aliases, IPAM config, and GwPriority, which the
    SDK does not know: sent as it is; Docker before API 1.48 ignores it)."""
    api = client.api
    body = {"Container": container_id, "EndpointConfig": endpoint}
    response = api._post_json(api._url("/networks/{0}/connect", network), data=body)  # type: ignore[attr-defined]
    api._raise_for_status(response)  # type: ignore[attr-defined]


def create_container(plan: PlanResult, container: Registration, target: Target, applied: Applied) -> str:
    client = target.client
    i = container.inputs
    image = container_image(plan, container)
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound as error:
        raise RuntimeError(f"Unable to create container with image {image}: no local image and no registry") from error
    kwargs = create_kwargs(plan, container, target)
    created = client.api.create_container(
        image=kwargs.pop("image"),
        name=kwargs.pop("name"),
        hostname=kwargs.pop("hostname", None),
        command=kwargs.pop("command", None),
        entrypoint=kwargs.pop("entrypoint", None),
        environment=kwargs.pop("environment", None),
        user=kwargs.pop("user", None),
        labels=kwargs.pop("labels", None),
        healthcheck=kwargs.pop("healthcheck", None),
        ports=[tuple(p.split("/")) for p in kwargs.get("ports", {})] or None,
        stop_signal=kwargs.pop("stop_signal", None),
        working_dir=kwargs.pop("working_dir", None),
        host_config=client.api.create_host_config(
            **{k: v for k, v in kwargs.items() if k != "ports"},
            port_bindings=kwargs.get("ports"),
        ),
    )
    cid = created["Id"]
    applied.record("create", container.name, image)
    if i.get("networksAdvanced"):
        with contextlib.suppress(docker.errors.APIError):  # "is not connected to the network bridge"
            client.api.disconnect_container_from_network(cid, "bridge")
        for net in i["networksAdvanced"]:
            endpoint: dict[str, Any] = {"Aliases": net.get("aliases"), "IPAMConfig": {}}
            if net.get("ipv4Address"):
                endpoint["IPAMConfig"]["IPv4Address"] = net["ipv4Address"]
            if net.get("gwPriority") is not None:
                endpoint["GwPriority"] = int(net["gwPriority"])
            _connect(client, net["name"], cid, endpoint)
            applied.record("connect", container.name, net["name"])
    for upload in i.get("uploads", []):
        archive = upload_archive(
            upload["file"], upload.get("content", ""), bool(upload.get("executable")), upload.get("permissions", "")
        )
        try:
            client.api.put_archive(cid, "/", archive)
        except docker.errors.APIError as error:
            raise RuntimeError(f"Unable to upload volume content: {error.explanation or error}") from error
        applied.record("upload", container.name, upload["file"])
    if i.get("start", True):
        try:
            client.api.start(cid)
        except docker.errors.APIError as error:
            raise RuntimeError(f"Unable to start container: {error.explanation or error}") from error
        applied.record("start", container.name)
        if i.get("wait"):
            wait_healthy(client, cid, int(i.get("waitTimeout", WAIT_TIMEOUT_DEFAULT_S)))
            applied.record("healthy", container.name)
    return cid


def wait_healthy(client: docker.DockerClient, cid: str, timeout_s: float) -> None:
    """The provider's `wait`: inspect every second until healthy, or fail after `wait_timeout`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = client.api.inspect_container(cid)["State"]
        if not state.get("Health"):
            raise RuntimeError(
                "you have supplied a 'wait' argument, but the container does not have a healthcheck defined"
            )
        if state["Health"]["Status"] == "healthy":
            return
        time.sleep(1)
    raise RuntimeError("container failed to be in healthy state")


def create_network(network: Registration, client: docker.DockerClient, applied: Applied) -> str:
    """`resourceDockerNetworkCreate`: labels, driver, options, internal, attachable, ipam."""
    i = network.inputs
    ipam = None
    if i.get("ipamConfigs"):
        ipam = docker.types.IPAMConfig(
            driver=i.get("ipamDriver", "default"),
            pool_configs=[
                docker.types.IPAMPool(subnet=c.get("subnet"), gateway=c.get("gateway"), iprange=c.get("ipRange"))
                for c in i["ipamConfigs"]
            ],
        )
    created = client.networks.create(
        i["name"],
        driver=i.get("driver"),
        options=i.get("options"),
        internal=bool(i.get("internal", False)),
        attachable=bool(i.get("attachable", False)),
        ingress=bool(i.get("ingress", False)),
        labels={label["label"]: label["value"] for label in i.get("labels", [])},
        ipam=ipam,
        enable_ipv6=bool(i.get("ipv6", False)),
    )
    applied.record("network", network.name, i["name"])
    return str(created.id)


def engine_informed_plan(files: StackFiles, client: docker.DockerClient, applied: Applied) -> PlanResult:
    """The plan as `pulumi up` computes it where the program reads a network's outputs: the networks are created
    first (recorded in `applied`, so `apply` leaves them), then the program runs again with each network's
    `ipam_configs` (subnet, gateway) as the engine made them instead of the mocks' empty ones. The program passes a
    bridge's gateway to host-network services (their listen address) and to /etc/hosts entries; a plan under
    mocks alone has none."""
    first = unsealed_plan(files)
    for network in first.resources:
        if network.type == NETWORK and network.urn not in applied.state:
            ident = create_network(network, client, applied)
            applied.state[network.urn] = (network.inputs, ident)
    made = {
        n.attrs["Name"]: [
            {"subnet": c.get("Subnet", ""), "gateway": c.get("Gateway", "")} for c in n.attrs["IPAM"]["Config"] or []
        ]
        for n in client.networks.list()
    }
    mocked = offline.StackMocks.new_resource

    def new_resource(self: offline.StackMocks, args: Any) -> tuple[str, dict[str, Any]]:
        ident, state = mocked(self, args)
        if args.typ == NETWORK and state.get("name") in made:
            state["ipamConfigs"] = made[state["name"]]
        return ident, state

    offline.StackMocks.new_resource = new_resource  # type: ignore[method-assign]
    try:
        return unsealed_plan(files)
    finally:
        offline.StackMocks.new_resource = mocked  # type: ignore[method-assign]


def run_command(command: Registration, target: Target, applied: Applied) -> str:
    """A command:local:Command's `create` as pulumi-command runs it: its interpreter, its environment (plus
    ROOT, the sandbox standing for the host's /), its stdin."""
    i = command.inputs
    env = {**os.environ, **(i.get("environment") or {}), "ROOT": str(target.host_root)}
    done = subprocess.run(
        [*i.get("interpreter", ["/bin/sh", "-c"]), i["create"]],
        input=(i.get("stdin") or "").encode(),
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{command.name}: exit {done.returncode}: {done.stderr.decode()[-1000:]}")
    applied.record("command", command.name)
    return done.stdout.decode()


def engine_inputs(resource: Registration, ids: dict[str, str]) -> dict[str, Any]:
    """The inputs as `pulumi up` sends them: where the plan quotes another resource's id (a client's network_mode
    `container:<the VPN container's id>`), the id the engine gave that resource. So a replaced VPN container (a
    new engine id) changes its clients' inputs, which replaces them, as network_mode is ForceNew."""
    mode = resource.inputs.get("networkMode")
    if isinstance(mode, str) and mode.startswith("container:") and mode[len("container:") :] in ids:
        return {**resource.inputs, "networkMode": "container:" + ids[mode[len("container:") :]]}
    return resource.inputs


def apply(plan: PlanResult, target: Target, applied: Applied | None = None) -> Applied:
    """Creates what the plan holds and is not in `applied.state` yet with the same inputs (a Pulumi `up`).

    A resource whose inputs changed would be replaced (delete, then create: the program sets
    delete_before_replace on containers); one whose creation fails is recorded in `errors` with the engine's
    message, and what depends on it is not attempted, as `pulumi up` does. Inputs are compared as the engine
    received them (`engine_inputs`)."""
    applied = applied or Applied()
    # The plan's ids (the mocks') -> the engine's, for what an earlier apply made.
    ids = {r.id: applied.state[r.urn][1] for r in plan.resources if r.id and r.urn in applied.state}

    def step(resource: Registration) -> bool:
        if resource.type not in (CONTAINER, NETWORK, REMOTE_IMAGE, BUILT_IMAGE, LOCAL_COMMAND, REMOTE_COMMAND):
            return True
        # Host steps named by the target run here with ROOT (tests/test_engine_ssh.py runs them over SSH).
        is_command = resource.type in (LOCAL_COMMAND, REMOTE_COMMAND)
        if is_command and not resource.name.endswith(target.run_commands or ("\0",)):
            return True
        inputs = engine_inputs(resource, ids)
        previous = applied.state.get(resource.urn)
        if previous and previous[0] == inputs:
            return True
        try:
            if previous and resource.type == CONTAINER:
                target.client.api.remove_container(previous[1], force=True)
                applied.record("delete", resource.name)
            if resource.type == CONTAINER:
                ident = create_container(plan, dataclasses.replace(resource, inputs=inputs), target, applied)
            elif resource.type == NETWORK:
                ident = create_network(resource, target.client, applied)
            elif is_command:
                ident = run_command(resource, target, applied)
            else:
                reference = _images(plan)[resource.urn]
                try:
                    ident = str(target.client.images.get(reference).id)
                except docker.errors.ImageNotFound:
                    raise RuntimeError(f"Unable to read Docker image into resource: {reference} not found") from None
                applied.record("image", resource.name, reference)
        except (RuntimeError, docker.errors.APIError) as error:
            applied.errors[resource.name] = str(error)
            return False
        applied.state[resource.urn] = (inputs, ident)
        if resource.id:
            ids[resource.id] = ident
        return True

    run_concurrently(plan, step)
    return applied


def destroy(applied: Applied, client: docker.DockerClient) -> None:
    """Removes the containers and networks an apply created (containers first)."""
    for kind in ("container", "network"):
        for _urn, (inputs, ident) in list(applied.state.items()):
            is_container = "networksAdvanced" in inputs or "healthcheck" in inputs or "restart" in inputs
            if kind == "container" and is_container:
                with contextlib.suppress(docker.errors.NotFound):
                    client.api.remove_container(ident, force=True)
            elif kind == "network" and "driver" in inputs and not is_container:
                with contextlib.suppress(docker.errors.NotFound):
                    client.api.remove_network(ident)


@contextlib.contextmanager
def applied_stack(plan: PlanResult, target: Target) -> Iterator[Applied]:
    applied = apply(plan, target)
    try:
        yield applied
    finally:
        destroy(applied, target.client)


# --- Swarm: resource_docker_service_funcs.go `resourceDockerServiceCreate` (createServiceSpec, then
# ServiceCreate), resource_docker_config_funcs.go and resource_docker_secret_funcs.go (ConfigCreate and
# SecretCreate with the data base64-decoded / as given).
SERVICE = "docker:index/service:Service"
SERVICE_CONFIG = "docker:index/serviceConfig:ServiceConfig"
SECRET = "docker:index/secret:Secret"
REMOTE_COMMAND = "command:remote:Command"


def _mock_id(resource: Registration) -> str:
    """The id the offline plan's mocks gave a resource (`<name>-<8 hex>`), which other inputs quote."""
    return f"{resource.name}-{offline._digest(f'{resource.type}/{resource.name}')[:8]}"


def _health(health: dict[str, Any] | None) -> dict[str, Any] | None:
    if not health:
        return None
    return {
        "Test": health["tests"],
        "Interval": _duration_ns(health.get("interval")),
        "Timeout": _duration_ns(health.get("timeout")),
        "StartPeriod": _duration_ns(health.get("startPeriod")),
        "Retries": int(health.get("retries", 0)),
    }


def _update(config: dict[str, Any] | None) -> dict[str, Any] | None:
    if not config:
        return None
    return {
        "Parallelism": int(config.get("parallelism", 1)),
        "Delay": _duration_ns(config.get("delay")),
        "FailureAction": config.get("failureAction", "pause"),
        "Monitor": _duration_ns(config.get("monitor")),
        "MaxFailureRatio": float(config.get("maxFailureRatio", 0)),
        "Order": config.get("order", "stop-first"),
    }


def service_spec(plan: PlanResult, service: Registration, target: Target, ids: dict[str, str]) -> dict[str, Any]:
    """`createServiceSpec` for the inputs the program uses; `ids` maps the plan's ids to the engine's."""
    i = service.inputs
    task = i["taskSpec"]
    c = task["containerSpec"]
    mounts = []
    for m in c.get("mounts", []):
        mount: dict[str, Any] = {"Target": m["target"], "Type": m["type"], "ReadOnly": bool(m.get("readOnly"))}
        if m["type"] == "bind":
            mount["Source"] = host_path(target, m["source"])
        elif m.get("source"):
            mount["Source"] = m["source"]
        if m.get("tmpfsOptions"):
            mount["TmpfsOptions"] = {
                "SizeBytes": m["tmpfsOptions"].get("sizeBytes"),
                "Mode": m["tmpfsOptions"].get("mode"),
            }
        mounts.append(mount)
    container: dict[str, Any] = {
        "Image": container_image(plan, service),
        "Labels": {label["label"]: label["value"] for label in c.get("labels", [])},
        "Command": c.get("commands"),
        "Args": c.get("args"),
        "Hostname": c.get("hostname"),
        "Env": [f"{k}={v}" for k, v in sorted((c.get("env") or {}).items())],
        "User": c.get("user"),
        "Groups": c.get("groups"),
        "ReadOnly": bool(c.get("readOnly")),
        "Init": c.get("init"),
        "Mounts": mounts,
        "StopGracePeriod": _duration_ns(c.get("stopGracePeriod")),
        "Healthcheck": _health(c.get("healthcheck")),
        "CapabilityAdd": c.get("capAdds"),
        "CapabilityDrop": c.get("capDrops"),
        "Sysctls": c.get("sysctl"),
        "Configs": [
            {
                "ConfigID": ids[ref["configId"]],
                "ConfigName": ref.get("configName"),
                "File": {
                    "Name": ref["fileName"],
                    "UID": ref.get("fileUid", "0"),
                    "GID": ref.get("fileGid", "0"),
                    "Mode": int(ref.get("fileMode", 0o444)),
                },
            }
            for ref in c.get("configs", [])
        ],
        "Secrets": [
            {
                "SecretID": ids[ref["secretId"]],
                "SecretName": ref.get("secretName"),
                "File": {
                    "Name": ref["fileName"],
                    "UID": ref.get("fileUid", "0"),
                    "GID": ref.get("fileGid", "0"),
                    "Mode": int(ref.get("fileMode", 0o444)),
                },
            }
            for ref in c.get("secrets", [])
        ],
    }
    resources = task.get("resources") or {}
    limits = resources.get("limits") or {}
    reservation = resources.get("reservation") or {}
    restart = task.get("restartPolicy") or {}
    placement = task.get("placement") or {}
    log = task.get("logDriver") or {}
    spec: dict[str, Any] = {
        "Name": i["name"],
        "Labels": {label["label"]: label["value"] for label in i.get("labels", [])},
        "TaskTemplate": {
            "ContainerSpec": {k: v for k, v in container.items() if v not in (None, [])},
            "Resources": {
                "Limits": {
                    "NanoCPUs": cpu_limit(target, service.name, int(limits.get("nanoCpus", 0))),
                    "MemoryBytes": int(limits.get("memoryBytes", 0)),
                },
                "Reservations": {
                    "NanoCPUs": int(int(reservation.get("nanoCpus", 0)) * target.reservation_scale),
                    "MemoryBytes": int(int(reservation.get("memoryBytes", 0)) * target.reservation_scale),
                },
            },
            "RestartPolicy": {
                "Condition": restart.get("condition", "any"),
                "Delay": _duration_ns(restart.get("delay")),
                "Window": _duration_ns(restart.get("window")),
                **({"MaxAttempts": int(restart["maxAttempts"])} if "maxAttempts" in restart else {}),
            },
            "Placement": {
                "Constraints": placement.get("constraints", []),
                "Preferences": [{"Spread": {"SpreadDescriptor": p["spread"]}} for p in placement.get("prefs", [])],
                **({"MaxReplicas": int(placement["maxReplicas"])} if "maxReplicas" in placement else {}),
            },
            "Networks": [
                {"Target": ids.get(n["id"], n["id"]), "Aliases": n.get("aliases", [])}
                for n in task.get("networksAdvanceds", [])
            ],
            "LogDriver": {"Name": log["name"], "Options": log.get("options", {})} if log else None,
        },
        "Mode": {"Global": {}}
        if (i.get("mode") or {}).get("global")
        else {"Replicated": {"Replicas": int(((i.get("mode") or {}).get("replicated") or {}).get("replicas", 1))}},
        "UpdateConfig": _update(i.get("updateConfig")),
        "RollbackConfig": _update(i.get("rollbackConfig")),
    }
    endpoint = i.get("endpointSpec")
    if endpoint:
        spec["EndpointSpec"] = {
            "Mode": endpoint.get("mode", "vip"),
            "Ports": [
                {
                    "Protocol": p.get("protocol", "tcp"),
                    "TargetPort": int(p["targetPort"]),
                    "PublishedPort": int(p.get("publishedPort", 0)),
                    "PublishMode": p.get("publishMode", "ingress"),
                }
                for p in endpoint.get("ports", [])
            ],
        }
    return spec


def apply_swarm(plan: PlanResult, target: Target, applied: Applied | None = None) -> Applied:
    """Networks, configs, secrets and services of a Swarm plan in dependency order (the swarm is already
    initialised; the host commands the target names run locally with ROOT)."""
    applied = applied or Applied()
    api = target.client.api
    ids: dict[str, str] = {}
    by_urn = {r.urn: r for r in plan.resources}

    def not_attempted(resource: Registration, failed: set[str]) -> None:
        blocked = sorted(by_urn[d].name for d in failed)  # as `pulumi up`: not attempted
        applied.errors[resource.name] = f"not attempted: depends on {', '.join(blocked)}, which failed"

    def step(resource: Registration) -> bool:
        try:
            if resource.type == NETWORK:
                ident = create_network(resource, target.client, applied)
                ids[resource.inputs["name"]] = ident
            elif resource.type == SERVICE_CONFIG:
                created = api.create_config(
                    resource.inputs["name"],
                    base64_decode(resource.inputs["data"]),
                    labels={label["label"]: label["value"] for label in resource.inputs.get("labels", [])},
                )
                ident = created["ID"]
                applied.record("config", resource.name)
            elif resource.type == SECRET:
                created = api.create_secret(resource.inputs["name"], resource.inputs["data"].encode())
                ident = created["ID"]
                applied.record("secret", resource.name)
            elif (
                resource.type in (LOCAL_COMMAND, REMOTE_COMMAND)
                and target.run_commands
                and resource.name.endswith(target.run_commands)
            ):
                ident = run_command(resource, target, applied)
            elif resource.type == SERVICE:
                spec = service_spec(plan, resource, target, ids)
                response = api._post_json(api._url("/services/create"), data=spec)  # type: ignore[attr-defined]
                ident = api._result(response, True)["ID"]  # type: ignore[attr-defined]
                applied.record("service", resource.name, resource.inputs["name"])
            else:
                return True
        except (RuntimeError, docker.errors.APIError) as error:
            applied.errors[resource.name] = str(getattr(error, "explanation", None) or error)
            return False
        ids[_mock_id(resource)] = ident
        applied.state[resource.urn] = (resource.inputs, ident)
        return True

    run_concurrently(plan, step, not_attempted)
    return applied


def base64_decode(data: str) -> bytes:
    import base64

    return base64.b64decode(data)


def cluster_node_facts(plan: Any) -> list[dict[str, Any]]:
    """Each cluster node as the program records it for the pack: the facts on its sysctl step (name, CPUs,
    memory, whether it manages, its node labels), in the hosts' order."""
    nodes = []
    for r in plan.resources:
        env = r.inputs.get("environment") or {}
        if r.name.endswith("-tuning-sysctl") and "MEDIASTACK_SWARM_NODE_LABELS" in env:
            nodes.append({
                "name": env["MEDIASTACK_HOST"],
                "cpus": float(env["MEDIASTACK_HOST_CPUS"]),
                "memory": int(env["MEDIASTACK_HOST_MEMORY"]),
                "manager": env["MEDIASTACK_SWARM_MANAGER"] == "true",
                "labels": json.loads(env["MEDIASTACK_SWARM_NODE_LABELS"]),
            })  # fmt: skip
    return nodes
