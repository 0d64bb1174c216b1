"""Loopback stand-ins for the apps the deploy-time wiring talks to, speaking their APIs and keeping state.

Each stand-in answers like its pinned app, as read in the app's own source (cited where it matters):
Sonarr v4.0.15 / Radarr v5.27.5 (`/api/v3`) and Prowlarr v2.1.5 (`/api/v1`) provider collections with
`X-Api-Key`; qBittorrent 5.1.2's WebUI API v2 with a cookie login; SABnzbd 4.5.3's `/api?mode=...`;
Bazarr 1.5's `/api/system/settings`; Jellyfin 10.11.2's startup wizard; Immich v2.2.3's admin sign-up; Seerr
v3.1.0's setup through Jellyfin and its Sonarr/Radarr settings; Prowlarr's tags and indexer proxies.
Every stand-in sits behind a stand-in of Traefik: `unrouted_for` requests get Traefik's 404 (no router
until the container's first health check passes), `not_ready_for` requests get 503.
"""

from __future__ import annotations

import hashlib
import json
import ssl
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

Answer = tuple[int, dict[str, str], bytes]


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Answer:
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(body).encode()


def _text(status: int, body: str, headers: dict[str, str] | None = None) -> Answer:
    return status, {"Content-Type": "text/plain", **(headers or {})}, body.encode()


@dataclass
class FakeApp:
    unrouted_for: int = 0  # the first N requests get Traefik's 404: no router for a container not yet healthy
    not_ready_for: int = 0  # the next N requests get 503
    requests: list[tuple[str, str]] = field(default_factory=list)
    health: str = "/"  # the path its container's health check asks

    def answer(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes) -> Answer:
        self.requests.append((method, path))
        if self.unrouted_for > 0:
            self.unrouted_for -= 1
            return _text(404, "404 page not found")  # Traefik's own answer for a host without a router
        if self.not_ready_for > 0:
            self.not_ready_for -= 1
            return _text(503, "Service Unavailable")
        if method == "GET" and self._is_health(path, query):
            return _json(200, {"status": "OK"})
        return self.handle(method, path, query, headers, body)

    def _is_health(self, path: str, query: dict[str, str]) -> bool:
        health = urllib.parse.urlsplit(self.health)
        return path == health.path and dict(urllib.parse.parse_qsl(health.query)).items() <= query.items()

    def handle(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes) -> Answer:
        raise NotImplementedError

    @property
    def writes(self) -> list[tuple[str, str]]:
        return [r for r in self.requests if r[0] != "GET" and not r[1].endswith(("/auth/login", "AuthenticateByName"))]

    @property
    def calls(self) -> list[tuple[str, str]]:
        """The requests that reached the app itself, not its health path."""
        return [r for r in self.requests if r[1] != urllib.parse.urlsplit(self.health).path]


# -- Sonarr, Radarr, Prowlarr -------------------------------------------------------------------------
# Settings classes: field name -> (default, privacy). ReadFromSchema (Sonarr.Http/ClientSchema/
# SchemaBuilder.cs) starts from a new settings object, so a field left out of a request gets the class's
# default; ToSchema answers every field, with ApiKey/Password privacy masked as ******** when set; on PUT,
# a masked value keeps what is stored. Unknown field names are ignored.
PW, KEY = "password", "apiKey"
SETTINGS: dict[str, dict[str, tuple[Any, str | None]]] = {
    # Sonarr v4.0.15 src/NzbDrone.Core/Download/Clients/QBittorrent/QBittorrentSettings.cs
    "sonarr:QBittorrentSettings": {
        "host": ("localhost", None), "port": (8080, None), "useSsl": (False, None), "urlBase": (None, None),
        "username": (None, None), "password": (None, PW), "tvCategory": ("tv-sonarr", None),
        "tvImportedCategory": (None, None), "recentTvPriority": (0, None), "olderTvPriority": (0, None),
        "initialState": (0, None), "sequentialOrder": (False, None), "firstAndLast": (False, None),
        "contentLayout": (0, None),
    },
    # Sonarr v4.0.15 .../Clients/Sabnzbd/SabnzbdSettings.cs (SabnzbdPriority.Default = -100)
    "sonarr:SabnzbdSettings": {
        "host": ("localhost", None), "port": (8080, None), "useSsl": (False, None), "urlBase": (None, None),
        "apiKey": (None, KEY), "username": (None, None), "password": (None, PW), "tvCategory": ("tv", None),
        "recentTvPriority": (-100, None), "olderTvPriority": (-100, None),
    },
    # Radarr v5.27.5 src/NzbDrone.Core/Download/Clients/QBittorrent/QBittorrentSettings.cs
    "radarr:QBittorrentSettings": {
        "host": ("localhost", None), "port": (8080, None), "useSsl": (False, None), "urlBase": (None, None),
        "username": (None, None), "password": (None, PW), "movieCategory": ("radarr", None),
        "movieImportedCategory": (None, None), "recentMoviePriority": (0, None), "olderMoviePriority": (0, None),
        "initialState": (0, None), "sequentialOrder": (False, None), "firstAndLast": (False, None),
        "contentLayout": (0, None),
    },
    # Radarr v5.27.5 .../Clients/Sabnzbd/SabnzbdSettings.cs
    "radarr:SabnzbdSettings": {
        "host": ("localhost", None), "port": (8080, None), "useSsl": (False, None), "urlBase": (None, None),
        "apiKey": (None, KEY), "username": (None, None), "password": (None, PW), "movieCategory": ("movies", None),
        "recentMoviePriority": (-100, None), "olderMoviePriority": (-100, None),
    },
    # Prowlarr v2.1.5 src/NzbDrone.Core/Applications/Sonarr/SonarrSettings.cs
    "prowlarr:SonarrSettings": {
        "prowlarrUrl": ("http://localhost:9696", None), "baseUrl": ("http://localhost:8989", None),
        "apiKey": (None, KEY), "syncCategories": ([5000, 5010, 5020, 5030, 5040, 5045, 5050, 5090], None),
        "animeSyncCategories": ([5070], None), "syncAnimeStandardFormatSearch": (False, None),
        "syncRejectBlocklistedTorrentHashesWhileGrabbing": (False, None),
    },
    # Prowlarr v2.1.5 .../Applications/Radarr/RadarrSettings.cs
    "prowlarr:RadarrSettings": {
        "prowlarrUrl": ("http://localhost:9696", None), "baseUrl": ("http://localhost:7878", None),
        "apiKey": (None, KEY),
        "syncCategories": ([2000, 2010, 2020, 2030, 2040, 2045, 2050, 2060, 2070, 2080, 2090], None),
        "syncRejectBlocklistedTorrentHashesWhileGrabbing": (False, None),
    },
    # Prowlarr v2.1.5 src/NzbDrone.Core/IndexerProxies/FlareSolverr/FlareSolverrSettings.cs
    "prowlarr:FlareSolverrSettings": {"host": ("http://localhost:8191/", None), "requestTimeout": (60, None)},
}  # fmt: skip
# The resource's own properties: one left out of the JSON is the type's zero value (DownloadClientResource
# ToModel copies `resource.RemoveCompletedDownloads` etc. as they came; ApplicationResource `SyncLevel`).
RESOURCE_ZERO: dict[str, dict[str, Any]] = {
    "downloadclient": {"enable": False, "protocol": "unknown", "priority": 0, "removeCompletedDownloads": False,
                       "removeFailedDownloads": False, "tags": []},
    "applications": {"syncLevel": "disabled", "tags": []},
    "indexerProxy": {"tags": []},
}  # fmt: skip
_FAKES = Path(__file__).resolve().parent / "fakes"
MASK = "********"  # SchemaBuilder.PRIVATE_VALUE


def _hash(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


@dataclass
class FakeArr(FakeApp):
    """Sonarr, Radarr (api /api/v3) or Prowlarr (/api/v1): root folders, providers and the host config."""

    name: str = "sonarr"  # which app's settings classes it uses
    api_key: str = ""
    api: str = "/api/v3"
    health: str = "/ping"
    collections: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
    refuse: str | None = None  # a validation message the next writes get
    unreachable: set[str] = field(default_factory=set)  # hosts its connection test on save cannot reach
    next_id: int = 1
    # HostConfigController: the one user (name lower-cased, password hashed) and the auth settings.
    host: dict[str, Any] = field(
        default_factory=lambda: {"id": 1, "bindAddress": "*", "port": 8989, "authenticationMethod": "none",
                                 "authenticationRequired": "enabled", "username": "", "password": "",
                                 "passwordConfirmation": "", "instanceName": "Sonarr", "logLevel": "info"}
    )  # fmt: skip

    def handle(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes) -> Answer:
        if headers.get("x-api-key") != self.api_key:
            return _text(401, "Unauthorized")
        rest = path.removeprefix(self.api + "/")
        if rest.startswith("config/host"):
            return self._host(method, json.loads(body) if body else {})
        parts = rest.split("/")
        items = self.collections.setdefault(parts[0], {})
        item_id = int(parts[1]) if len(parts) > 1 else None
        if parts[0] == "tag":
            return self._tag(method, items, item_id, json.loads(body) if body else {})
        if method == "GET" and item_id is None:
            return _json(200, [self._shown(parts[0], i) for i in items.values()])
        if method == "DELETE":
            return _json(200, {}) if items.pop(item_id or 0, None) is not None else _json(404, {"message": "NotFound"})
        if method not in ("POST", "PUT"):
            return _json(405, {"message": "Method not allowed"})
        sent = json.loads(body)
        if self.refuse:
            return _json(400, [{"propertyName": "Host", "errorMessage": self.refuse}])
        key = "path" if parts[0] == "rootfolder" else "name"
        if not sent.get(key):
            return _json(
                400, [{"propertyName": key.capitalize(), "errorMessage": f"'{key.capitalize()}' must not be empty."}]
            )
        # ProviderControllerBase: `p.Name.EqualsIgnoreCase(c) && p.Id != v.Id` -> "Should be unique".
        same = (lambda a, b: a.casefold() == b.casefold()) if key == "name" else (lambda a, b: a == b)
        if any(same(i[key], sent[key]) and i["id"] != item_id for i in items.values()):
            return _json(400, [{"propertyName": key.capitalize(), "errorMessage": "Should be unique"}])
        if parts[0] == "rootfolder":
            new = {"path": sent["path"], "accessible": True, "id": self.next_id}
            items[self.next_id] = new
            self.next_id += 1
            return _json(201, new)
        stored = items.get(item_id or 0) if method == "PUT" else None
        if method == "PUT" and stored is None:
            return _json(404, {"message": "NotFound"})
        item = self._read(parts[0], sent, stored)
        # Create tests an enabled provider; update tests it only when the definition changed; ?forceSave=true skips.
        changed = stored is None or {**item, "id": item_id} != stored
        tested = query.get("forceSave") != "true" and changed
        if parts[0] == "indexerProxy":
            # Prowlarr v2.1.5 ProviderControllerBase: CreateProvider tests an enabled definition even with
            # forceSave (which only lets warnings pass: VerifyValidationResult); UpdateProvider unless forceSave.
            tested = method == "POST" or query.get("forceSave") != "true"
        if self._enabled(parts[0], item) and tested:
            failure = self._test(parts[0], item)
            if failure:
                return _json(400, [failure])
        if method == "PUT":
            items[item_id or 0] = {**item, "id": item_id}
            return _json(202, self._shown(parts[0], items[item_id or 0]))
        items[self.next_id] = {**item, "id": self.next_id}
        self.next_id += 1
        return _json(201, self._shown(parts[0], items[self.next_id - 1]))

    def _schema(self, item: dict[str, Any]) -> dict[str, tuple[Any, str | None]]:
        return SETTINGS.get(f"{self.name}:{item.get('configContract')}", {})

    def _read(self, collection: str, sent: dict[str, Any], stored: dict[str, Any] | None) -> dict[str, Any]:
        """The provider as the app keeps it: the whole object replaced, unsent parts at their defaults."""
        item = {**RESOURCE_ZERO.get(collection, {}), **{k: v for k, v in sent.items() if k not in ("id", "fields")}}
        given = {f["name"]: f.get("value") for f in sent.get("fields") or []}
        kept = {f["name"]: f["value"] for f in (stored or {}).get("fields", [])}
        fields = []
        for name, (default, privacy) in self._schema(item).items():
            value = given.get(name, default)
            if privacy and value == MASK and stored is not None:
                value = kept.get(name)
            fields.append({"name": name, "value": value})
        item["fields"] = fields
        return item

    def _shown(self, collection: str, item: dict[str, Any]) -> dict[str, Any]:
        if collection == "rootfolder":
            return item
        schema = self._schema(item)
        masked = [
            {**f, "value": MASK} if schema.get(f["name"], (None, None))[1] and f["value"] not in (None, "") else f
            for f in item["fields"]
        ]
        return {**item, "fields": masked}

    @staticmethod
    def _enabled(collection: str, item: dict[str, Any]) -> bool:
        if collection == "applications":  # ApplicationDefinition.Enable: AddOnly or FullSync
            return item.get("syncLevel") in ("addOnly", "fullSync")
        if collection == "indexerProxy":  # IndexerProxyDefinition.Enable => Tags.Any()
            return bool(item.get("tags"))
        return bool(item.get("enable"))

    def _test(self, collection: str, item: dict[str, Any]) -> dict[str, str] | None:
        values = {f["name"]: f["value"] for f in item["fields"]}
        if collection == "indexerProxy":
            # FlareSolverr.Test asks https://prowlarr.servarr.com/v1/ping through the proxy: offline, it fails.
            return {"propertyName": "Host", "errorMessage": "Unable to connect to proxy: Name or service not known. "
                    "Check the log surrounding this error for details"}  # fmt: skip
        target = str(values.get("host") or urllib.parse.urlsplit(str(values.get("baseUrl"))).hostname)
        if target in self.unreachable:
            return {"propertyName": "Host" if "host" in values else "BaseUrl",
                    "errorMessage": f"Unable to connect to {item.get('implementation')}"}  # fmt: skip
        return None

    def _tag(self, method: str, tags: dict[int, dict[str, Any]], tag_id: int | None, sent: dict[str, Any]) -> Answer:
        """TagController and TagService (Prowlarr v2.1.5): labels lower-cased, Add returns an existing label's
        tag, Delete refuses a tag still in use."""
        if method == "GET":
            return _json(200, sorted(tags.values(), key=lambda t: t["label"]))
        if method == "POST":
            label = str(sent.get("label", "")).lower()
            found = next((t for t in tags.values() if t["label"] == label), None)
            if found is None:
                found = tags[self.next_id] = {"id": self.next_id, "label": label}
                self.next_id += 1
            return _json(201, found)
        if method == "DELETE":
            tag = tags.get(tag_id or 0)
            if tag is None:
                return _json(404, {"message": "NotFound"})
            if any(
                tag["id"] in i.get("tags", []) for c in self.collections.values() if c is not tags for i in c.values()
            ):
                return _json(409, {"message": f"'{tag['label']}' cannot be deleted since it's still in use"})
            del tags[tag["id"]]
            return _json(200, {})
        return _json(405, {"message": "Method not allowed"})

    def _host(self, method: str, sent: dict[str, Any]) -> Answer:
        if method == "GET":
            return _json(200, {**self.host, "passwordConfirmation": ""})
        if sent.get("authenticationMethod") in ("basic", "forms") and not (
            sent.get("username") and sent.get("password")
        ):
            return _json(400, [{"propertyName": "Username", "errorMessage": "'Username' must not be empty."}])
        # IsMatchingPassword: the stored hash sent back, or a password equal to its confirmation.
        if sent.get("password") != self.host["password"] and sent.get("password") != sent.get("passwordConfirmation"):
            return _json(400, [{"propertyName": "PasswordConfirmation", "errorMessage": "Must match Password"}])
        self.host.update({k: v for k, v in sent.items() if k in self.host and k not in ("username", "password")})
        if sent.get("username") and sent.get("password"):  # UserService.Upsert
            if sent["password"] != self.host["password"]:
                self.host["password"] = _hash(sent["password"])
            self.host["username"] = sent["username"].lower()
        return _json(202, {**self.host})

    def find(self, collection: str, key: str, value: Any) -> list[dict[str, Any]]:
        return [i for i in self.collections.get(collection, {}).values() if i.get(key) == value]

    def logs_in(self, username: str, password: str) -> bool:
        return self.host["authenticationMethod"] == "forms" and (username.lower(), _hash(password)) == (
            self.host["username"], self.host["password"])  # fmt: skip


@dataclass
class FakeQbittorrent(FakeApp):
    """qBittorrent 5.1.2 src/webui/api/{authcontroller,torrentscontroller,appcontroller}.cpp."""

    username: str = "admin"
    password: str = ""
    categories: dict[str, dict[str, Any]] = field(default_factory=dict)
    # SessionImpl: `DisableAutoTMMByDefault` true, so the preference auto_tmm_enabled starts false.
    preferences: dict[str, Any] = field(
        default_factory=lambda: {"auto_tmm_enabled": False, "save_path": "/data/torrents"}
    )
    sessions: set[str] = field(default_factory=set)

    def handle(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes) -> Answer:
        form = dict(urllib.parse.parse_qsl(body.decode()))
        if path == "/api/v2/auth/login":
            if form.get("username") == self.username and form.get("password") == self.password:
                sid = f"sid{len(self.sessions)}"
                self.sessions.add(sid)
                return _text(200, "Ok.", {"Set-Cookie": f"SID={sid}; HttpOnly; path=/"})
            return _text(200, "Fails.")
        cookie = headers.get("cookie", "")
        if not any(f"SID={s}" in cookie for s in self.sessions):
            return _text(403, "Forbidden")
        if path == "/api/v2/torrents/categories" and method == "GET":
            return _json(200, self.categories)
        if path == "/api/v2/torrents/createCategory" and method == "POST":
            name = form.get("category", "")
            if not name:
                return _text(409, "Incorrect category name")
            if name in self.categories:
                return _text(409, "Unable to create category")
            self.categories[name] = {"name": name, "savePath": form.get("savePath", "")}
            return _text(200, "")
        if path == "/api/v2/torrents/editCategory" and method == "POST":
            name = form.get("category", "")
            if not name:
                return _text(400, "Category cannot be empty")
            options: dict[str, Any] = {"name": name, "savePath": form.get("savePath", "")}
            if "downloadPathEnabled" in form:
                enabled = form["downloadPathEnabled"] == "true"
                options["download_path"] = form.get("downloadPath", "") if enabled else False
            # SessionImpl::editCategory returns false for an unknown category or unchanged options -> 409.
            if name not in self.categories or self.categories[name] == options:
                return _text(409, "Unable to edit category")
            self.categories[name] = options
            return _text(200, "")
        if path == "/api/v2/torrents/removeCategories" and method == "POST":
            for name in form.get("categories", "").split("\n"):
                self.categories.pop(name, None)
            return _text(200, "")
        if path == "/api/v2/app/preferences" and method == "GET":
            return _json(200, self.preferences)
        if path == "/api/v2/app/setPreferences" and method == "POST":
            changes = json.loads(form.get("json", "{}"))
            self.preferences.update({k: v for k, v in changes.items() if k in self.preferences})  # hasKey(...)
            return _text(200, "")
        return _text(404, "Not Found")


@dataclass
class FakeSabnzbd(FakeApp):
    """SABnzbd 4.5.3 sabnzbd/api.py (get_config, set_config, del_config); a POST body counts like the query."""

    api_key: str = ""
    health: str = "/api?mode=version"
    categories: dict[str, dict[str, Any]] = field(default_factory=lambda: {"*": {"name": "*", "dir": ""}})
    misc: dict[str, Any] = field(
        default_factory=lambda: {"username": "", "password": "", "complete_dir": "/data/usenet/complete"}
    )

    keys_in_url: int = 0  # requests that carried the API key in the URL (access logs, error texts)
    changes: list[tuple[str, str]] = field(default_factory=list)

    @property
    def writes(self) -> list[tuple[str, str]]:
        # Every call is a POST (the key travels in the body): a write is a call in a mode that changes config.
        return self.changes

    def handle(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes) -> Answer:
        if path != "/api":
            return _text(404, "Not Found")
        self.keys_in_url += "apikey" in query
        # CherryPy hands SABnzbd the URL's and a form body's arguments alike.
        query = {**query, **dict(urllib.parse.parse_qsl(body.decode()))}
        if query.get("apikey") != self.api_key:
            return _json(200, {"status": False, "error": "API Key Incorrect"})
        mode, section = query.get("mode"), query.get("section")
        if mode == "get_config" and section == "categories":
            return _json(200, {"config": {"categories": list(self.categories.values())}})
        if mode in ("set_config", "del_config"):
            self.changes.append((method, f"/api?mode={mode}"))
        if mode == "get_config" and section == "misc":  # OptionPassword.get_dict(for_public_api=True): stars
            return _json(
                200, {"config": {"misc": {**self.misc, "password": "*" * 10 if self.misc["password"] else ""}}}
            )
        if mode == "set_config" and section == "categories":
            name = query.get("keyword", "")
            self.categories[name] = {**self.categories.get(name, {}), "name": name, "dir": query.get("dir", "")}
            return _json(200, {"config": {"categories": [self.categories[name]]}})
        if mode == "set_config" and section == "misc":
            if query.get("keyword") not in self.misc:
                return _json(200, {"status": False, "error": "not implemented"})
            self.misc[query["keyword"]] = query.get("value", "")
            return _json(200, {"config": {"misc": {query["keyword"]: "*" * 10}}})
        if mode == "del_config" and section == "categories":
            return _json(200, {"status": self.categories.pop(query.get("keyword", ""), None) is not None})
        return _json(200, {"status": False, "error": "not implemented"})


@dataclass
class FakeBazarr(FakeApp):
    """Bazarr 1.5 bazarr/api/system/settings.py and bazarr/app/config.py save_settings (form fields
    `settings-<section>-<key>`; a new auth password is stored as its MD5 hex)."""

    api_key: str = ""
    health: str = "/api/system/ping"
    settings: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {"general": {"use_sonarr": False, "use_radarr": False}, "sonarr": {}, "radarr": {},
                                 "auth": {"type": None, "username": "", "password": ""}}
    )  # fmt: skip

    def handle(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes) -> Answer:
        if headers.get("x-api-key") != self.api_key:
            return _json(401, {"message": "Unauthorized"})
        if path != "/api/system/settings":
            return _text(404, "Not Found")
        if method == "GET":
            return _json(200, self.settings)
        for key, value in urllib.parse.parse_qsl(body.decode()):
            _, section, name = key.split("-", 2)  # settings-<section>-<key>, as Bazarr's save_settings reads it
            parsed: Any = {"true": True, "false": False}.get(value, value)
            if key == "settings-auth-password" and value != self.settings["auth"]["password"]:
                parsed = hashlib.md5(value.encode()).hexdigest()
            elif value.isdigit():
                parsed = int(value)
            self.settings.setdefault(section, {})[name] = parsed
        return _text(204, "")

    def logs_in(self, username: str, password: str) -> bool:
        auth = self.settings["auth"]
        return auth["type"] == "form" and (auth["username"], auth["password"]) == (
            username, hashlib.md5(password.encode()).hexdigest())  # fmt: skip


@dataclass
class FakeJellyfin(FakeApp):
    """Jellyfin 10.11.2 Jellyfin.Api/Controllers/StartupController.cs (anonymous until the wizard is complete:
    FirstTimeSetupHandler) and UserController AuthenticateByName (needs the MediaBrowser client header)."""

    health: str = "/health"
    wizard_completed: bool = False
    users: dict[str, str] = field(default_factory=dict)  # name -> password
    # What Seerr reads from it (FakeSeerr): its libraries ({key, title, type}) and the API keys made for apps.
    libraries: list[dict[str, str]] = field(default_factory=list)
    api_keys: list[str] = field(default_factory=list)

    def handle(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes) -> Answer:
        sent = json.loads(body) if body else {}
        if path == "/System/Info/Public" and method == "GET":
            return _json(200, {"Version": "10.11.2", "StartupWizardCompleted": self.wizard_completed})
        if path == "/Users/AuthenticateByName" and method == "POST":
            if not headers.get("authorization", "").startswith("MediaBrowser "):
                return _text(401, "Unauthorized")
            if self.users.get(sent.get("Username", "")) != sent.get("Pw") or not sent.get("Pw"):
                return _text(401, "Error processing request.")
            return _json(200, {"AccessToken": f"token-{sent['Username']}", "User": {"Name": sent["Username"]}})
        if path == "/Users/Password" and method == "POST":  # UserController.UpdateUserPassword, as the user
            token = headers.get("authorization", "").partition('Token="')[2].rstrip('"')
            name = token.removeprefix("token-")
            if not token or name not in self.users:
                return _text(401, "Unauthorized")
            if self.users[name] != sent.get("CurrentPw"):
                return _text(403, "Invalid user or password entered.")
            self.users[name] = sent.get("NewPw", "")
            return _text(204, "")
        if path.startswith("/Startup/"):
            if self.wizard_completed:
                return _text(401, "Unauthorized")
            if path == "/Startup/User" and method == "GET":
                if not self.users:  # UserManager.InitializeAsync makes the first user
                    self.users["root"] = ""
                return _json(200, {"Name": next(iter(self.users))})
            if path == "/Startup/User" and method == "POST":
                if not sent.get("Password", "").strip():
                    return _text(400, "Password must not be empty")
                first = next(iter(self.users))  # `_userManager.Users.First()`: fails without GET first
                del self.users[first]
                self.users[sent.get("Name") or first] = sent["Password"]
                return _text(204, "")
            if path == "/Startup/Complete" and method == "POST":
                self.wizard_completed = True
                return _text(204, "")
        return _text(404, "Not Found")


@dataclass
class FakeImmich(FakeApp):
    """Immich v2.2.3 server/src/controllers/auth.controller.ts and services/auth.service.ts."""

    health: str = "/api/server/ping"
    admin: dict[str, str] | None = None  # email, password, name

    def handle(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes) -> Answer:
        sent = json.loads(body) if body else {}
        if path == "/api/auth/admin-sign-up" and method == "POST":
            if self.admin is not None:
                return _json(
                    400, {"message": "The server already has an admin", "error": "Bad Request", "statusCode": 400}
                )
            if "@" not in sent.get("email", "") or not sent.get("password") or not sent.get("name"):
                return _json(400, {"message": ["email must be an email"], "error": "Bad Request", "statusCode": 400})
            self.admin = {"email": sent["email"], "password": sent["password"], "name": sent["name"]}
            return _json(201, {"email": sent["email"], "name": sent["name"], "isAdmin": True})
        if path == "/api/auth/login" and method == "POST":
            if self.admin is None or (self.admin["email"], self.admin["password"]) != (
                sent.get("email"),
                sent.get("password"),
            ):
                return _json(
                    401, {"message": "Incorrect email or password", "error": "Unauthorized", "statusCode": 401}
                )
            return _json(201, {"accessToken": "admin-token", "userEmail": sent["email"], "isAdmin": True})
        if path == "/api/auth/change-password" and method == "POST":
            if self.admin is None or headers.get("authorization") != "Bearer admin-token":
                return _json(401, {"message": "Authentication required", "statusCode": 401})
            if sent.get("password") != self.admin["password"]:
                return _json(400, {"message": "Wrong password", "statusCode": 400})
            self.admin["password"] = sent.get("newPassword", "")
            return _json(200, {"email": self.admin["email"]})
        return _json(404, {"message": f"Cannot {method} {path}", "error": "Not Found", "statusCode": 404})


@dataclass
class FakeSeerr(FakeApp):
    """Seerr v3.1.0 (seerr-team/seerr): server/routes/auth.ts (POST /auth/jellyfin, GET /auth/me),
    server/routes/index.ts (GET /settings/public; /settings/* for an admin only), server/middleware/auth.ts
    (X-Api-Key acts as user 1), server/routes/settings/index.ts (jellyfin/library, initialize) and
    server/routes/settings/{sonarr,radarr}.ts. Seerr reaches Jellyfin and the *arr apps by host name and port:
    `reaches` maps (host, port) to their stand-ins."""

    api_key: str = ""
    health: str = "/api/v1/status/appdata"
    reaches: dict[tuple[str, int], FakeApp] = field(default_factory=dict)
    users: list[dict[str, Any]] = field(default_factory=list)  # users[0] is user 1, the admin
    main: dict[str, Any] = field(default_factory=lambda: {"mediaServerType": 4, "mediaServerLogin": True,
                                                          "newPlexLogin": True})  # fmt: skip
    initialized: bool = False
    jellyfin: dict[str, Any] = field(default_factory=lambda: {"ip": "", "port": 8096, "apiKey": "", "libraries": []})
    servers: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {"sonarr": [], "radarr": []})
    sessions: dict[str, int] = field(default_factory=dict)  # connect.sid -> user id (express-session)

    def _user(self, headers: dict[str, str]) -> dict[str, Any] | None:
        """checkUser: the key acts as user 1; else the session's user."""
        if self.users and headers.get("x-api-key") == self.api_key:
            return self.users[0]
        cookie = headers.get("cookie", "")
        ids = [uid for sid, uid in self.sessions.items() if f"connect.sid={sid}" in cookie]
        return next((u for u in self.users if ids and u["id"] == ids[0]), None)

    def handle(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes) -> Answer:
        sent = json.loads(body) if body else {}
        rest = path.removeprefix("/api/v1")
        user = self._user(headers)
        if rest == "/settings/public" and method == "GET":
            return _json(200, {"initialized": self.initialized, "mediaServerType": self.main["mediaServerType"]})
        if rest == "/auth/jellyfin" and method == "POST":
            return self._login(sent)
        if rest == "/auth/me" and method == "GET":
            return _json(200, user) if user else self._forbidden()
        if not rest.startswith("/settings/"):
            return _json(404, {"message": "Not Found"})
        if user is None or "ADMIN" not in user["permissions"]:
            return self._forbidden()
        if rest == "/settings/main" and method == "GET":
            return _json(200, {**self.main, "apiKey": self.api_key})
        if rest == "/settings/main" and method == "POST":  # merge(settings.main, req.body)
            self.api_key = sent.pop("apiKey", self.api_key)
            self.main.update(sent)
            return _json(200, {**self.main, "apiKey": self.api_key})
        if rest == "/settings/jellyfin/library" and method == "GET":
            return self._libraries(query)
        if rest == "/settings/initialize" and method == "POST":
            self.initialized = True
            return _json(200, {"initialized": True})
        parts = rest.split("/")[2:]  # sonarr|radarr [, id|test]
        if parts and parts[0] in self.servers:
            return self._server(method, parts[0], parts[1:], sent)
        return _json(404, {"message": "Not Found"})

    @staticmethod
    def _forbidden() -> Answer:
        return _json(403, {"status": 403, "error": "You do not have permission to access this endpoint"})

    def _login(self, sent: dict[str, Any]) -> Answer:
        status, headers, body = self._log_in(sent)
        if status == 200:
            sid = f"s{len(self.sessions) + 1}"
            self.sessions[sid] = json.loads(body)["id"]
            headers = {**headers, "Set-Cookie": f"connect.sid={sid}; Path=/; HttpOnly"}
        return status, headers, body

    def _log_in(self, sent: dict[str, Any]) -> Answer:
        configured = self.main["mediaServerType"] != 4
        if not sent.get("username"):
            return _json(500, {"error": "You must provide an username"})
        if self.jellyfin["ip"] != "" and sent.get("hostname"):
            return _json(500, {"error": "Jellyfin hostname already configured"})
        if self.jellyfin["ip"] == "" and not sent.get("hostname"):
            return _json(500, {"error": "No hostname provided."})
        where = (self.jellyfin["ip"], self.jellyfin["port"]) if configured else (sent["hostname"], sent.get("port"))
        jellyfin = self.reaches.get(where)
        if not isinstance(jellyfin, FakeJellyfin):
            return _json(500, {"message": "InvalidUrl"})
        name, password = sent["username"], sent.get("password")
        if jellyfin.users.get(name) != password or not password:  # JellyfinAPI.login
            return _json(401, {"message": "InvalidCredentials"})
        user = next((u for u in self.users if u["jellyfinUsername"] == name), None)
        if (user is None and not self.users) or not configured:
            if sent.get("serverType") not in (2, 3):
                return _json(500, {"message": "NoAdminUser"})
            self.main["mediaServerType"] = sent["serverType"]
            admin = {"id": 1, "jellyfinUsername": name, "email": sent.get("email") or name, "permissions": ["ADMIN"]}
            self.users[:1] = [admin]
            jellyfin.api_keys.append("Seerr")  # createApiToken('Seerr'), on every setup
            self.jellyfin.update(ip=sent.get("hostname") or "", port=sent.get("port") or 8096, apiKey="jellyfin-key")
            return _json(200, admin)
        if user is not None:
            return _json(200, user)
        if not self.main["newPlexLogin"]:
            return _json(403, {"message": "Access denied."})
        made = {"id": len(self.users) + 1, "jellyfinUsername": name, "email": sent.get("email"), "permissions": []}
        self.users.append(made)
        return _json(200, made)

    def _libraries(self, query: dict[str, str]) -> Answer:
        if query.get("sync"):
            jellyfin = self.reaches.get((self.jellyfin["ip"], self.jellyfin["port"]))
            found = jellyfin.libraries if isinstance(jellyfin, FakeJellyfin) else []
            if not found:
                return _json(404, {"message": "SyncErrorNoLibraries"})
            known = {(lib["id"], lib["name"]): lib["enabled"] for lib in self.jellyfin["libraries"]}
            self.jellyfin["libraries"] = [
                {"id": lib["key"], "name": lib["title"], "enabled": known.get((lib["key"], lib["title"]), False),
                 "type": lib["type"]}
                for lib in found
            ]  # fmt: skip
        enabled = query["enable"].split(",") if query.get("enable") else []
        self.jellyfin["libraries"] = [{**lib, "enabled": lib["id"] in enabled} for lib in self.jellyfin["libraries"]]
        return _json(200, self.jellyfin["libraries"])

    @staticmethod
    def _clear_default(servers: list[dict[str, Any]], sent: dict[str, Any]) -> None:
        """A new default clears the other defaults of the same is4k."""
        if sent.get("isDefault"):
            for server in servers:
                if server.get("is4k") == sent.get("is4k"):
                    server["isDefault"] = False

    def _server(self, method: str, target: str, rest: list[str], sent: dict[str, Any]) -> Answer:
        servers = self.servers[target]
        if rest == ["test"] and method == "POST":
            arr = self.reaches.get((sent.get("hostname"), sent.get("port")))
            if not isinstance(arr, FakeArr) or sent.get("apiKey") != arr.api_key:
                return _json(500, {"message": f"Failed to connect to {target.capitalize()}"})
            profiles = list(arr.collections.get("qualityprofile", {}).values())
            folders = [{"id": f["id"], "path": f["path"]} for f in arr.collections.get("rootfolder", {}).values()]
            return _json(200, {"profiles": profiles, "rootFolders": folders, "tags": [], "urlBase": ""})
        if not rest and method == "GET":
            return _json(200, servers)
        if not rest and method == "POST":
            self._clear_default(servers, sent)
            new = {**sent, "id": servers[-1]["id"] + 1 if servers else 0}
            servers.append(new)
            return _json(201, new)
        index = next((i for i, s in enumerate(servers) if rest and str(s["id"]) == rest[0]), None)
        if index is None:
            return _json(404, {"status": "404", "message": "Settings instance not found"})
        if method == "PUT":
            self._clear_default(servers, sent)
            servers[index] = {**sent, "id": servers[index]["id"]}
            return _json(200, servers[index])
        if method == "DELETE":
            return _json(200, servers.pop(index))
        return _json(404, {"message": "Not Found"})


def _handler(route: Callable[[str], FakeApp | None]) -> type[BaseHTTPRequestHandler]:
    """A request handler that hands each request to the stand-in `route` picks by Host (None: Traefik's 404)."""

    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            app = route(headers.get("host", "").rsplit(":", 1)[0])
            if app is None:
                status, extra, payload = _text(404, "404 page not found")
            else:
                query = dict(urllib.parse.parse_qsl(url.query))
                status, extra, payload = app.answer(self.command, url.path, query, headers, body)
            self.send_response(status)
            for k, v in extra.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = _any

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def serve(app: FakeApp) -> Iterator[str]:
    """Serve the stand-in on a loopback port; yields its base URL."""
    with loopback(_handler(lambda _host: app)) as url:
        yield url


@contextmanager
def traefik(routes: dict[str, FakeApp]) -> Iterator[int]:
    """A stand-in of Traefik: HTTPS on a loopback port (a self-signed certificate, as Traefik serves without
    ACME), routing by host name to the stand-ins; a host without a router gets Traefik's 404. Yields the port.
    The certificate is a fixed test one in tests/fakes (made once by `openssl req -x509 -days 36500`), so the
    stand-in needs no openssl on the machine; clients do not verify it, as with Traefik's own default."""
    key, cert = _FAKES / "traefik-default.key", _FAKES / "traefik-default.crt"
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(routes.get))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def loopback(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A threaded HTTP server on a free loopback port for the test's handler; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
