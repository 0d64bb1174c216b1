"""Loopback stand-ins for the apps the pipeline wiring talks to, speaking their documented APIs and keeping state.

Each stand-in answers like its app: Sonarr/Radarr (`/api/v3`) and Prowlarr (`/api/v1`) collections with
`X-Api-Key` and *arr-style validation errors, qBittorrent's WebUI API v2 with a cookie login, SABnzbd's
`/api?mode=...` with its `apikey` parameter, Bazarr's `/api/system/settings` with `X-API-KEY`. Knobs make
an app not ready for its first requests (503, as Traefik answers for a container that is still starting)
or refuse a write the way the app does.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Answer = tuple[int, dict[str, str], bytes]


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Answer:
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(body).encode()


def _text(status: int, body: str, headers: dict[str, str] | None = None) -> Answer:
    return status, {"Content-Type": "text/plain", **(headers or {})}, body.encode()


@dataclass
class FakeApp:
    not_ready_for: int = 0  # the first N requests get 503
    requests: list[tuple[str, str]] = field(default_factory=list)

    def answer(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes) -> Answer:
        self.requests.append((method, path))
        if self.not_ready_for > 0:
            self.not_ready_for -= 1
            return _text(503, "Service Unavailable")
        return self.handle(method, path, query, headers, body)

    def handle(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes) -> Answer:
        raise NotImplementedError

    @property
    def writes(self) -> list[tuple[str, str]]:
        return [r for r in self.requests if r[0] != "GET" and not r[1].endswith("/auth/login")]


@dataclass
class FakeArr(FakeApp):
    """Sonarr, Radarr (api /api/v3) or Prowlarr (/api/v1): id-keyed collections."""

    api_key: str = ""
    api: str = "/api/v3"
    collections: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
    refuse: str | None = None  # a validation message the next writes get, as when the app cannot reach a client
    next_id: int = 1

    def handle(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes) -> Answer:
        if headers.get("x-api-key") != self.api_key:
            return _text(401, "Unauthorized")
        parts = path.removeprefix(self.api + "/").split("/")
        items = self.collections.setdefault(parts[0], {})
        item_id = int(parts[1]) if len(parts) > 1 else None
        if method == "GET" and item_id is None:
            return _json(200, list(items.values()))
        if method == "DELETE":
            return _json(200, {}) if items.pop(item_id or 0, None) is not None else _json(404, {"message": "NotFound"})
        if method in ("POST", "PUT"):
            item = json.loads(body)
            if self.refuse:
                return _json(400, [{"propertyName": "Host", "errorMessage": self.refuse}])
            key = "path" if parts[0] == "rootfolder" else "name"
            if not item.get(key):
                return _json(400, [{"propertyName": key.capitalize(), "errorMessage": f"'{key}' must not be empty."}])
            clash = [i for i in items.values() if i[key] == item[key] and i["id"] != item_id]
            if clash:
                return _json(400, [{"propertyName": key.capitalize(), "errorMessage": "Should be unique"}])
            if method == "PUT":
                if item_id not in items:
                    return _json(404, {"message": "NotFound"})
                items[item_id] = {**item, "id": item_id}
                return _json(202, items[item_id])
            new = {**item, "id": self.next_id}
            if parts[0] == "rootfolder":
                new["accessible"] = True  # what the app adds of its own
            items[self.next_id] = new
            self.next_id += 1
            return _json(201, new)
        return _json(405, {"message": "Method not allowed"})

    def find(self, collection: str, key: str, value: Any) -> list[dict[str, Any]]:
        return [i for i in self.collections.get(collection, {}).values() if i.get(key) == value]


@dataclass
class FakeQbittorrent(FakeApp):
    username: str = "admin"
    password: str = ""
    categories: dict[str, dict[str, str]] = field(default_factory=dict)
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
        if path in ("/api/v2/torrents/createCategory", "/api/v2/torrents/editCategory") and method == "POST":
            name = form.get("category", "")
            exists = name in self.categories
            if not name or exists == path.endswith("createCategory"):
                return _text(409, "Category name is invalid" if not name else "Category already exists")
            self.categories[name] = {"name": name, "savePath": form.get("savePath", "")}
            return _text(200, "")
        if path == "/api/v2/torrents/removeCategories" and method == "POST":
            for name in form.get("categories", "").split("\n"):
                self.categories.pop(name, None)
            return _text(200, "")
        return _text(404, "Not Found")


@dataclass
class FakeSabnzbd(FakeApp):
    api_key: str = ""
    categories: dict[str, dict[str, Any]] = field(default_factory=lambda: {"*": {"name": "*", "dir": ""}})

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
        if mode == "set_config" and section == "categories":
            name = query.get("keyword", "")
            self.categories[name] = {**self.categories.get(name, {}), "name": name, "dir": query.get("dir", "")}
            return _json(200, {"config": {"categories": [self.categories[name]]}})
        if mode == "del_config" and section == "categories":
            return _json(200, {"status": self.categories.pop(query.get("keyword", ""), None) is not None})
        return _json(200, {"status": False, "error": "not implemented"})


@dataclass
class FakeBazarr(FakeApp):
    api_key: str = ""
    settings: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {"general": {"use_sonarr": False, "use_radarr": False}, "sonarr": {}, "radarr": {}}
    )

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
            self.settings.setdefault(section, {})[name] = int(value) if value.isdigit() else parsed
        return _text(204, "")


@contextmanager
def serve(app: FakeApp) -> Iterator[str]:
    """Serve the stand-in on a loopback port; yields its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, extra, payload = app.answer(
                self.command, url.path, dict(urllib.parse.parse_qsl(url.query)), headers, body
            )
            self.send_response(status)
            for k, v in extra.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = _any

        def log_message(self, *args: Any) -> None:
            pass

    with loopback(Handler) as url:
        yield url


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
