"""The apps' own HTTP APIs, as the deploy-time wiring uses them: wait, read, create, update, delete.

Plain Python over httpx, with no Pulumi in it, so it runs in the dynamic provider and in tests alike.
Every call waits for an app that is not up yet (connection refused, 502/503/504 from Traefik) with
bounded retries and backoff; anything else the app answers that is not a success ends the call with a
`WiringError` that names the app, what was asked and what it answered.

What each kind of wiring does (its `props` are the resource's inputs, all plain JSON):
- `arr_item`: an item of an *arr collection (Sonarr/Radarr `/api/v3/rootfolder`, `/api/v3/downloadclient`,
  Prowlarr `/api/v1/applications`), found by its natural key (a root folder's path, a client's name),
  adopted when it already exists, updated in place, deleted by id.
- `qbittorrent_category`: a qBittorrent category and its save path (WebUI API v2, cookie login).
- `sabnzbd_category`: a SABnzbd category and its folder (`/api?mode=get_config|set_config|del_config`).
- `bazarr_arr`: Bazarr's connection to Sonarr or Radarr (`/api/system/settings`, form fields).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

NOT_READY = frozenset({502, 503, 504})


class WiringError(Exception):
    """The app refused or could not be reached in time; the message says which and what it answered."""


@dataclass(frozen=True)
class Retry:
    attempts: int = 40
    first_delay_s: float = 1.0
    max_delay_s: float = 10.0
    timeout_s: float = 15.0

    @staticmethod
    def from_props(props: Mapping[str, Any]) -> Retry:
        raw = props.get("retry") or {}
        return Retry(**{k: raw[k] for k in ("attempts", "first_delay_s", "max_delay_s", "timeout_s") if k in raw})


def _answer(response: httpx.Response) -> str:
    """A short account of a refusal: *arr validation messages when there are some, else the body."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, list) and body and all(isinstance(i, dict) for i in body):
        messages = [f"{i.get('propertyName') or 'request'}: {i.get('errorMessage')}" for i in body]
        return "; ".join(messages)
    if isinstance(body, dict) and ("message" in body or "error" in body):
        return str(body.get("message") or body.get("error"))
    text = response.text.strip().replace("\n", " ")
    return text[:200] or "(empty body)"


class AppClient:
    """One app's API at one base URL, with its authentication and the wiring's retry policy."""

    def __init__(
        self,
        app: str,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        verify_tls: bool = True,
        retry: Retry | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.app = app
        self.base_url = base_url.rstrip("/")
        self.retry = retry or Retry()
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=dict(headers or {}),
            verify=verify_tls,
            timeout=self.retry.timeout_s,
            follow_redirects=False,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AppClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, *, ok: tuple[int, ...] = (), **kwargs: Any) -> httpx.Response:
        """The response to a call, once the app is up; raises WiringError for anything but success or `ok`."""
        delay = self.retry.first_delay_s
        last = ""
        for attempt in range(1, self.retry.attempts + 1):
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as error:
                last = f"no answer ({type(error).__name__}: {error})"
            else:
                if response.status_code not in NOT_READY:
                    return self._checked(method, path, response, ok)
                last = f"HTTP {response.status_code} (not ready)"
            if attempt < self.retry.attempts:
                self._sleep(delay)
                delay = min(delay * 2, self.retry.max_delay_s)
        raise WiringError(
            f"{self.app} at {self.base_url} was not ready after {self.retry.attempts} attempts: {last}; "
            f"check that the {self.app} container is running and healthy and that its URL is right"
        )

    def _checked(self, method: str, path: str, response: httpx.Response, ok: tuple[int, ...]) -> httpx.Response:
        status = response.status_code
        if status < 300 or status in ok:
            return response
        if status in (401, 403):
            raise WiringError(
                f"{self.app} at {self.base_url} refused the stack's credentials for {method} {path} "
                f"(HTTP {status}: {_answer(response)}); the app's API key or password is not the one the stack "
                f"generated: see docs/pipeline.md (keys) or set mediastack:wiring.enabled to false"
            )
        raise WiringError(f"{self.app} refused {method} {path} (HTTP {status}): {_answer(response)}")

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise WiringError(
                f"{self.app} answered {method} {path} with something that is not JSON: {_answer(response)}; "
                f"is {self.base_url} really {self.app}?"
            ) from None


# -- the kinds of wiring ----------------------------------------------------------------------------


class Kind:
    """One kind of wiring: `apply` makes the app match `props` and returns the item's id."""

    # Inputs whose change means a different item (delete the old one, create the new one).
    replace_on: tuple[str, ...] = ()

    def client(self, props: Mapping[str, Any]) -> AppClient:
        raise NotImplementedError

    def replaces(self, olds: Mapping[str, Any], news: Mapping[str, Any]) -> list[str]:
        """The changed inputs that make the new item another item than the old one."""
        return [k for k in ("kind", *self.replace_on) if olds.get(k) != news.get(k)]

    def apply(self, props: Mapping[str, Any], current_id: str | None) -> str:
        raise NotImplementedError

    def remove(self, props: Mapping[str, Any], item_id: str) -> None:
        raise NotImplementedError

    def exists(self, props: Mapping[str, Any], item_id: str) -> bool:
        """Whether the app still has the item (`pulumi refresh` notices one removed by hand)."""
        raise NotImplementedError


def _client(props: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> AppClient:
    return AppClient(
        props["app"],
        props["url"],
        headers=headers,
        verify_tls=bool(props.get("verify_tls", True)),
        retry=Retry.from_props(props),
    )


class ArrItem(Kind):
    """props: app, url, api_key, api (/api/v3), collection (rootfolder), key (path|name), body."""

    replace_on = ("app", "url", "api", "collection", "key")

    def client(self, props: Mapping[str, Any]) -> AppClient:
        return _client(props, {"X-Api-Key": props["api_key"]})

    def replaces(self, olds: Mapping[str, Any], news: Mapping[str, Any]) -> list[str]:
        found = super().replaces(olds, news)
        key = news["key"]
        if (olds.get("body") or {}).get(key) != news["body"].get(key):
            found.append("body")  # another path or name: another item
        return found

    def _find(self, api: AppClient, props: Mapping[str, Any]) -> dict[str, Any] | None:
        items = api.json("GET", f"{props['api']}/{props['collection']}")
        wanted = props["body"][props["key"]]
        return next((i for i in items if isinstance(i, dict) and i.get(props["key"]) == wanted), None)

    def apply(self, props: Mapping[str, Any], current_id: str | None) -> str:
        base = f"{props['api']}/{props['collection']}"
        with self.client(props) as api:
            existing = self._find(api, props)
            if existing is None:
                created = api.json("POST", base, json=props["body"])
                return str(created["id"])
            if props["collection"] == "rootfolder":
                return str(existing["id"])  # a root folder is its path: nothing to update
            body = {**existing, **props["body"], "id": existing["id"]}
            api.json("PUT", f"{base}/{existing['id']}", json=body)
            return str(existing["id"])

    def remove(self, props: Mapping[str, Any], item_id: str) -> None:
        with self.client(props) as api:
            api.request("DELETE", f"{props['api']}/{props['collection']}/{item_id}", ok=(404,))

    def exists(self, props: Mapping[str, Any], item_id: str) -> bool:
        with self.client(props) as api:
            items = api.json("GET", f"{props['api']}/{props['collection']}")
        return any(isinstance(i, dict) and str(i.get("id")) == item_id for i in items)


class QbittorrentCategory(Kind):
    """props: app, url, username, password, name, save_path."""

    replace_on = ("app", "url", "name")

    def client(self, props: Mapping[str, Any]) -> AppClient:
        api = _client(props)
        answer = api.request(
            "POST", "/api/v2/auth/login", data={"username": props["username"], "password": props["password"]}
        )
        if answer.text.strip() != "Ok.":
            api.close()
            raise WiringError(
                f"{props['app']} at {props['url']} refused the stack's login for user {props['username']} "
                f"(answered {answer.text.strip()[:60]!r}); its password is not the one the stack generated: "
                "see docs/pipeline.md (keys) or set mediastack:wiring.enabled to false"
            )
        return api

    def apply(self, props: Mapping[str, Any], current_id: str | None) -> str:
        with self.client(props) as api:
            categories = api.json("GET", "/api/v2/torrents/categories")
            action = "editCategory" if props["name"] in categories else "createCategory"
            api.request(
                "POST", f"/api/v2/torrents/{action}", data={"category": props["name"], "savePath": props["save_path"]}
            )
        return props["name"]

    def remove(self, props: Mapping[str, Any], item_id: str) -> None:
        with self.client(props) as api:
            api.request("POST", "/api/v2/torrents/removeCategories", data={"categories": item_id})

    def exists(self, props: Mapping[str, Any], item_id: str) -> bool:
        with self.client(props) as api:
            return item_id in api.json("GET", "/api/v2/torrents/categories")


class SabnzbdCategory(Kind):
    """props: app, url, api_key, name, dir (relative to SABnzbd's complete folder)."""

    replace_on = ("app", "url", "name")

    def client(self, props: Mapping[str, Any]) -> AppClient:
        return _client(props)

    def _call(self, api: AppClient, props: Mapping[str, Any], **params: str) -> Any:
        # A form body, not the URL: the key stays out of access logs and error texts. SABnzbd reads the API's
        # arguments from either (CherryPy's kwargs; sabnzbd/interface.py check_apikey, 4.5).
        answer = api.json("POST", "/api", data={**params, "apikey": props["api_key"], "output": "json"})
        if isinstance(answer, dict) and answer.get("status") is False:
            error = str(answer.get("error", "refused"))
            if "api key" in error.lower():
                raise WiringError(
                    f"{props['app']} at {props['url']} refused the stack's API key ({error}); its key is not the one "
                    "the stack generated: see docs/pipeline.md (keys) or set mediastack:wiring.enabled to false"
                )
            raise WiringError(f"{props['app']} refused mode={params.get('mode')}: {error}")
        return answer

    def _category(self, api: AppClient, props: Mapping[str, Any], name: str) -> dict[str, Any] | None:
        config = self._call(api, props, mode="get_config", section="categories")
        listed = (config.get("config") or {}).get("categories") or []
        return next((c for c in listed if isinstance(c, dict) and c.get("name") == name), None)

    def apply(self, props: Mapping[str, Any], current_id: str | None) -> str:
        with self.client(props) as api:
            current = self._category(api, props, props["name"])
            if current is None or current.get("dir") != props["dir"]:
                self._call(api, props, mode="set_config", section="categories", keyword=props["name"], dir=props["dir"])
        return props["name"]

    def remove(self, props: Mapping[str, Any], item_id: str) -> None:
        with self.client(props) as api:
            self._call(api, props, mode="del_config", section="categories", keyword=item_id)

    def exists(self, props: Mapping[str, Any], item_id: str) -> bool:
        with self.client(props) as api:
            return self._category(api, props, item_id) is not None


class BazarrArr(Kind):
    """props: app, url, api_key, target (sonarr|radarr), settings ({ip, port, apikey, base_url, ssl})."""

    replace_on = ("app", "url", "target")

    def client(self, props: Mapping[str, Any]) -> AppClient:
        return _client(props, {"X-API-KEY": props["api_key"]})

    def _post(self, props: Mapping[str, Any], enabled: bool, settings: Mapping[str, Any]) -> None:
        target = props["target"]
        form = {f"settings-general-use_{target}": "true" if enabled else "false"}
        for key, value in settings.items():
            form[f"settings-{target}-{key}"] = ("true" if value else "false") if isinstance(value, bool) else str(value)
        with self.client(props) as api:
            api.request("POST", "/api/system/settings", data=form)

    def _settings(self, props: Mapping[str, Any]) -> dict[str, Any]:
        with self.client(props) as api:
            return api.json("GET", "/api/system/settings")

    def apply(self, props: Mapping[str, Any], current_id: str | None) -> str:
        target, wanted = props["target"], props["settings"]
        current = self._settings(props)
        have = current.get(target) or {}
        same = all(str(have.get(k)).lower() == str(v).lower() for k, v in wanted.items())
        if not (same and (current.get("general") or {}).get(f"use_{target}") is True):
            self._post(props, True, wanted)  # saving makes Bazarr resync: only when something differs
        return target

    def remove(self, props: Mapping[str, Any], item_id: str) -> None:
        self._post(props, False, {})

    def exists(self, props: Mapping[str, Any], item_id: str) -> bool:
        return (self._settings(props).get("general") or {}).get(f"use_{item_id}") is True


KINDS: dict[str, Kind] = {
    "arr_item": ArrItem(),
    "qbittorrent_category": QbittorrentCategory(),
    "sabnzbd_category": SabnzbdCategory(),
    "bazarr_arr": BazarrArr(),
}
