"""The pipeline wiring, run for real against loopback stand-ins that answer as the pinned apps do (tests/fake_apps.py)
and, for qBittorrent, against Debian's real qbittorrent-nox."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import dill
import pytest
from pulumi.dynamic.dynamic import serialize_provider

from conftest import ROOT, plan, plan_config, raw_config, require_tool
from fake_apps import (
    SETTINGS,
    FakeApp,
    FakeArr,
    FakeBazarr,
    FakeImmich,
    FakeJellyfin,
    FakeQbittorrent,
    FakeSabnzbd,
    FakeSeerr,
    serve,
    traefik,
)
from mediastack.catalog.services import CATALOG
from mediastack.generate.seeds import QBITTORRENT_CONF, QBITTORRENT_USER, qbittorrent_conf
from mediastack.model.config import StackConfig
from mediastack.plan.resolve import resolve
from mediastack.wiring.client import AppClient, Retry, WiringError
from mediastack.wiring.items import QbittorrentCategory
from mediastack.wiring.provider import SEERR_DEFAULTS, Item, WiringProvider, _companions, pipeline_items

FAST = {"attempts": 4, "first_delay_s": 0.01, "max_delay_s": 0.02, "timeout_s": 5}
PROFILES = {1: {"id": 1, "name": "Any"}, 2: {"id": 2, "name": "SD"}, 3: {"id": 3, "name": "HD-720p"}}
SECRETS = {
    "sonarr-api-key": "a" * 32,
    "radarr-api-key": "b" * 32,
    "prowlarr-api-key": "c" * 32,
    "bazarr-api-key": "d" * 32,
    "sabnzbd-api-key": "e" * 32,
    "qbittorrent-password": "qbt-password-1234567890",
    "sonarr-admin-password": "sonarr-login-pass",
    "radarr-admin-password": "radarr-login-pass",
    "prowlarr-admin-password": "prowlarr-login-pass",
    "sabnzbd-password": "sabnzbd-login-pass",
    "bazarr-password": "bazarr-login-pass",
    "jellyfin-admin-password": "jellyfin-login-pass",
    "immich-admin-password": "immich-login-pass",
    "seerr-api-key": "f" * 32,
}


@dataclass
class Apps:
    sonarr: FakeArr
    radarr: FakeArr
    prowlarr: FakeArr
    bazarr: FakeBazarr
    qbittorrent: FakeQbittorrent
    sabnzbd: FakeSabnzbd
    jellyfin: FakeJellyfin
    immich: FakeImmich
    seerr: FakeSeerr
    urls: dict[str, str]

    @property
    def all(self) -> dict[str, FakeApp]:
        return {k: v for k, v in vars(self).items() if isinstance(v, FakeApp)}

    def items(self, **config: Any) -> list[Item]:
        urls = {("immich-server" if k == "immich" else k): v for k, v in self.urls.items()}
        cfg = StackConfig.model_validate({**raw_config("prod"), "wiring": {"urls": urls, **config}})
        items = pipeline_items(cfg, resolve(cfg, "prod").enabled, SECRETS)
        for item in items:
            item.props["retry"] = FAST
        return items


@pytest.fixture
def apps() -> Iterator[Apps]:
    fakes: dict[str, FakeApp] = {
        "sonarr": FakeArr(name="sonarr", api_key=SECRETS["sonarr-api-key"]),
        "radarr": FakeArr(name="radarr", api_key=SECRETS["radarr-api-key"]),
        "prowlarr": FakeArr(name="prowlarr", api_key=SECRETS["prowlarr-api-key"], api="/api/v1"),
        "bazarr": FakeBazarr(api_key=SECRETS["bazarr-api-key"]),
        "qbittorrent": FakeQbittorrent(password=SECRETS["qbittorrent-password"]),
        "sabnzbd": FakeSabnzbd(api_key=SECRETS["sabnzbd-api-key"]),
        "jellyfin": FakeJellyfin(),
        "immich": FakeImmich(),
        "seerr": FakeSeerr(api_key=SECRETS["seerr-api-key"]),
    }
    # What Seerr reaches on the backend network, and what it reads there: the first profiles Sonarr and Radarr
    # make on their first start (QualityProfileService), Jellyfin's libraries.
    fakes["seerr"].reaches = {("jellyfin", 8096): fakes["jellyfin"], ("sonarr", 8989): fakes["sonarr"],
                              ("radarr", 7878): fakes["radarr"]}  # type: ignore[attr-defined]  # fmt: skip
    for arr in ("sonarr", "radarr"):
        fakes[arr].collections["qualityprofile"] = json.loads(json.dumps(PROFILES))  # type: ignore[attr-defined]
    fakes["jellyfin"].libraries = [{"key": "a1", "title": "Films", "type": "movie"},
                                   {"key": "b2", "title": "Series", "type": "show"}]  # type: ignore[attr-defined]  # fmt: skip
    with ExitStack() as stack:
        urls = {name: stack.enter_context(serve(app)) for name, app in fakes.items()}
        yield Apps(urls=urls, **fakes)  # type: ignore[arg-type]


def up(items: list[Item]) -> dict[str, dict[str, Any]]:
    """What `pulumi up` does on a new stack: create each item in order; returns the outputs by suffix."""
    provider = WiringProvider()
    return {item.suffix: provider.create(item.props).outs or {} for item in items}


def state(fake: FakeApp) -> str:
    """What an app holds, without the bookkeeping of requests and sessions."""
    kept = {
        k: v
        for k, v in vars(fake).items()
        if k not in ("requests", "sessions", "not_ready_for", "unrouted_for", "reaches")
    }
    return json.dumps(kept, sort_keys=True, default=str)


def field(item: dict[str, Any], name: str) -> Any:
    return next(f["value"] for f in item["fields"] if f["name"] == name)


def test_up_wires_the_whole_pipeline_in_one_data_tree(apps: Apps) -> None:
    up(apps.items())
    for arr, media, category_field in (("sonarr", "tv", "tvCategory"), ("radarr", "movies", "movieCategory")):
        fake: FakeArr = getattr(apps, arr)
        assert [f["path"] for f in fake.collections["rootfolder"].values()] == [f"/data/media/{media}"]
        clients = {c["name"]: c for c in fake.collections["downloadclient"].values()}
        assert set(clients) == {"qBittorrent", "SABnzbd"}
        qbt, sab = clients["qBittorrent"], clients["SABnzbd"]
        assert (field(qbt, "host"), field(qbt, "port"), field(qbt, category_field)) == ("qbittorrent", 8090, media)
        assert field(qbt, "username") == QBITTORRENT_USER and field(qbt, "password") == SECRETS["qbittorrent-password"]
        assert (field(sab, "host"), field(sab, "port"), field(sab, "apiKey")) == (
            "sabnzbd",
            8080,
            SECRETS["sabnzbd-api-key"],
        )
        # The clients' categories save into the same tree as the library: imports are hardlinks or atomic moves.
        assert apps.qbittorrent.categories[media]["savePath"] == f"/data/torrents/{media}"
        assert apps.sabnzbd.categories[media]["dir"] == media  # under SABnzbd's complete folder /data/usenet/complete
        application = apps.prowlarr.find("applications", "name", arr.capitalize())[0]
        assert field(application, "baseUrl") == f"http://{arr}:{8989 if arr == 'sonarr' else 7878}"
        assert field(application, "apiKey") == SECRETS[f"{arr}-api-key"]
        assert application["syncLevel"] == "fullSync"
        assert apps.bazarr.settings["general"][f"use_{arr}"] is True
        assert (
            apps.bazarr.settings[arr]["apikey"] == SECRETS[f"{arr}-api-key"] and apps.bazarr.settings[arr]["ip"] == arr
        )
    assert apps.sabnzbd.keys_in_url == 0  # SABnzbd's key travels in the body, never in a URL (L1, issue 16)


def test_a_second_up_changes_nothing(apps: Apps) -> None:
    items = apps.items()
    outs = up(items)
    provider = WiringProvider()
    # Same inputs: the engine asks diff, and nothing is to be done.
    for item in apps.items():
        old = {**outs[item.suffix], "retry": FAST}
        assert provider.diff("id", old, {**item.props, "item_id": None}).changes is False, item.suffix
    # Even a create over items the apps already have (state lost, or made by hand) adopts them: no duplicates.
    before = {n: json.dumps(getattr(apps, n).collections, sort_keys=True) for n in ("sonarr", "radarr", "prowlarr")}
    again = up(items)
    assert {k: v["item_id"] for k, v in again.items()} == {k: v["item_id"] for k, v in outs.items()}
    assert {n: json.dumps(getattr(apps, n).collections, sort_keys=True) for n in before} == before
    assert len(apps.qbittorrent.categories) == 2 and len(apps.sabnzbd.categories) == 3  # with SABnzbd's "*"


def test_update_changes_the_item_in_place_and_delete_removes_it(apps: Apps) -> None:
    items = {i.suffix: i for i in apps.items()}
    outs = up(list(items.values()))
    provider = WiringProvider()
    client = items["sonarr-qbittorrent"]
    changed = json.loads(json.dumps(client.props))
    next(f for f in changed["body"]["fields"] if f["name"] == "port")["value"] = 8091
    diff = provider.diff("id", outs["sonarr-qbittorrent"], changed)
    assert diff.changes is True and diff.replaces == []
    updated = provider.update("id", outs["sonarr-qbittorrent"], changed).outs or {}
    assert updated["item_id"] == outs["sonarr-qbittorrent"]["item_id"]
    (stored,) = apps.sonarr.find("downloadclient", "name", "qBittorrent")
    assert field(stored, "port") == 8091 and str(stored["id"]) == updated["item_id"]
    # The password the app masks on GET is sent back masked and stays what it was.
    assert field(stored, "password") == SECRETS["qbittorrent-password"]
    # A new save path is an edit of the same category.
    category = {**items["qbittorrent-tv-category"].props, "save_path": "/data/torrents/series"}
    provider.update("id", outs["qbittorrent-tv-category"], category)
    assert apps.qbittorrent.categories["tv"]["savePath"] == "/data/torrents/series"
    # Another root folder path is another item: replaced, the old one deleted first.
    moved = json.loads(json.dumps(items["sonarr-root-folder"].props))
    moved["body"]["path"] = "/data/media/series"
    assert provider.diff("id", outs["sonarr-root-folder"], moved).replaces == ["body"]
    for suffix in reversed(list(items)):
        provider.delete("id", outs[suffix])
    for fake in (apps.sonarr, apps.radarr, apps.prowlarr):  # what the apps had before: their profiles, a tag
        assert all(not items for name, items in fake.collections.items() if name not in ("qualityprofile", "tag"))
    assert [t["label"] for t in apps.prowlarr.collections["tag"].values()] == ["flaresolverr"]
    assert apps.seerr.servers == {"sonarr": [], "radarr": []}
    assert apps.qbittorrent.categories == {} and list(apps.sabnzbd.categories) == ["*"]
    assert apps.bazarr.settings["general"] == {"use_sonarr": False, "use_radarr": False}
    # Deleting what is already gone is not an error (someone removed it by hand).
    provider.delete("id", outs["sonarr-qbittorrent"])


def test_refresh_notices_what_was_removed_by_hand(apps: Apps) -> None:
    items = apps.items()
    outs = up(items)
    provider = WiringProvider()
    assert all(provider.read(f"id-{s}", o).id == f"id-{s}" for s, o in outs.items())
    apps.sonarr.collections["downloadclient"].clear()
    apps.qbittorrent.categories.pop("tv")
    apps.sabnzbd.categories.pop("movies")
    apps.bazarr.settings["general"]["use_radarr"] = False
    gone = sorted(s for s, o in outs.items() if not provider.read(f"id-{s}", o).id)
    assert gone == ["bazarr-radarr", "qbittorrent-tv-category", "sabnzbd-movies-category", "sonarr-qbittorrent",
                    "sonarr-sabnzbd"]  # fmt: skip


def test_an_app_that_is_not_ready_yet_is_waited_for(apps: Apps) -> None:
    apps.sonarr.not_ready_for = 3  # Traefik answers 503 while the container starts
    up([i for i in apps.items() if i.suffix == "sonarr-root-folder"])
    assert apps.sonarr.requests[:5] == [("GET", "/ping")] * 4 + [("GET", "/api/v3/rootfolder")]
    assert len(apps.sonarr.collections["rootfolder"]) == 1
    # A 503 in the middle of the work is waited for too.
    apps.sonarr.collections.clear()
    headers = {"X-Api-Key": SECRETS["sonarr-api-key"]}
    with AppClient("sonarr", apps.urls["sonarr"], retry=Retry(**FAST), headers=headers) as api:
        apps.sonarr.not_ready_for = 2
        assert api.json("GET", "/api/v3/rootfolder") == []
    assert apps.sonarr.requests[-3:] == [("GET", "/api/v3/rootfolder")] * 3


def test_an_app_that_never_answers_fails_with_its_name_and_the_fix() -> None:
    with serve(FakeArr()) as url:
        pass  # the port is closed again: nothing listens
    item = {"kind": "arr_item", "app": "radarr", "url": url, "api_key": "k", "api": "/api/v3", "retry": FAST,
            "collection": "rootfolder", "key": "path", "body": {"path": "/data/media/movies"}}  # fmt: skip
    with pytest.raises(WiringError) as error:
        WiringProvider().create(item)
    message = str(error.value)
    assert f"radarr at {url} was not ready after 4 attempts" in message
    assert "ConnectError" in message and "check that the radarr container is running" in message


def test_a_refusal_names_the_app_and_what_it_answered(apps: Apps) -> None:
    items = {i.suffix: i for i in apps.items()}
    up([items["radarr-root-folder"], items["qbittorrent-movies-category"]])
    apps.radarr.refuse = "Unable to connect to qBittorrent"  # as Radarr answers when its test of the client fails
    with pytest.raises(WiringError) as error:
        up([items["radarr-qbittorrent"]])
    assert str(error.value) == (
        "radarr refused POST /api/v3/downloadclient (HTTP 400): Host: Unable to connect to qBittorrent"
    )


@pytest.mark.parametrize(
    ("app", "wrong"),
    [("sonarr", "api_key"), ("prowlarr", "api_key"), ("bazarr", "api_key"), ("sabnzbd", "api_key"),
     ("qbittorrent", "password")],
)  # fmt: skip
def test_a_wrong_key_is_named_and_nothing_is_written(apps: Apps, app: str, wrong: str) -> None:
    item = next(i for i in apps.items() if i.app == app)
    item.props[wrong] = "not-the-key"
    fake = getattr(apps, app)
    before = state(fake)
    with pytest.raises(WiringError) as error:
        up([item])
    message = str(error.value)
    assert message.startswith(f"{app} at {apps.urls[app]} refused the stack's")
    assert "set mediastack:wiring.enabled to false" in message
    assert fake.writes == [] and state(fake) == before


def test_not_json_is_a_clear_error() -> None:
    class NotAnArr(FakeApp):
        def handle(self, *args: Any) -> tuple[int, dict[str, str], bytes]:
            return 200, {"Content-Type": "text/html"}, b"<html>a login page</html>"

    with (
        serve(NotAnArr()) as url,
        AppClient("sonarr", url, retry=Retry(**FAST)) as api,
        pytest.raises(WiringError, match=r"not JSON: <html>a login page</html>; is .* really sonarr"),
    ):
        api.json("GET", "/api/v3/rootfolder")


def test_the_provider_works_as_the_engine_loads_it(apps: Apps) -> None:
    """The dynamic provider host unpickles the provider in a process of its own, then calls it."""
    item = next(i for i in apps.items() if i.suffix == "qbittorrent-tv-category")
    program = (
        "import base64, json, sys, dill\n"
        "provider = dill.loads(base64.b64decode(sys.argv[1]))\n"
        "print(json.dumps(provider.create(json.loads(sys.argv[2])).outs['item_id']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program, serialize_provider(WiringProvider()), json.dumps(item.props)],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == "tv" and "tv" in apps.qbittorrent.categories
    assert base64  # the provider travels base64-encoded, as in the engine


# The wirings a stack deployed before the logins and the qBittorrent preferences existed: their URNs stay.
EARLIER_WIRINGS = {
    "sonarr-root-folder", "radarr-root-folder", "qbittorrent-tv-category", "qbittorrent-movies-category",
    "sabnzbd-tv-category", "sabnzbd-movies-category", "sonarr-qbittorrent", "sonarr-sabnzbd", "radarr-qbittorrent",
    "radarr-sabnzbd", "prowlarr-sonarr", "prowlarr-radarr", "bazarr-sonarr", "bazarr-radarr",
}  # fmt: skip
LOGINS = {"sonarr-login", "radarr-login", "prowlarr-login", "sabnzbd-login", "bazarr-login", "jellyfin-admin",
          "immich-admin"}  # fmt: skip
# Issue 19: the companion apps' wirings (Seerr's admin is a login too, made with Jellyfin's admin password).
COMPANIONS = {"seerr-admin", "seerr-sonarr", "seerr-radarr", "prowlarr-flaresolverr"}


def test_the_program_wires_with_secrets_and_in_order() -> None:
    result = plan("prod")
    wiring = {
        r.name.removeprefix("media-wiring-"): r for r in result.resources if r.type.startswith("pulumi-python:dynamic")
    }
    assert set(wiring) == EARLIER_WIRINGS | LOGINS | {"qbittorrent-auto-tmm"} | COMPANIONS
    urn = "urn:pulumi:prod::mediastack::mediastack:wiring:PipelineWiring$pulumi-python:dynamic:Resource::"
    assert all(wiring[s].urn == urn + f"media-wiring-{s}" for s in EARLIER_WIRINGS)  # unchanged URNs
    by_urn = {r.urn: r.name for r in result.resources}
    for suffix, item in wiring.items():
        assert item.inputs["__provider"] == "[secret]"
        for secret in ("api_key", "password"):
            if secret in item.inputs:
                assert item.inputs[secret] == "[secret]", suffix
    client = wiring["sonarr-qbittorrent"].inputs
    assert field(client["body"], "password") == "[secret]"
    assert client["url"] == "https://sonarr.media.example.org" and client["verify_tls"] is True
    assert client["health"] == "/ping" and wiring["immich-admin"].inputs["health"] == "/api/server/ping"

    def waits_for(suffix: str) -> set[str]:
        return {by_urn[d] for d in wiring[suffix].dependencies}

    # Recorded dependencies: categories, root folders and qBittorrent's preferences before the clients that
    # use them; each wiring after its app's container.
    first = {"media-wiring-qbittorrent-tv-category", "media-wiring-sonarr-root-folder",
             "media-wiring-qbittorrent-auto-tmm", "media-sonarr-container"}  # fmt: skip
    assert first <= waits_for("sonarr-qbittorrent")
    assert "media-wiring-sonarr-root-folder" in waits_for("prowlarr-sonarr")
    assert "media-jellyfin-container" in waits_for("jellyfin-admin")
    assert "media-immich-server-container" in waits_for("immich-admin")
    # Seerr logs in to Jellyfin as its admin; its Sonarr entry reads the root folder the pipeline makes.
    assert {"media-wiring-jellyfin-admin", "media-seerr-container"} <= waits_for("seerr-admin")
    assert {"media-wiring-seerr-admin", "media-wiring-sonarr-root-folder"} <= waits_for("seerr-sonarr")
    assert "media-prowlarr-container" in waits_for("prowlarr-flaresolverr")
    # Seerr made public: its route opens once its admin exists, with Jellyfin's and Immich's.
    public = raw_config("prod")
    public["exposure"] = {**public.get("exposure", {}), "public": ["jellyfin", "immich-server", "seerr"]}
    opened = plan_config(public).resources
    (gate,) = [r for r in opened if r.name.endswith("-public-routes")]
    names = {r.urn: r.name for r in opened}
    assert {"media-wiring-seerr-admin", "media-wiring-jellyfin-admin"} <= {names[d] for d in gate.dependencies}
    assert wiring["seerr-sonarr"].inputs["body"]["apiKey"] == "[secret]"
    assert wiring["seerr-admin"].inputs["health"] == "/api/v1/status/appdata"
    assert wiring["seerr-admin"].inputs["password"] == "[secret]" == wiring["seerr-admin"].inputs["api_key"]
    # Every login's password is a generated secret, exported in `credentials`.
    generated = {
        r.name.removeprefix("media-")
        for r in result.resources
        if r.type == "random:index/randomPassword:RandomPassword"
    }
    assert {"sonarr-admin-password", "radarr-admin-password", "prowlarr-admin-password", "sabnzbd-password",
            "bazarr-password", "jellyfin-admin-password", "immich-admin-password"} <= generated  # fmt: skip


def test_wiring_can_be_switched_off_and_follows_the_enabled_apps() -> None:
    off = {**raw_config("dev"), "wiring": {"enabled": False}}
    assert not [r for r in plan_config(off).resources if r.type.startswith("pulumi-python:dynamic")]
    dev = [r.name for r in plan("dev").resources if r.type.startswith("pulumi-python:dynamic")]
    # dev: no bazarr; no acme, and its stack file turns the check of Traefik's self-signed certificate off.
    assert dev and not [n for n in dev if "bazarr" in n]
    assert all(r.inputs["verify_tls"] is False for r in plan("dev").resources if r.name in dev)


# -- issue 21: what the real apps do that the stand-ins once did not ------------------------------------


def test_a_first_up_waits_until_traefik_routes_each_app(apps: Apps) -> None:
    """Item 1: Traefik answers 404 until a container's first health check passes; the wiring polls the app's
    health path through it (bounded) before its first call."""
    for fake in apps.all.values():
        fake.unrouted_for = 3
    outs = up(apps.items())
    assert len(outs) == 26
    for name, fake in apps.all.items():
        assert fake.requests[:4] == [("GET", urllib.parse.urlsplit(fake.health).path)] * 4, name
    assert apps.sonarr.find("rootfolder", "path", "/data/media/tv")
    # Bounded: an app never routed fails with its name, what it answered and the fix.
    apps.radarr.unrouted_for = 100
    with pytest.raises(WiringError) as error:
        up([i for i in apps.items() if i.suffix == "radarr-root-folder"])
    assert str(error.value) == (
        f"radarr at {apps.urls['radarr']} was not ready after 4 attempts: HTTP 404 for /ping (not routed yet); "
        "check that the radarr container is running and healthy and that its URL is right"
    )


def test_a_first_up_with_the_default_urls_waits_behind_traefik(monkeypatch: pytest.MonkeyPatch) -> None:
    """Done when of issue 21: no `wiring.urls`, so every call goes to https://<app>.<domain> through Traefik
    (self-signed without ACME: dev), which answers 404 for an app until its container is healthy."""
    cfg = StackConfig.model_validate(raw_config("dev"))
    items = pipeline_items(cfg, resolve(cfg, "dev").enabled, SECRETS)
    fakes: dict[str, FakeApp] = {
        "sonarr": FakeArr(name="sonarr", api_key=SECRETS["sonarr-api-key"]),
        "radarr": FakeArr(name="radarr", api_key=SECRETS["radarr-api-key"]),
        "prowlarr": FakeArr(name="prowlarr", api_key=SECRETS["prowlarr-api-key"], api="/api/v1"),
        "qbittorrent": FakeQbittorrent(password=SECRETS["qbittorrent-password"]),
        "sabnzbd": FakeSabnzbd(api_key=SECRETS["sabnzbd-api-key"]),
        "jellyfin": FakeJellyfin(),  # dev has no photos: no Immich
    }
    hosts = {}
    for item in items:
        url = urllib.parse.urlsplit(item.props["url"])
        assert (url.scheme, url.port, item.props["verify_tls"]) == ("https", None, False)
        hosts[url.hostname or ""] = fakes[item.app]
        item.props["retry"] = FAST
    for number, fake in enumerate(fakes.values()):
        fake.unrouted_for = 1 + number % 3  # each becomes healthy after its own time
    with traefik(hosts) as port:
        resolve_name = socket.getaddrinfo

        def to_traefik(host: Any, service: Any, *args: Any, **kwargs: Any) -> Any:
            # The names resolve to the host running Traefik (here loopback, on the stand-in's port).
            return (
                resolve_name("127.0.0.1", port, *args, **kwargs)
                if host in hosts
                else resolve_name(host, service, *args, **kwargs)
            )

        monkeypatch.setattr(socket, "getaddrinfo", to_traefik)
        outs = up(items)
    assert set(outs) == {i.suffix for i in items} and len(outs) == 18
    assert {i.app for i in items} == set(fakes)
    for name, fake in fakes.items():
        waited = 1 + list(fakes).index(name) % 3
        assert fake.requests[: waited + 1] == [("GET", urllib.parse.urlsplit(fake.health).path)] * (waited + 1), name
    assert fakes["jellyfin"].wizard_completed  # type: ignore[attr-defined]
    assert fakes["qbittorrent"].preferences["auto_tmm_enabled"] is True  # type: ignore[attr-defined]


def test_an_unchanged_qbittorrent_category_is_not_edited(apps: Apps) -> None:
    """Item 2: editCategory answers 409 when the options are unchanged (adoption, or a new password)."""
    apps.qbittorrent.categories["tv"] = {"name": "tv", "savePath": "/data/torrents/tv"}  # made by hand, same path
    items = {i.suffix: i for i in apps.items()}
    outs = up([items["qbittorrent-tv-category"]])
    assert outs["qbittorrent-tv-category"]["item_id"] == "tv"
    assert ("POST", "/api/v2/torrents/editCategory") not in apps.qbittorrent.requests
    # A new password is an update that keeps the path: still no edit, so no 409.
    apps.qbittorrent.password = "a-new-password"
    newer = {**items["qbittorrent-tv-category"].props, "password": "a-new-password"}
    WiringProvider().update("id", outs["qbittorrent-tv-category"], newer)
    assert apps.qbittorrent.writes == []
    # A user's download path survives an edit of the save path.
    apps.qbittorrent.categories["tv"]["download_path"] = "/data/incomplete/tv"
    WiringProvider().update("id", outs["qbittorrent-tv-category"], {**newer, "save_path": "/data/torrents/series"})
    assert apps.qbittorrent.categories["tv"] == {
        "name": "tv", "savePath": "/data/torrents/series", "download_path": "/data/incomplete/tv"}  # fmt: skip


def test_names_are_matched_ignoring_case_as_the_apps_do(apps: Apps) -> None:
    """Item 3: an existing `qbittorrent` or `Sabnzbd` is adopted, not refused as "Should be unique"."""
    items = {i.suffix: i for i in apps.items()}
    up([items["sonarr-root-folder"], items["qbittorrent-tv-category"]])
    apps.sonarr.collections["downloadclient"] = {
        7: {"id": 7, "name": "qbittorrent", "enable": True, "implementation": "QBittorrent", "protocol": "torrent",
            "configContract": "QBittorrentSettings", "priority": 3, "removeCompletedDownloads": True,
            "removeFailedDownloads": True, "tags": [], "fields": [{"name": "host", "value": "old-host"}]},
    }  # fmt: skip
    outs = up([items["sonarr-qbittorrent"]])
    assert outs["sonarr-qbittorrent"]["item_id"] == "7"
    (client,) = apps.sonarr.collections["downloadclient"].values()
    assert client["name"] == "qbittorrent" and field(client, "host") == "qbittorrent"
    # Another spelling of the same name is the same item: no replacement.
    renamed = json.loads(json.dumps(items["sonarr-qbittorrent"].props))
    renamed["body"]["name"] = "QBITTORRENT"
    assert WiringProvider().diff("id", outs["sonarr-qbittorrent"], renamed).replaces == []


def test_download_clients_keep_the_apps_own_defaults(apps: Apps) -> None:
    """Item 4: a field left out of a POST becomes false; the apps' own default removes completed and
    failed downloads (DownloadClientDefinition)."""
    up(apps.items())
    for arr in (apps.sonarr, apps.radarr):
        for client in arr.collections["downloadclient"].values():
            assert (client["enable"], client["priority"]) == (True, 1), client["name"]
            assert client["removeCompletedDownloads"] is True and client["removeFailedDownloads"] is True


def test_torrents_save_to_their_category_paths(apps: Apps) -> None:
    """Item 5: qBittorrent uses a category's save path only with automatic torrent management, off by
    default; Sonarr and Radarr add torrents without an autoTMM of their own."""
    up(apps.items())
    assert apps.qbittorrent.preferences["auto_tmm_enabled"] is True
    # Idempotent: set once, not again.
    sets = [r for r in apps.qbittorrent.requests if r[1] == "/api/v2/app/setPreferences"]
    up([i for i in apps.items() if i.suffix == "qbittorrent-auto-tmm"])
    assert [r for r in apps.qbittorrent.requests if r[1] == "/api/v2/app/setPreferences"] == sets


def test_prowlarr_syncs_at_least_its_own_default_categories(apps: Apps) -> None:
    """Item 6: TV/x265, Movies DVD, WEB-DL and x265 were missing."""
    up(apps.items())
    for title, schema in (("Sonarr", "prowlarr:SonarrSettings"), ("Radarr", "prowlarr:RadarrSettings")):
        (application,) = apps.prowlarr.find("applications", "name", title)
        default = SETTINGS[schema]["syncCategories"][0]
        assert set(default) <= set(field(application, "syncCategories")), title
        assert application["syncLevel"] == "fullSync"


def test_updates_and_adoptions_keep_what_the_user_set(apps: Apps) -> None:
    """Item 7: the apps replace the whole item on PUT; the wiring sends the item read back with only its own
    fields changed, so the user's settings (and secrets the app masks) survive."""
    items = {i.suffix: i for i in apps.items()}
    outs = up(list(items.values()))
    (client,) = apps.radarr.find("downloadclient", "name", "qBittorrent")
    user_set = {"priority": 7, "removeCompletedDownloads": False, "tags": [3]}
    client.update(user_set)
    for f in client["fields"]:
        if f["name"] in ("initialState", "sequentialOrder", "movieImportedCategory"):
            f["value"] = {"initialState": 2, "sequentialOrder": True, "movieImportedCategory": "done"}[f["name"]]
    (application,) = apps.prowlarr.find("applications", "name", "Radarr")
    application["syncLevel"] = "addOnly"
    # An update (a new qBittorrent password) and a second create over what exists (adoption).
    newer = json.loads(json.dumps(items["radarr-qbittorrent"].props))
    next(f for f in newer["body"]["fields"] if f["name"] == "password")["value"] = "new-qbt-password"
    WiringProvider().update("id", outs["radarr-qbittorrent"], newer)
    up([items["prowlarr-radarr"]])
    (client,) = apps.radarr.find("downloadclient", "name", "qBittorrent")
    assert {k: client[k] for k in user_set} == user_set
    kept = ("initialState", "sequentialOrder", "movieImportedCategory")
    assert [field(client, name) for name in kept] == [2, True, "done"]
    assert field(client, "password") == "new-qbt-password" and field(client, "movieCategory") == "movies"
    (application,) = apps.prowlarr.find("applications", "name", "Radarr")
    assert application["syncLevel"] == "addOnly"
    assert field(application, "apiKey") == SECRETS["radarr-api-key"]  # masked on GET, kept on PUT


def test_a_new_url_changes_nothing_in_the_apps(apps: Apps) -> None:
    """Item 8: the URL is how Pulumi reaches an app, not the item: no delete and re-create (a category
    deleted in qBittorrent is stripped from every torrent)."""
    items = apps.items()
    outs = up(items)
    provider = WiringProvider()
    for fake in apps.all.values():
        fake.requests.clear()
    moved = {}
    for item in items:
        news = {**item.props, "url": item.props["url"] + "/", "verify_tls": True}
        diff = provider.diff("id", outs[item.suffix], news)
        assert diff.changes is True and diff.replaces == [], item.suffix
        moved[item.suffix] = provider.update("id", outs[item.suffix], news).outs or {}
        assert moved[item.suffix]["url"] == news["url"]  # the state learns the new URL for a later delete
        assert moved[item.suffix]["item_id"] == outs[item.suffix]["item_id"]
    assert {n: f.requests for n, f in apps.all.items()} == {n: [] for n in apps.all}
    assert set(apps.qbittorrent.categories) == {"tv", "movies"}


def test_connection_tests_on_save_are_passed_or_named(apps: Apps) -> None:
    """Sonarr/Radarr test a download client and Prowlarr an application when saved (unless forceSave):
    the wiring saves them after what they test exists, and a failed test is named."""
    items = {i.suffix: i for i in apps.items()}
    apps.prowlarr.unreachable = {"sonarr"}
    up([items["sonarr-root-folder"]])
    with pytest.raises(WiringError) as error:
        up([items["prowlarr-sonarr"]])
    assert (
        str(error.value)
        == "prowlarr refused POST /api/v1/applications (HTTP 400): BaseUrl: Unable to connect to Sonarr"
    )
    apps.prowlarr.unreachable = set()
    up([items["prowlarr-sonarr"]])
    assert apps.prowlarr.find("applications", "name", "Sonarr")
    # An update that leaves the saved item as it is is not tested again (the app compares definitions).
    outs = up([items["qbittorrent-tv-category"], items["sonarr-qbittorrent"]])
    apps.sonarr.unreachable = {"qbittorrent"}
    olds = {**outs["sonarr-qbittorrent"], "defaults": {}}
    WiringProvider().update("id", olds, items["sonarr-qbittorrent"].props)
    changed = json.loads(json.dumps(items["sonarr-qbittorrent"].props))
    next(f for f in changed["body"]["fields"] if f["name"] == "port")["value"] = 8091
    with pytest.raises(WiringError, match=r"sonarr refused PUT /api/v3/downloadclient/\d+ \(HTTP 400\): Host: Unable"):
        WiringProvider().update("id", outs["sonarr-qbittorrent"], changed)


def test_logins_exist_after_the_first_up(apps: Apps) -> None:
    """Issue 16 (M8, H3): every UI has the stack's login: Forms for the *arr apps, SABnzbd and Bazarr;
    Jellyfin's wizard and Immich's first admin done with the generated credentials."""
    outs = up(apps.items())
    for arr in ("sonarr", "radarr", "prowlarr"):
        fake: FakeArr = getattr(apps, arr)
        assert fake.logs_in("admin", SECRETS[f"{arr}-admin-password"]), arr
        assert fake.host["authenticationRequired"] == "enabled" and fake.host["logLevel"] == "info"
    assert apps.sabnzbd.misc["username"] == "admin" and apps.sabnzbd.misc["password"] == SECRETS["sabnzbd-password"]
    assert ("GET", "/api") in apps.sabnzbd.requests and ("POST", "/api") in apps.sabnzbd.requests  # password in a body
    assert apps.bazarr.logs_in("admin", SECRETS["bazarr-password"])
    assert apps.jellyfin.wizard_completed and apps.jellyfin.users == {"admin": SECRETS["jellyfin-admin-password"]}
    assert apps.immich.admin == {"email": "admin@media.example.org", "password": SECRETS["immich-admin-password"],
                                 "name": "Admin"}  # fmt: skip
    provider = WiringProvider()
    assert all(provider.read(f"id-{s}", outs[s]).id == f"id-{s}" for s in LOGINS)
    # A second create (state lost) adopts them: Jellyfin and Immich log in, nothing is made twice.
    again = up([i for i in apps.items() if i.suffix in LOGINS])
    assert (
        again["jellyfin-admin"]["item_id"] == "admin" and again["immich-admin"]["item_id"] == "admin@media.example.org"
    )
    # Deleting a login leaves it: the app stays closed.
    for suffix in LOGINS:
        provider.delete("id", outs[suffix])
    assert apps.sonarr.logs_in("admin", SECRETS["sonarr-admin-password"]) and apps.jellyfin.wizard_completed


def test_the_arr_apps_are_closed_before_their_user_exists() -> None:
    """Sonarr, Radarr and Prowlarr start with Forms login required (their AuthOptions from the environment,
    parsed as AuthenticationType/AuthenticationRequiredType names); with no user yet nobody logs in."""
    for arr in ("sonarr", "radarr", "prowlarr"):
        env = CATALOG[arr].env
        assert (env[f"{arr.upper()}__AUTH__METHOD"], env[f"{arr.upper()}__AUTH__REQUIRED"]) == ("Forms", "Enabled")


def test_a_new_password_is_set_with_the_previous_one(apps: Apps) -> None:
    """A replaced generated password (e.g. `pulumi up --replace` on it) reaches every login."""
    items = {i.suffix: i for i in apps.items() if i.suffix in LOGINS}
    outs = up(list(items.values()))
    provider = WiringProvider()
    for suffix, item in items.items():
        news = {**item.props, "password": f"{suffix}-rotated"}
        updated = provider.update("id", outs[suffix], news).outs or {}
        assert updated["item_id"] == outs[suffix]["item_id"] and "previous_password" not in updated, suffix
    assert apps.jellyfin.users == {"admin": "jellyfin-admin-rotated"}
    assert apps.immich.admin is not None and apps.immich.admin["password"] == "immich-admin-rotated"
    assert apps.sonarr.logs_in("admin", "sonarr-login-rotated") and apps.bazarr.logs_in("admin", "bazarr-login-rotated")
    assert apps.sabnzbd.misc["password"] == "sabnzbd-login-rotated"


def test_an_app_with_its_own_admin_is_adopted_as_it_is(apps: Apps) -> None:
    apps.jellyfin.wizard_completed = True
    apps.jellyfin.users = {"me": "my-own"}
    apps.immich.admin = {"email": "me@example.org", "password": "my-own", "name": "Me"}
    outs = up([i for i in apps.items() if i.suffix in ("jellyfin-admin", "immich-admin")])
    assert outs["jellyfin-admin"]["item_id"] == outs["immich-admin"]["item_id"] == "existing"
    assert apps.jellyfin.users == {"me": "my-own"} and apps.immich.admin["email"] == "me@example.org"


# -- state written by earlier versions ---------------------------------------------------------------
# Commits whose wiring deployed stacks: their provider is pickled in those stacks' state. The first wrote the
# pipeline before issue 21 (no logins); the second is the last before the package layout (modules under
# components/, which the shim in components/__init__.py keeps resolving).
PREVIOUS = {
    "before-issue-21": ("ddde1929a34e7343f6df232c999a070f70a60663", ("components",)),
    "before-layout": ("0a65209d2885ec9ac1e2fabd01572e37e9cc86da", ("components", "policies/mediastack_vocabulary")),
}
_OLD_PROGRAM = """
import base64, json, sys
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/policies"]
from pulumi.dynamic.dynamic import serialize_provider
from components.catalog import CATALOG
from components.config import StackConfig
from components.resolve import resolve
from components.wiring import WiringProvider, pipeline_items
import components.wiring
assert components.wiring.__file__.startswith(sys.argv[1]), components.wiring.__file__
raw, secrets, retry = (json.loads(a) for a in sys.argv[2:5])
cfg = StackConfig.model_validate(raw)
provider = WiringProvider()
outs = {}
for item in pipeline_items(cfg, resolve(cfg, "prod").enabled, secrets):
    outs[item.suffix] = provider.create({**item.props, "retry": retry}).outs
print(json.dumps({"provider": serialize_provider(provider), "outs": outs}))
"""


@pytest.mark.parametrize("version", sorted(PREVIOUS))
def test_state_from_the_previous_version_loads_and_works(apps: Apps, tmp_path: Any, version: str) -> None:
    """The engine unpickles the provider stored with each resource (the earlier code's pickle for a delete
    or refresh) and calls it with the state the earlier code wrote: both must work with this code."""
    commit, paths = PREVIOUS[version]
    archive = subprocess.run(["git", "archive", commit, *paths], cwd=ROOT, capture_output=True, timeout=60)
    if archive.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"commit {commit} is needed (a full clone): {archive.stderr.decode().strip()}")
        pytest.skip(f"commit {commit} is not in this clone")
    subprocess.run(["tar", "-x", "-C", str(tmp_path)], input=archive.stdout, check=True)
    if version == "before-issue-21":  # no logins yet: no Jellyfin/Immich wiring, no login secrets
        old_urls = {k: v for k, v in apps.urls.items() if k not in ("jellyfin", "immich", "seerr")}
        old_secrets = {
            k: v for k, v in SECRETS.items() if "admin" not in k and k not in ("sabnzbd-password", "bazarr-password")
        }
        expected = EARLIER_WIRINGS
    else:
        old_urls = {("immich-server" if k == "immich" else k): v for k, v in apps.urls.items() if k != "seerr"}
        old_secrets, expected = dict(SECRETS), {i.suffix for i in apps.items()} - COMPANIONS
    raw = {**raw_config("prod"), "wiring": {"urls": old_urls}}
    done = subprocess.run(
        [sys.executable, "-c", _OLD_PROGRAM, str(tmp_path), json.dumps(raw), json.dumps(old_secrets), json.dumps(FAST)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    written = json.loads(done.stdout)
    old_outs: dict[str, dict[str, Any]] = written["outs"]
    assert set(old_outs) == expected
    provider = dill.loads(base64.b64decode(written["provider"]))
    assert type(provider) is WiringProvider  # by reference: this code runs for the old state
    # Refresh: everything the previous version made is found.
    assert all(provider.read(f"id-{s}", o).id == f"id-{s}" for s, o in old_outs.items())
    # The first `up` with this code: an update in place for each, never a replacement, no duplicates.
    news = {i.suffix: i.props for i in apps.items()}
    for suffix, olds in old_outs.items():
        diff = provider.diff("id", olds, news[suffix])
        assert diff.replaces == [], suffix
        outs = provider.update("id", olds, news[suffix]).outs or {}
        assert outs["item_id"] == olds["item_id"], suffix
    for fake in (apps.sonarr, apps.radarr, apps.prowlarr):
        assert all(len(items) == len({i["name"] if "name" in i else i["path"] for i in items.values()})
                   for items in fake.collections.values())  # fmt: skip
    assert len(apps.sonarr.collections["downloadclient"]) == 2 and len(apps.prowlarr.collections["applications"]) == 2
    # A delete from the old state (the engine uses the old pickle and the old outputs).
    provider.delete("id", old_outs["sonarr-sabnzbd"])
    assert not apps.sonarr.find("downloadclient", "name", "SABnzbd")


# -- the real qBittorrent -------------------------------------------------------------------------------
# Debian 12 ships qbittorrent-nox 4.5.2; the stack pins 5.1.2. Every call the wiring makes is implemented
# alike in both (release-4.5.2 and release-5.1.2 src/webui/api/{auth,torrents,app}controller.cpp:
# auth/login "Ok."/"Fails.", torrents/categories, createCategory, editCategory (409 on unchanged options),
# removeCategories, app/preferences auto_tmm_enabled; DisableAutoTMMByDefault true in both).


@pytest.fixture
def real_qbittorrent(tmp_path: Any) -> Iterator[str]:
    """qbittorrent-nox on loopback with the file mediastack/generate/seeds.py writes before the first start."""
    binary = require_tool("qbittorrent-nox")
    with serve(FakeApp()) as url:
        pass  # a free loopback port, closed again
    port = int(url.rsplit(":", 1)[1])
    config = StackConfig.model_validate(raw_config("prod"))
    conf = tmp_path / "config" / QBITTORRENT_CONF
    conf.parent.mkdir(parents=True)
    conf.write_text(qbittorrent_conf(config, port, SECRETS["qbittorrent-password"]))
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "config"),
           "XDG_DATA_HOME": str(tmp_path / "data"), "XDG_CACHE_HOME": str(tmp_path / "cache")}  # fmt: skip
    process = subprocess.Popen(
        [binary, f"--webui-port={port}"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_qbittorrent_wiring_against_the_real_program(real_qbittorrent: str) -> None:
    cfg = StackConfig.model_validate({**raw_config("prod"), "wiring": {"urls": {"qbittorrent": real_qbittorrent}}})
    items = {i.suffix: i for i in pipeline_items(cfg, resolve(cfg, "prod").enabled, SECRETS) if i.app == "qbittorrent"}
    for item in items.values():
        item.props["retry"] = {**FAST, "attempts": 40, "first_delay_s": 0.25, "max_delay_s": 0.5}
    assert set(items) == {"qbittorrent-tv-category", "qbittorrent-movies-category", "qbittorrent-auto-tmm"}
    outs = up(list(items.values()))  # waits for the program to listen, logs in with the seeded password
    provider = WiringProvider()
    api = QbittorrentCategory().client(items["qbittorrent-tv-category"].props)
    with api:
        categories = api.json("GET", "/api/v2/torrents/categories")
        assert {k: v["savePath"] for k, v in categories.items()} == {
            "tv": "/data/torrents/tv", "movies": "/data/torrents/movies"}  # fmt: skip
        assert api.json("GET", "/api/v2/app/preferences")["auto_tmm_enabled"] is True  # item 5
        # Item 2: the real program answers 409 to an edit that changes nothing...
        same = {"category": "tv", "savePath": "/data/torrents/tv"}
        assert api.request("POST", "/api/v2/torrents/editCategory", data=same, ok=(409,)).status_code == 409
    # ...so adoption (state lost) and an update that keeps the path must not edit.
    again = up(list(items.values()))
    assert {k: v["item_id"] for k, v in again.items()} == {k: v["item_id"] for k, v in outs.items()}
    provider.update("id", outs["qbittorrent-tv-category"], {**items["qbittorrent-tv-category"].props, "retry": FAST})
    moved = {**items["qbittorrent-tv-category"].props, "save_path": "/data/torrents/series"}
    provider.update("id", outs["qbittorrent-tv-category"], moved)
    # Item 8: a new URL calls nothing (the category and its torrents stay).
    elsewhere = {**items["qbittorrent-movies-category"].props, "url": real_qbittorrent + "/"}
    assert provider.diff("id", outs["qbittorrent-movies-category"], elsewhere).replaces == []
    assert provider.read("id", outs["qbittorrent-movies-category"]).id == "id"
    provider.delete("id", outs["qbittorrent-movies-category"])
    with QbittorrentCategory().client(items["qbittorrent-tv-category"].props) as api:
        categories = api.json("GET", "/api/v2/torrents/categories")
    assert {k: v["savePath"] for k, v in categories.items()} == {"tv": "/data/torrents/series"}


# -- issue 19: the companion apps (Seerr; FlareSolverr as Prowlarr's indexer proxy) ---------------------------
@dataclass
class Companions:
    apps: Apps

    @property
    def seerr(self) -> FakeSeerr:
        return self.apps.seerr

    @property
    def urls(self) -> dict[str, str]:
        return self.apps.urls

    def items(self) -> dict[str, Item]:
        """The companions' wirings in prod, which enables them all."""
        return {i.suffix: i for i in self.apps.items() if i.suffix in COMPANIONS}

    def prerequisites(self) -> None:
        """Jellyfin's admin and the *arr root folders, as the pipeline wires them first."""
        wanted = ("jellyfin-admin", "sonarr-root-folder", "radarr-root-folder")
        up([i for i in self.apps.items() if i.suffix in wanted])


@pytest.fixture
def companions(apps: Apps) -> Companions:
    return Companions(apps)


def test_seerr_is_set_up_through_jellyfin_with_sonarr_and_radarr(companions: Companions) -> None:
    companions.apps.sonarr.collections["rootfolder"] = {50: {"id": 50, "path": "/data/media/anime"}}  # the user's
    companions.prerequisites()
    items = companions.items()
    assert items["seerr-admin"].after == ("jellyfin-admin",)
    assert items["seerr-sonarr"].after == ("seerr-admin", "sonarr-root-folder")
    outs = up([items[s] for s in ("seerr-admin", "seerr-sonarr", "seerr-radarr")])
    seerr, jellyfin = companions.seerr, companions.apps.jellyfin
    assert outs["seerr-admin"]["item_id"] == "admin" and seerr.initialized
    assert seerr.users == [{"id": 1, "jellyfinUsername": "admin", "email": "admin@media.example.org",
                            "permissions": ["ADMIN"]}]  # fmt: skip
    assert (seerr.main["mediaServerType"], seerr.jellyfin["ip"], seerr.jellyfin["port"]) == (2, "jellyfin", 8096)
    assert jellyfin.api_keys == ["Seerr"]
    assert [(lib["name"], lib["enabled"]) for lib in seerr.jellyfin["libraries"]] == [("Films", True), ("Series", True)]
    calls = [path for _, path in seerr.calls]
    assert calls.index("/api/v1/auth/jellyfin") < calls.index("/api/v1/settings/jellyfin/library")
    assert calls[-1] == "/api/v1/settings/radarr" and "/api/v1/settings/initialize" in calls
    assert calls.index("/api/v1/settings/initialize") < calls.index("/api/v1/settings/sonarr/test")
    (sonarr,) = seerr.servers["sonarr"]
    assert sonarr == {
        **SEERR_DEFAULTS["sonarr"], "name": "Sonarr", "hostname": "sonarr", "port": 8989,
        "apiKey": SECRETS["sonarr-api-key"], "useSsl": False, "baseUrl": "", "is4k": False, "isDefault": True,
        "activeProfileId": 1, "activeProfileName": "Any", "activeDirectory": "/data/media/tv", "id": 0,
    }  # fmt: skip
    (radarr,) = seerr.servers["radarr"]
    assert (radarr["id"], radarr["activeDirectory"], radarr["minimumAvailability"]) == (
        0,
        "/data/media/movies",
        "released",
    )
    assert outs["seerr-sonarr"]["item_id"] == "0" == outs["seerr-radarr"]["item_id"]
    provider = WiringProvider()
    assert all(provider.read(f"id-{s}", o).id == f"id-{s}" for s, o in outs.items())


def test_seerr_before_jellyfin_has_a_library_is_still_set_up(companions: Companions) -> None:
    companions.apps.jellyfin.libraries = []  # a new Jellyfin: Seerr's sync answers 404 SyncErrorNoLibraries
    companions.prerequisites()
    up([companions.items()["seerr-admin"]])
    assert companions.seerr.initialized and companions.seerr.jellyfin["libraries"] == []


def test_seerr_is_adopted_without_a_second_setup(companions: Companions) -> None:
    companions.prerequisites()
    items = companions.items()
    seerr_items = [items[s] for s in ("seerr-admin", "seerr-sonarr", "seerr-radarr")]
    outs = up(seerr_items)
    before = state(companions.seerr)
    # A create over what exists (state lost): the admin logs in without a hostname (with one, Seerr answers 500
    # "Jellyfin hostname already configured"), no second Jellyfin key, no second entry.
    again = up(seerr_items)
    assert {k: v["item_id"] for k, v in again.items()} == {k: v["item_id"] for k, v in outs.items()}
    assert state(companions.seerr) == before and companions.apps.jellyfin.api_keys == ["Seerr"]
    assert ("POST", "/api/v1/settings/initialize") in companions.seerr.writes  # once, by the first up
    assert companions.seerr.writes.count(("POST", "/api/v1/settings/initialize")) == 1
    # A Radarr entry made by hand with the same host and port is updated, not doubled; the user's choices stay.
    companions.seerr.servers["radarr"] = [
        {"id": 4, "name": "Movies", "hostname": "radarr", "port": 7878, "apiKey": "old", "useSsl": False,
         "activeProfileId": 3, "activeProfileName": "HD-720p", "activeDirectory": "/data/media/movies",
         "is4k": False, "isDefault": True, "minimumAvailability": "inCinemas", "syncEnabled": True},
    ]  # fmt: skip
    adopted = up([items["seerr-radarr"]])
    assert adopted["seerr-radarr"]["item_id"] == "4"
    (radarr,) = companions.seerr.servers["radarr"]
    assert (radarr["apiKey"], radarr["name"], radarr["baseUrl"]) == (SECRETS["radarr-api-key"], "Radarr", "")
    assert (radarr["activeProfileId"], radarr["minimumAvailability"], radarr["syncEnabled"]) == (3, "inCinemas", True)


def test_seerr_half_set_up_is_finished(companions: Companions) -> None:
    """An up stopped after Seerr made its admin: the next one neither re-sends the hostname nor makes a key."""
    companions.prerequisites()
    item = companions.items()["seerr-admin"]
    with AppClient("seerr", companions.urls["seerr"], retry=Retry(**FAST)) as api:
        login = {"username": "admin", "password": SECRETS["jellyfin-admin-password"], "hostname": "jellyfin",
                 "port": 8096, "serverType": 2}  # fmt: skip
        api.request("POST", "/api/v1/auth/jellyfin", json=login)
    up([item])
    assert companions.seerr.initialized and companions.apps.jellyfin.api_keys == ["Seerr"]
    assert [lib["enabled"] for lib in companions.seerr.jellyfin["libraries"]] == [True, True]
    # Its database lost but not its settings (Jellyfin configured, no admin): the admin is made again by a login
    # without the hostname (Seerr answers 500 "Jellyfin hostname already configured" to one with it).
    companions.seerr.users, companions.seerr.initialized = [], False
    up([item])
    assert companions.seerr.initialized and companions.seerr.users[0]["jellyfinUsername"] == "admin"


def test_seerr_with_an_admin_of_its_own_is_left_as_it_is(companions: Companions) -> None:
    companions.prerequisites()
    companions.apps.jellyfin.users["me"] = "my-own"
    seerr = companions.seerr
    seerr.users = [{"id": 1, "jellyfinUsername": "me", "email": "me", "permissions": ["ADMIN"]}]
    seerr.main["mediaServerType"], seerr.jellyfin["ip"], seerr.initialized = 2, "jellyfin", True
    outs = up([companions.items()["seerr-admin"]])
    assert outs["seerr-admin"]["item_id"] == "existing"
    assert [u["jellyfinUsername"] for u in seerr.users] == ["me"]  # no user made by logging in as the stack's admin


def test_seerr_set_up_with_a_key_of_its_own_gets_the_stacks(companions: Companions) -> None:
    """A settings.json from before the stack is kept (the seed never overwrites): its admin, the stack's
    Jellyfin admin, hands Seerr the stack's key, which the Sonarr and Radarr entries then use."""
    companions.prerequisites()
    items = companions.items()
    up([items["seerr-admin"]])
    companions.seerr.api_key = "its-own-key"
    outs = up([items[s] for s in ("seerr-admin", "seerr-sonarr")])
    assert outs["seerr-admin"]["item_id"] == "admin" and companions.seerr.api_key == SECRETS["seerr-api-key"]
    assert ("POST", "/api/v1/settings/main") in companions.seerr.writes
    assert [u["jellyfinUsername"] for u in companions.seerr.users] == ["admin"]
    assert len(companions.seerr.servers["sonarr"]) == 1


def test_seerr_with_another_admin_and_key_is_named_not_changed(companions: Companions) -> None:
    companions.prerequisites()
    seerr = companions.seerr
    seerr.users = [{"id": 1, "jellyfinUsername": "me", "email": "me", "permissions": ["ADMIN"]}]
    seerr.main["mediaServerType"], seerr.jellyfin["ip"], seerr.initialized = 2, "jellyfin", True
    seerr.api_key = "its-own-key"
    with pytest.raises(WiringError) as error:
        up([companions.items()["seerr-admin"]])
    assert str(error.value).startswith("seerr was set up before the stack, with an API key of its own and an admin")
    assert "mediastack:services.seerr.enabled: false" in str(error.value)
    assert seerr.api_key == "its-own-key" and ("POST", "/api/v1/settings/main") not in seerr.writes


def test_seerr_entries_are_updated_in_place_and_deleted(companions: Companions) -> None:
    companions.prerequisites()
    items = companions.items()
    outs = up([items[s] for s in ("seerr-admin", "seerr-sonarr", "seerr-radarr")])
    seerr, provider = companions.seerr, WiringProvider()
    seerr.servers["sonarr"][0].update(activeProfileId=2, activeProfileName="SD", syncEnabled=True)  # the user's
    # A new Sonarr key: the whole entry is PUT back with it, the user's choices with it.
    changed = json.loads(json.dumps(items["seerr-sonarr"].props))
    changed["body"]["apiKey"] = "9" * 32
    assert provider.diff("id", outs["seerr-sonarr"], changed).replaces == []
    updated = provider.update("id", outs["seerr-sonarr"], changed).outs or {}
    assert updated["item_id"] == "0"
    (sonarr,) = seerr.servers["sonarr"]
    assert (sonarr["apiKey"], sonarr["activeProfileId"], sonarr["syncEnabled"]) == ("9" * 32, 2, True)
    assert ("PUT", "/api/v1/settings/sonarr/0") in seerr.writes
    # A new Jellyfin password reaches Seerr's login (Seerr asks Jellyfin).
    companions.apps.jellyfin.users["admin"] = "rotated"
    admin = {**items["seerr-admin"].props, "password": "rotated"}
    assert provider.update("id", outs["seerr-admin"], admin).outs["item_id"] == "admin"  # type: ignore[index]
    # Refresh notices an entry removed by hand; delete removes what the wiring made, and a second delete is fine.
    seerr.servers["radarr"].clear()
    assert provider.read("id", outs["seerr-radarr"]).id == ""
    provider.delete("id", outs["seerr-sonarr"])
    provider.delete("id", outs["seerr-sonarr"])
    provider.delete("id", outs["seerr-admin"])
    assert seerr.servers["sonarr"] == [] and seerr.initialized  # the login outlives its wiring


def test_seerr_without_a_root_folder_in_sonarr_says_which_wiring_comes_first(companions: Companions) -> None:
    up([i for i in companions.apps.items() if i.suffix == "jellyfin-admin"])
    items = companions.items()
    up([items["seerr-admin"]])
    with pytest.raises(WiringError) as error:
        up([items["seerr-sonarr"]])
    assert str(error.value) == (
        "seerr found no quality profile or no root folder in sonarr (3 profiles, 0 root folders); "
        "the sonarr-root-folder wiring makes the root folder first"
    )
    assert companions.seerr.servers["sonarr"] == []


def test_companions_are_wired_only_with_what_they_connect() -> None:
    """`_companions` fed catalog-like stubs: which apps are enabled, and each one's web port."""
    made: dict[str, Item] = {}

    def wired(enabled: set[str]) -> set[str]:
        made.clear()

        def wire(suffix: str, app: str, kind: str, props: dict[str, Any], after: tuple[str, ...] = ()) -> str:
            made[suffix] = Item(suffix, app, kind, props, after)
            return suffix

        ports = {"jellyfin": 8096, "sonarr": 8989, "radarr": 7878, "flaresolverr": 8191}
        _companions(StackConfig.model_validate(raw_config("prod")), frozenset(enabled), SECRETS, wire, ports.get)
        return set(made)

    assert wired({"seerr", "jellyfin", "sonarr", "radarr", "prowlarr", "flaresolverr"}) == COMPANIONS
    assert wired({"seerr", "jellyfin", "radarr", "prowlarr"}) == {"seerr-admin", "seerr-radarr"}
    assert made["seerr-radarr"].props["body"]["port"] == 7878
    assert wired({"seerr", "sonarr", "radarr", "flaresolverr"}) == set()  # no Jellyfin, no Prowlarr
    assert wired({"flaresolverr", "prowlarr"}) == {"prowlarr-flaresolverr"}
    assert made["prowlarr-flaresolverr"].props["body"]["fields"] == [
        {"name": "host", "value": "http://flaresolverr:8191/"}
    ]


def test_flaresolverr_is_prowlarrs_tagged_indexer_proxy(companions: Companions) -> None:
    prowlarr, provider = companions.apps.prowlarr, WiringProvider()
    item = companions.items()["prowlarr-flaresolverr"]
    outs = up([item])["prowlarr-flaresolverr"]
    ((tag_id, tag),) = prowlarr.collections["tag"].items()
    assert tag == {"id": tag_id, "label": "flaresolverr"}
    (proxy,) = prowlarr.collections["indexerProxy"].values()
    assert str(proxy["id"]) == outs["item_id"] and proxy["tags"] == [tag_id]
    assert (proxy["implementation"], proxy["configContract"]) == ("FlareSolverr", "FlareSolverrSettings")
    assert (field(proxy, "host"), field(proxy, "requestTimeout")) == ("http://flaresolverr:8191/", 60)
    # Saved without the test that needs the internet: created untagged (not enabled), then tagged with forceSave.
    assert prowlarr.writes == [
        ("POST", "/api/v1/indexerProxy"), ("POST", "/api/v1/tag"), ("PUT", f"/api/v1/indexerProxy/{proxy['id']}")
    ]  # fmt: skip
    # A second up (state lost) adopts it: nothing written.
    prowlarr.requests.clear()
    assert up([item])["prowlarr-flaresolverr"]["item_id"] == outs["item_id"] and prowlarr.writes == []
    assert provider.read("id", outs).id == "id"
    # The user's own tag and timeout stay; a proxy named in another case is the same one.
    proxy.update(name="flaresolverr", tags=[tag_id, 77])
    next(f for f in proxy["fields"] if f["name"] == "requestTimeout")["value"] = 120
    moved = json.loads(json.dumps(item.props))
    moved["body"]["fields"] = [{"name": "host", "value": "http://flaresolverr:8192/"}]
    assert provider.diff("id", outs, moved).replaces == []
    assert provider.update("id", outs, moved).outs["item_id"] == outs["item_id"]  # type: ignore[index]
    (proxy,) = prowlarr.collections["indexerProxy"].values()
    assert (proxy["name"], sorted(proxy["tags"]), field(proxy, "requestTimeout")) == ("flaresolverr", [tag_id, 77], 120)
    assert field(proxy, "host") == "http://flaresolverr:8192/"
    # Delete removes the proxy and leaves the tag (the user's indexers carry it); a second delete is fine.
    provider.delete("id", outs)
    provider.delete("id", outs)
    assert prowlarr.collections["indexerProxy"] == {} and list(prowlarr.collections["tag"]) == [tag_id]
    assert provider.read("id", outs).id == ""


def test_flaresolverr_reuses_a_tag_the_user_made(companions: Companions) -> None:
    prowlarr = companions.apps.prowlarr
    prowlarr.collections["tag"] = {9: {"id": 9, "label": "flaresolverr"}}
    up([companions.items()["prowlarr-flaresolverr"]])
    (proxy,) = prowlarr.collections["indexerProxy"].values()
    assert proxy["tags"] == [9] and list(prowlarr.collections["tag"]) == [9]


def test_seerr_refusing_the_stacks_jellyfin_admin_says_why(companions: Companions) -> None:
    """Jellyfin adopted with an admin of its own (jellyfin-admin `existing`): the stack's password is not Jellyfin's."""
    companions.prerequisites()
    companions.apps.jellyfin.users["admin"] = "changed-by-hand"
    with pytest.raises(WiringError) as error:
        up([companions.items()["seerr-admin"]])
    assert str(error.value) == (
        "seerr refused the login of Jellyfin's admin (HTTP 401: InvalidCredentials); Seerr's admin is the stack's "
        "Jellyfin admin: check that jellyfin-admin is wired (not adopted as an existing admin) or set "
        "mediastack:wiring.enabled to false"
    )
    assert not companions.seerr.users and not companions.seerr.initialized
