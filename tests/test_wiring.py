"""The pipeline wiring, run for real against loopback stand-ins that speak the apps' APIs and keep state."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import pytest
from pulumi.dynamic.dynamic import serialize_provider

from components.config import StackConfig
from components.resolve import resolve
from components.seeds import QBITTORRENT_USER
from components.wiring import Item, WiringProvider, pipeline_items
from components.wiring_api import AppClient, Retry, WiringError
from conftest import ROOT, plan, plan_config, raw_config
from fake_apps import FakeApp, FakeArr, FakeBazarr, FakeQbittorrent, FakeSabnzbd, serve

FAST = {"attempts": 4, "first_delay_s": 0.01, "max_delay_s": 0.02, "timeout_s": 5}
SECRETS = {
    "sonarr-api-key": "a" * 32,
    "radarr-api-key": "b" * 32,
    "prowlarr-api-key": "c" * 32,
    "bazarr-api-key": "d" * 32,
    "sabnzbd-api-key": "e" * 32,
    "qbittorrent-password": "qbt-password-1234567890",
}


@dataclass
class Apps:
    sonarr: FakeArr
    radarr: FakeArr
    prowlarr: FakeArr
    bazarr: FakeBazarr
    qbittorrent: FakeQbittorrent
    sabnzbd: FakeSabnzbd
    urls: dict[str, str]

    def items(self, **config: Any) -> list[Item]:
        cfg = StackConfig.model_validate({**raw_config("prod"), "wiring": {"urls": self.urls, **config}})
        items = pipeline_items(cfg, resolve(cfg, "prod").enabled, SECRETS)
        for item in items:
            item.props["retry"] = FAST
        return items


@pytest.fixture
def apps() -> Iterator[Apps]:
    fakes: dict[str, FakeApp] = {
        "sonarr": FakeArr(api_key=SECRETS["sonarr-api-key"]),
        "radarr": FakeArr(api_key=SECRETS["radarr-api-key"]),
        "prowlarr": FakeArr(api_key=SECRETS["prowlarr-api-key"], api="/api/v1"),
        "bazarr": FakeBazarr(api_key=SECRETS["bazarr-api-key"]),
        "qbittorrent": FakeQbittorrent(password=SECRETS["qbittorrent-password"]),
        "sabnzbd": FakeSabnzbd(api_key=SECRETS["sabnzbd-api-key"]),
    }
    with ExitStack() as stack:
        urls = {name: stack.enter_context(serve(app)) for name, app in fakes.items()}
        yield Apps(urls=urls, **fakes)  # type: ignore[arg-type]


def up(items: list[Item]) -> dict[str, dict[str, Any]]:
    """What `pulumi up` does on a new stack: create each item in order; returns the outputs by suffix."""
    provider = WiringProvider()
    return {item.suffix: provider.create(item.props).outs or {} for item in items}


def state(fake: FakeApp) -> str:
    """What an app holds, without the bookkeeping of requests and sessions."""
    kept = {k: v for k, v in vars(fake).items() if k not in ("requests", "sessions", "not_ready_for")}
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
    changed["body"]["priority"] = 5
    diff = provider.diff("id", outs["sonarr-qbittorrent"], changed)
    assert diff.changes is True and diff.replaces == []
    updated = provider.update("id", outs["sonarr-qbittorrent"], changed).outs or {}
    assert updated["item_id"] == outs["sonarr-qbittorrent"]["item_id"]
    (stored,) = apps.sonarr.find("downloadclient", "name", "qBittorrent")
    assert stored["priority"] == 5 and str(stored["id"]) == updated["item_id"]
    # A new save path is an edit of the same category.
    category = {**items["qbittorrent-tv-category"].props, "save_path": "/data/torrents/series"}
    provider.update("id", outs["qbittorrent-tv-category"], category)
    assert apps.qbittorrent.categories["tv"]["savePath"] == "/data/torrents/series"
    # Another root folder path is another item: replaced, the old one deleted first.
    moved = json.loads(json.dumps(items["sonarr-root-folder"].props))
    moved["body"]["path"] = "/data/media/series"
    assert provider.diff("id", outs["sonarr-root-folder"], moved).replaces == ["body"]
    elsewhere = {**outs["sonarr-root-folder"], "url": "http://elsewhere"}
    assert provider.diff("id", elsewhere, items["sonarr-root-folder"].props).replaces == ["url"]
    for suffix in reversed(list(items)):
        provider.delete("id", outs[suffix])
    for fake in (apps.sonarr, apps.radarr, apps.prowlarr):
        assert all(not items for items in fake.collections.values())
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
    assert [r for r in apps.sonarr.requests if r[0] == "GET"][:4] == [("GET", "/api/v3/rootfolder")] * 4
    assert len(apps.sonarr.collections["rootfolder"]) == 1


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


def test_the_program_wires_with_secrets_and_in_order() -> None:
    result = plan("prod")
    wiring = {
        r.name.removeprefix("media-wiring-"): r for r in result.resources if r.type.startswith("pulumi-python:dynamic")
    }
    assert len(wiring) == 14
    names = [r.name for r in result.resources]
    for suffix, item in wiring.items():
        assert item.inputs["__provider"] == "[secret]"
        for secret in ("api_key", "password"):
            if secret in item.inputs:
                assert item.inputs[secret] == "[secret]", suffix
    client = wiring["sonarr-qbittorrent"].inputs
    assert field(client["body"], "password") == "[secret]"
    assert client["url"] == "https://sonarr.media.example.org" and client["verify_tls"] is True
    # Categories and root folders exist before the download clients that name them.
    assert names.index("media-wiring-qbittorrent-tv-category") < names.index("media-wiring-sonarr-qbittorrent")
    assert names.index("media-wiring-sonarr-root-folder") < names.index("media-wiring-prowlarr-sonarr")
    # The apps' containers come first: a wiring depends on its app.
    assert names.index("media-sonarr-container") < names.index("media-wiring-sonarr-root-folder")


def test_wiring_can_be_switched_off_and_follows_the_enabled_apps() -> None:
    off = {**raw_config("dev"), "wiring": {"enabled": False}}
    assert not [r for r in plan_config(off).resources if r.type.startswith("pulumi-python:dynamic")]
    dev = [r.name for r in plan("dev").resources if r.type.startswith("pulumi-python:dynamic")]
    # dev: no bazarr; no acme, and its stack file turns the check of Traefik's self-signed certificate off.
    assert dev and not [n for n in dev if "bazarr" in n]
    assert all(r.inputs["verify_tls"] is False for r in plan("dev").resources if r.name in dev)
