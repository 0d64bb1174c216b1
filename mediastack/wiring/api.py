"""The apps' own HTTP APIs, as the deploy-time wiring uses them: wait, read, create, update, delete.

Plain Python over httpx, with no Pulumi in it, so it runs in the dynamic provider and in tests alike.
Before its first call to an app, a wiring polls the app's own health path (the one its container's
health check uses) until it answers: Traefik has no router for a container until its first health check
passes and answers 404 meanwhile, so there a 404 means "not routed yet", like connection refused and
502/503/504. Every call after that still retries 502/503/504 and connection errors (bounded, with
backoff); anything else the app answers that is not a success ends the call with a `WiringError` that
names the app, what was asked and what it answered.

What each kind of wiring does (its `props` are the resource's inputs, all plain JSON):
- `arr_item`: an item of an *arr collection (Sonarr/Radarr `/api/v3/rootfolder`, `/api/v3/downloadclient`,
  Prowlarr `/api/v1/applications`), found by its natural key (a root folder's path; a client's name,
  ignoring case as the apps do), adopted when it already exists, updated in place, deleted by id. Only
  the fields in `body` are the stack's: an update or adoption puts them over the item read back, so the
  user's own settings survive (the apps replace the whole item on PUT). `defaults` are sent on create only.
- `qbittorrent_category`: a qBittorrent category and its save path (WebUI API v2, cookie login).
- `qbittorrent_preferences`: qBittorrent preferences the pipeline needs (automatic torrent management).
- `sabnzbd_category`: a SABnzbd category and its folder (`/api?mode=get_config|set_config|del_config`).
- `bazarr_arr`: Bazarr's connection to Sonarr or Radarr (`/api/system/settings`, form fields).
- `arr_login`: Forms login for Sonarr, Radarr or Prowlarr (`/api/v{1,3}/config/host`).
- `sabnzbd_login`, `bazarr_login`: SABnzbd's and Bazarr's own web login (also seeded before their first start).
- `jellyfin_admin`: Jellyfin's startup wizard, run with the stack's admin user.
- `immich_admin`: Immich's first admin (`/api/auth/admin-sign-up`).

An app's URL (and how its TLS is checked) says how Pulumi reaches the app, not which item it holds:
changing it calls nothing in the app.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

NOT_READY = frozenset({502, 503, 504})
# Traefik answers 404 for a host it has no router for: a container whose health check has not passed yet.
NOT_ROUTED = 404


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


def _not_ready(response: httpx.Response, path: str) -> str | None:
    """Why an answer means the app is still starting (a call is retried), or None."""
    return f"HTTP {response.status_code} (not ready)" if response.status_code in NOT_READY else None


def _not_routed_or_ready(response: httpx.Response, path: str) -> str | None:
    """As _not_ready, and also the proxy's 404 for a route it does not have yet (only for a health path)."""
    if response.status_code == NOT_ROUTED:
        return f"HTTP {NOT_ROUTED} for {path} (not routed yet)"
    return None if response.status_code not in NOT_READY else f"HTTP {response.status_code} for {path} (not ready)"


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
        response = self._answered(method, path, _not_ready, **kwargs)
        return self._checked(method, path, response, ok)

    def wait_ready(self, health_path: str) -> None:
        """Polls the app's own health path through the proxy until it answers (bounded like every call)."""
        self._answered("GET", health_path, _not_routed_or_ready)

    def _answered(
        self, method: str, path: str, waiting: Callable[[httpx.Response, str], str | None], **kwargs: Any
    ) -> httpx.Response:
        """The first response `waiting` does not call a wait, retried with backoff within the retry policy."""
        delay = self.retry.first_delay_s
        last = ""
        for attempt in range(1, self.retry.attempts + 1):
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as error:
                last = f"no answer ({type(error).__name__}: {error})"
            else:
                reason = waiting(response, path)
                if reason is None:
                    return response
                last = reason
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
    api = AppClient(
        props["app"],
        props["url"],
        headers=headers,
        verify_tls=bool(props.get("verify_tls", True)),
        retry=Retry.from_props(props),
    )
    if props.get("health"):  # absent from the state of wirings made before the wait existed
        try:
            api.wait_ready(props["health"])
        except BaseException:
            api.close()
            raise
    return api


def _same_key(key: str, have: Any, wanted: Any) -> bool:
    """Whether an item's natural key matches: names ignore case (the apps' "Should be unique" rule,
    ProviderControllerBase: `p.Name.EqualsIgnoreCase(c)`); paths ignore a trailing slash."""
    if not isinstance(have, str) or not isinstance(wanted, str):
        return False
    if key == "name":
        return have.casefold() == wanted.casefold()
    return have.rstrip("/") == wanted.rstrip("/")


def _fields_over(base: list[Any], over: list[Any]) -> list[Any]:
    """Provider fields (`[{name, value}, ...]`): `over`'s values replace `base`'s by name, the rest stay
    (a secret the app masks as ******** stays masked, and the app keeps its stored value)."""
    wanted = {f["name"]: f["value"] for f in over}
    merged = [{**f, "value": wanted.pop(f["name"])} if f.get("name") in wanted else f for f in base]
    return merged + [{"name": k, "value": v} for k, v in wanted.items()]


def merge_over(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`over`'s top-level keys and fields put over `base`: what the stack owns over what the app holds."""
    merged = {**base, **{k: v for k, v in over.items() if k != "fields"}}
    if "fields" in over:
        merged["fields"] = _fields_over(list(base.get("fields") or []), list(over["fields"]))
    return merged


class ArrItem(Kind):
    """props: app, url, api_key, api (/api/v3), collection (rootfolder), key (path|name), body (the fields the
    stack owns), defaults (sent on create only: the user may change them)."""

    replace_on: tuple[str, ...] = ("app", "api", "collection", "key")

    def client(self, props: Mapping[str, Any]) -> AppClient:
        return _client(props, {"X-Api-Key": props["api_key"]})

    def replaces(self, olds: Mapping[str, Any], news: Mapping[str, Any]) -> list[str]:
        found = super().replaces(olds, news)
        key = news["key"]
        if not _same_key(key, (olds.get("body") or {}).get(key), news["body"].get(key)):
            found.append("body")  # another path or name: another item
        return found

    def _find(self, api: AppClient, props: Mapping[str, Any]) -> dict[str, Any] | None:
        items = api.json("GET", f"{props['api']}/{props['collection']}")
        key, wanted = props["key"], props["body"][props["key"]]
        return next((i for i in items if isinstance(i, dict) and _same_key(key, i.get(key), wanted)), None)

    def apply(self, props: Mapping[str, Any], current_id: str | None) -> str:
        base = f"{props['api']}/{props['collection']}"
        with self.client(props) as api:
            existing = self._find(api, props)
            if existing is None:
                created = api.json("POST", base, json=merge_over(props.get("defaults") or {}, props["body"]))
                return str(created["id"])
            if props["collection"] == "rootfolder":
                return str(existing["id"])  # a root folder is its path: nothing to update
            # The item keeps its own name spelling (the apps match names ignoring case) and everything the
            # stack does not own; the apps replace the whole item on PUT, so the PUT carries all of it.
            body = {**merge_over(existing, props["body"]), "id": existing["id"], "name": existing["name"]}
            if body != existing:
                api.json("PUT", f"{base}/{existing['id']}", json=body)
            return str(existing["id"])

    def remove(self, props: Mapping[str, Any], item_id: str) -> None:
        with self.client(props) as api:
            api.request("DELETE", f"{props['api']}/{props['collection']}/{item_id}", ok=(404,))

    def exists(self, props: Mapping[str, Any], item_id: str) -> bool:
        with self.client(props) as api:
            items = api.json("GET", f"{props['api']}/{props['collection']}")
        return any(isinstance(i, dict) and str(i.get("id")) == item_id for i in items)


class _QbittorrentLogin(Kind):
    """qBittorrent's WebUI API v2 behind its cookie login."""

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


class QbittorrentCategory(_QbittorrentLogin):
    """props: app, url, username, password, name, save_path."""

    replace_on: tuple[str, ...] = ("app", "name")

    def apply(self, props: Mapping[str, Any], current_id: str | None) -> str:
        with self.client(props) as api:
            categories = api.json("GET", "/api/v2/torrents/categories")
            current = categories.get(props["name"])
            form = {"category": props["name"], "savePath": props["save_path"]}
            if current is None:
                api.request("POST", "/api/v2/torrents/createCategory", data=form)
            elif current.get("savePath") != props["save_path"]:
                # editCategory answers 409 when nothing changes (SessionImpl::editCategory returns false for
                # equal options), so it is only called for a new save path; the user's download path stays.
                kept = current.get("download_path")
                if kept is not None:
                    form["downloadPathEnabled"] = "false" if kept is False else "true"
                    form["downloadPath"] = "" if kept is False else str(kept)
                api.request("POST", "/api/v2/torrents/editCategory", data=form)
        return props["name"]

    def remove(self, props: Mapping[str, Any], item_id: str) -> None:
        with self.client(props) as api:
            api.request("POST", "/api/v2/torrents/removeCategories", data={"categories": item_id})

    def exists(self, props: Mapping[str, Any], item_id: str) -> bool:
        with self.client(props) as api:
            return item_id in api.json("GET", "/api/v2/torrents/categories")


class QbittorrentPreferences(_QbittorrentLogin):
    """props: app, url, username, password, preferences ({key: value} as /api/v2/app/preferences names them).

    Only the keys that differ are set (setPreferences changes only the keys it is given). Deleting the
    wiring leaves the preferences as they are: they are the client's settings, and turning automatic
    torrent management off again would scatter the next downloads."""

    replace_on = ("app",)

    def _differing(self, api: AppClient, wanted: Mapping[str, Any]) -> dict[str, Any]:
        current = api.json("GET", "/api/v2/app/preferences")
        return {k: v for k, v in wanted.items() if current.get(k) != v}

    def apply(self, props: Mapping[str, Any], current_id: str | None) -> str:
        with self.client(props) as api:
            differing = self._differing(api, props["preferences"])
            if differing:
                api.request("POST", "/api/v2/app/setPreferences", data={"json": json.dumps(differing)})
        return "preferences"

    def remove(self, props: Mapping[str, Any], item_id: str) -> None:
        pass

    def exists(self, props: Mapping[str, Any], item_id: str) -> bool:
        with self.client(props) as api:
            return not self._differing(api, props["preferences"])


class SabnzbdCategory(Kind):
    """props: app, url, api_key, name, dir (relative to SABnzbd's complete folder)."""

    replace_on: tuple[str, ...] = ("app", "name")

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

    replace_on: tuple[str, ...] = ("app", "target")

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


# -- logins ------------------------------------------------------------------------------------------
# A login outlives its wiring: deleting one leaves the app's account and its login as they are (deleting
# them would open the app to the first visitor again).

EXISTING = "existing"  # an app that already had its own admin: adopted as it is, its password not the stack's


class ArrLogin(Kind):
    """props: app, url, api_key, api (/api/v3 or /api/v1), username, password.

    Sonarr/Radarr/Prowlarr keep their one user in their database and the method in config.xml; both are
    set by PUT <api>/config/host (HostConfigController.SaveHostConfig: the whole resource is saved, then
    `_userService.Upsert(username, password)`), so the host config read back carries everything else.
    "enabled" (not "disabledForLocalAddresses"): behind Traefik every visitor comes from a local address."""

    replace_on = ("app", "api")

    def client(self, props: Mapping[str, Any]) -> AppClient:
        return _client(props, {"X-Api-Key": props["api_key"]})

    def apply(self, props: Mapping[str, Any], current_id: str | None) -> str:
        with self.client(props) as api:
            host = api.json("GET", f"{props['api']}/config/host")
            wanted = {
                "authenticationMethod": "forms", "authenticationRequired": "enabled",
                "username": props["username"], "password": props["password"],
                "passwordConfirmation": props["password"],
            }  # fmt: skip
            api.json("PUT", f"{props['api']}/config/host/{host.get('id', 1)}", json={**host, **wanted})
        return props["username"]

    def remove(self, props: Mapping[str, Any], item_id: str) -> None:
        pass

    def exists(self, props: Mapping[str, Any], item_id: str) -> bool:
        with self.client(props) as api:
            host = api.json("GET", f"{props['api']}/config/host")
        # The apps store the user name in lower case (UserService.Upsert).
        return host.get("authenticationMethod") == "forms" and host.get("username") == str(item_id).lower()


class SabnzbdLogin(SabnzbdCategory):
    """props: app, url, api_key, username, password: SABnzbd's web login (`[misc] username`/`password`,
    sabnzbd/cfg.py; neither is `protect`ed, so `mode=set_config&section=misc` sets them). The password
    goes in the POST body, not the URL. get_config shows a set password as stars."""

    replace_on = ("app",)

    def _misc(self, api: AppClient, props: Mapping[str, Any]) -> dict[str, Any]:
        return (self._call(api, props, mode="get_config", section="misc").get("config") or {}).get("misc") or {}

    def apply(self, props: Mapping[str, Any], current_id: str | None) -> str:
        with self.client(props) as api:
            self._call(api, props, mode="set_config", section="misc", keyword="username", value=props["username"])
            answer = api.json(
                "POST", "/api", data={"mode": "set_config", "section": "misc", "keyword": "password",
                                      "value": props["password"], "apikey": props["api_key"], "output": "json"},
            )  # fmt: skip
            if isinstance(answer, dict) and answer.get("status") is False:
                raise WiringError(f"{props['app']} refused its password: {answer.get('error', 'refused')}")
        return props["username"]

    def remove(self, props: Mapping[str, Any], item_id: str) -> None:
        pass

    def exists(self, props: Mapping[str, Any], item_id: str) -> bool:
        with self.client(props) as api:
            misc = self._misc(api, props)
        return misc.get("username") == item_id and bool(misc.get("password"))


class BazarrLogin(BazarrArr):
    """props: app, url, api_key, username, password: Bazarr's form login (`auth.type` form, `auth.username`,
    `auth.password`, bazarr/app/config.py; save_settings stores the password's MD5, as Bazarr checks it)."""

    replace_on = ("app",)

    def apply(self, props: Mapping[str, Any], current_id: str | None) -> str:
        auth = self._settings(props).get("auth") or {}
        stored = hashlib.md5(str(props["password"]).encode()).hexdigest()  # Bazarr stores the MD5 hex
        if (auth.get("type"), auth.get("username"), auth.get("password")) != ("form", props["username"], stored):
            form = {"settings-auth-type": "form", "settings-auth-username": props["username"],
                    "settings-auth-password": props["password"]}  # fmt: skip
            with self.client(props) as api:
                api.request("POST", "/api/system/settings", data=form)
        return props["username"]

    def remove(self, props: Mapping[str, Any], item_id: str) -> None:
        pass

    def exists(self, props: Mapping[str, Any], item_id: str) -> bool:
        auth = self._settings(props).get("auth") or {}
        return auth.get("type") == "form" and auth.get("username") == item_id


# Jellyfin takes its client's identity from this header (AuthorizationContext: scheme "MediaBrowser").
_JELLYFIN_CLIENT = 'MediaBrowser Client="mediastack", Device="pulumi", DeviceId="mediastack-wiring", Version="1"'


class JellyfinAdmin(Kind):
    """props: app, url, username, password (and, on an update, `previous_password`). Runs Jellyfin's startup
    wizard (StartupController, which allows anonymous calls until the wizard is complete): GET /Startup/User
    (makes the first user), POST /Startup/User with the name and password, POST /Startup/Complete. A new
    password is set with the previous one (UserController POST /Users/Password, as the user itself)."""

    replace_on: tuple[str, ...] = ("app",)

    def client(self, props: Mapping[str, Any]) -> AppClient:
        return _client(props, {"Authorization": _JELLYFIN_CLIENT})

    def _token(self, api: AppClient, username: str, password: Any) -> str | None:
        login = {"Username": username, "Pw": password}
        answer = api.request("POST", "/Users/AuthenticateByName", json=login, ok=(401,))
        return str(answer.json().get("AccessToken")) if answer.status_code < 300 else None

    def apply(self, props: Mapping[str, Any], current_id: str | None) -> str:
        with self.client(props) as api:
            if api.json("GET", "/System/Info/Public").get("StartupWizardCompleted"):
                if self._token(api, props["username"], props["password"]):
                    return props["username"]
                token = props.get("previous_password") and self._token(
                    api, props["username"], props["previous_password"]
                )
                if not token:
                    return EXISTING
                change = {"CurrentPw": props["previous_password"], "NewPw": props["password"]}
                api.request(
                    "POST", "/Users/Password", json=change,
                    headers={"Authorization": f'{_JELLYFIN_CLIENT}, Token="{token}"'},
                )  # fmt: skip
                return props["username"]
            api.json("GET", "/Startup/User")
            api.request("POST", "/Startup/User", json={"Name": props["username"], "Password": props["password"]})
            api.request("POST", "/Startup/Complete")
        return props["username"]

    def remove(self, props: Mapping[str, Any], item_id: str) -> None:
        pass

    def exists(self, props: Mapping[str, Any], item_id: str) -> bool:
        with self.client(props) as api:
            return bool(api.json("GET", "/System/Info/Public").get("StartupWizardCompleted"))


class ImmichAdmin(Kind):
    """props: app, url, email, name, password (and, on an update, `previous_password`). Immich's first user is
    its admin, made by POST /api/auth/admin-sign-up (AuthService.adminSignUp; 400 "The server already has an
    admin" after). A new password is set with the previous one (POST /api/auth/change-password)."""

    replace_on: tuple[str, ...] = ("app",)

    def client(self, props: Mapping[str, Any]) -> AppClient:
        return _client(props)

    def _token(self, api: AppClient, email: str, password: Any) -> str | None:
        answer = api.request("POST", "/api/auth/login", json={"email": email, "password": password}, ok=(401,))
        return str(answer.json().get("accessToken")) if answer.status_code < 300 else None

    def apply(self, props: Mapping[str, Any], current_id: str | None) -> str:
        with self.client(props) as api:
            if self._token(api, props["email"], props["password"]):
                return props["email"]
            token = props.get("previous_password") and self._token(api, props["email"], props["previous_password"])
            if token:
                change = {"password": props["previous_password"], "newPassword": props["password"]}
                headers = {"Authorization": f"Bearer {token}"}
                api.request("POST", "/api/auth/change-password", json=change, headers=headers)
                return props["email"]
            signup = {"email": props["email"], "password": props["password"], "name": props["name"]}
            answer = api.request("POST", "/api/auth/admin-sign-up", json=signup, ok=(400,))
            if answer.status_code < 300:
                return props["email"]
            if "already has an admin" in _answer(answer):
                return EXISTING
            raise WiringError(f"{props['app']} refused POST /api/auth/admin-sign-up (HTTP 400): {_answer(answer)}")

    def remove(self, props: Mapping[str, Any], item_id: str) -> None:
        pass

    def exists(self, props: Mapping[str, Any], item_id: str) -> bool:
        if item_id == EXISTING:
            return True
        with self.client(props) as api:
            return self._token(api, props["email"], props["password"]) is not None


KINDS: dict[str, Kind] = {
    "arr_item": ArrItem(),
    "qbittorrent_category": QbittorrentCategory(),
    "qbittorrent_preferences": QbittorrentPreferences(),
    "sabnzbd_category": SabnzbdCategory(),
    "bazarr_arr": BazarrArr(),
    "arr_login": ArrLogin(),
    "sabnzbd_login": SabnzbdLogin(),
    "bazarr_login": BazarrLogin(),
    "jellyfin_admin": JellyfinAdmin(),
    "immich_admin": ImmichAdmin(),
}
LOGIN_KINDS = frozenset({"arr_login", "sabnzbd_login", "bazarr_login", "jellyfin_admin", "immich_admin"})
