"""A UI the internet may reach opens to it only once its login exists: with the deploy-time wiring, on one host
and on a Swarm, Traefik's main routes file keeps every UI on the LAN, and a second file, written after the wiring
made the logins into the directory Traefik binds from its host, adds a public router for each public UI."""

from __future__ import annotations

import pytest
import yaml

from conftest import host_written_files, plan, plan_config, raw_config

PUBLIC = {"jellyfin-public", "immich-server-public", "seerr-public", "artwork-public"}


def _traefik_files(result) -> dict[str, dict]:
    return {
        path.rsplit("/", 1)[1]: yaml.safe_load(text)
        for path, text in host_written_files(result).items()
        if "/generated/traefik/" in path
    }


def _lan_only(http: dict, name: str) -> bool:
    chain = http["routers"][name].get("middlewares", [])
    return bool(chain) and "ipAllowList" in http["middlewares"][chain[0]]


def _priority(router: dict) -> int:
    return int(router.get("priority") or len(router["rule"]))


@pytest.mark.parametrize("stack", ["prod", "cluster", "cluster-nfs"])
def test_public_routes_open_only_after_the_logins_exist(stack: str) -> None:
    result = plan(stack)
    files = _traefik_files(result)
    main, public = files["mediastack.yml"]["http"], files["public.yml"]["http"]
    # Before the logins: nothing answers the internet.
    assert all(_lan_only(main, name) for name in main["routers"]), main["routers"].keys()
    # After: a public router for each public UI, without the allow-list, above its LAN twin.
    assert set(public["routers"]) == PUBLIC
    for name, router in public["routers"].items():
        assert not _lan_only(public, name), name
        twin = main["routers"][name.removesuffix("-public")]
        assert router["rule"] == twin["rule"] and _priority(router) > _priority(twin), name
        assert public["services"][router["service"]] == main["services"][twin["service"]], name
    # The file is written after the logins exist (the plan's recorded dependencies).
    (writer,) = [r for r in result.resources if r.name.endswith("-public-routes")]
    logins = {
        r.name: r.urn
        for r in result.resources
        if r.name in ("media-wiring-jellyfin-admin", "media-wiring-immich-admin", "media-wiring-seerr-admin")
    }
    assert len(logins) == 3 and set(logins.values()) <= set(writer.dependencies), writer.dependencies
    # Its delete takes the public routes away again.
    assert writer.inputs["delete"].startswith('rm -f "${ROOT:-}"') and "public.yml" in writer.inputs["delete"]
    # Traefik reads the file where the step writes it: its file provider's directory is bound from that host.
    (traefik,) = [r for r in result.resources if r.inputs.get("name") == "traefik" and "docker:" in r.type]
    spec = traefik.inputs.get("taskSpec", {}).get("containerSpec", {})
    mounts = traefik.inputs.get("mounts") or spec["mounts"]
    (source,) = [m["source"] for m in mounts if m["target"] == "/etc/traefik/dynamic"]
    (written,) = [p for p in host_written_files(result) if p.endswith("/public.yml")]
    assert written == f"{source}/public.yml", (written, source)
    command = traefik.inputs.get("command") or spec["args"]
    assert "--providers.file.directory=/etc/traefik/dynamic" in command and "--providers.file.watch=true" in command
    if "taskSpec" in traefik.inputs:
        # On a Swarm: the step runs on the host Traefik is pinned to.
        host = writer.name.removeprefix("media-").removesuffix("-public-routes")
        assert traefik.inputs["taskSpec"]["placement"]["constraints"] == [f"node.labels.mediastack.host == {host}"]


def test_without_the_wiring_public_routes_open_at_once() -> None:
    cfg = raw_config("prod")
    cfg["wiring"] = {**cfg.get("wiring", {}), "enabled": False}
    result = plan_config(cfg, "prod")
    files = _traefik_files(result)
    assert set(files) == {"mediastack.yml"}
    main = files["mediastack.yml"]["http"]
    assert not _lan_only(main, "jellyfin") and not _lan_only(main, "immich-server")
    assert _lan_only(main, "sonarr")
    assert not [r for r in result.resources if r.name.endswith("-public-routes")]


def test_nothing_public_means_no_second_file() -> None:
    cfg = raw_config("prod")
    cfg["exposure"] = {"public": []}
    result = plan_config(cfg, "prod")
    assert set(_traefik_files(result)) == {"mediastack.yml"}
