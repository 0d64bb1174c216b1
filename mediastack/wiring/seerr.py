"""Seerr (requests, the successor of Jellyseerr) wired at deploy time: its first admin, made with the stack's
Jellyfin admin, and its Sonarr and Radarr entries.

Upstream facts from seerr-team/seerr v3.1.0, in the order of its first-run wiring, every path under /api/v1:
- `X-Api-Key` equal to `main.apiKey` acts as user 1 (server/middleware/auth.ts `checkUser`); the stack seeds
  `main.apiKey` into settings.json before its first start (mediastack/generate/seeds.py;
  server/lib/settings/index.ts `load` merges the file over its defaults). Before user 1 exists the key
  authenticates nobody: every /settings/* call answers 403 (server/routes/index.ts:
  `router.use('/settings', isAuthenticated(Permission.ADMIN), ...)`).
- GET /settings/public needs no login and tells `initialized` and `mediaServerType` (2: Jellyfin).
- POST /auth/jellyfin makes user 1 an admin when there is none (server/routes/auth.ts): with `hostname` only
  while no Jellyfin is configured (else 500 "Jellyfin hostname already configured"), a Jellyfin administrator,
  `serverType` 2; it also creates a Jellyfin API key named "Seerr" each time it sets Jellyfin up. Once
  configured, a login without `hostname` checks the Jellyfin user's password (401 when wrong).
- GET /settings/jellyfin/library?sync=true reads Jellyfin's libraries (404 when Jellyfin has none yet), then
  `?enable=<ids>` enables exactly those listed (server/routes/settings/index.ts).
- POST /settings/initialize ends the setup wizard (`public.initialized = true`).
- /settings/sonarr and /settings/radarr (server/routes/settings/{sonarr,radarr}.ts): POST saves the body as
  given with id = last id + 1 (the first is 0); PUT /:id replaces the whole entry; DELETE /:id answers 404 when
  missing; `isDefault` true clears it on the other entries with the same `is4k`; POST /test reaches the app and
  answers its `profiles` and `rootFolders` (500 "Failed to connect to ..." when it cannot).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mediastack.wiring.client import AppClient, Kind, WiringError, _answer, _client

EXISTING = "existing"  # a Seerr whose admin is not the stack's: adopted as it is
JELLYFIN = 2  # MediaServerType.JELLYFIN (server/constants/server.ts)
API = "/api/v1"


def _seerr_client(props: Mapping[str, Any]) -> AppClient:
    return _client(props, {"X-Api-Key": props["api_key"]})


class SeerrAdmin(Kind):
    """props: app, url, api_key, username, password (the stack's Jellyfin admin), email, jellyfin ({hostname,
    port, urlBase, useSsl}: how Seerr reaches Jellyfin). A new Seerr gets its admin through Jellyfin, every
    library Jellyfin has, and the end of its setup wizard; an initialized one is adopted: when its admin is the
    stack's Jellyfin admin, the wiring logs in as it (without a hostname), else it is left as it is."""

    replace_on: tuple[str, ...] = ("app",)

    def client(self, props: Mapping[str, Any]) -> AppClient:
        return _seerr_client(props)

    def _login(self, api: AppClient, props: Mapping[str, Any], setup: bool) -> None:
        login = {"username": props["username"], "password": props["password"], "email": props["email"],
                 "serverType": JELLYFIN}  # fmt: skip
        if setup:  # the UI's body (src/components/Setup/JellyfinSetup.tsx)
            login.update(props["jellyfin"])
        answer = api.request("POST", f"{API}/auth/jellyfin", json=login, ok=(401, 403, 500))
        if answer.status_code >= 300:
            raise WiringError(
                f"{props['app']} refused the login of Jellyfin's {props['username']} (HTTP {answer.status_code}: "
                f"{_answer(answer)}); Seerr's admin is the stack's Jellyfin admin: check that jellyfin-admin is "
                "wired (not adopted as an existing admin) or set mediastack:wiring.enabled to false"
            )

    def _me(self, api: AppClient) -> dict[str, Any] | None:
        """User 1, as the stack's API key acts (None: there is no admin yet)."""
        answer = api.request("GET", f"{API}/auth/me", ok=(403,))
        return None if answer.status_code == 403 else answer.json()

    def _hand_over_key(self, api: AppClient, props: Mapping[str, Any]) -> dict[str, Any]:
        """A Seerr set up before the stack keeps its settings.json and so its own key (the seed never overwrites):
        logged in as the stack's Jellyfin admin (a session: a key that does not match is ignored,
        server/middleware/auth.ts), its admin sets main.apiKey to the stack's (POST /settings/main merges the body
        into main, server/routes/settings/index.ts). Only user 1, the admin the key acts as, may hand it over."""
        self._login(api, props, setup=False)
        me = api.json("GET", f"{API}/auth/me")
        if me.get("id") != 1:
            raise WiringError(
                f"{props['app']} was set up before the stack, with an API key of its own and an admin who is not "
                f"Jellyfin's {props['username']}: the stack cannot hand it its key; remove its settings.json (it is "
                "then set up afresh), turn it off (mediastack:services.seerr.enabled: false) or set "
                "mediastack:wiring.enabled to false"
            )
        api.json("POST", f"{API}/settings/main", json={"apiKey": props["api_key"]})
        return me

    def apply(self, props: Mapping[str, Any], current_id: str | None) -> str:
        with self.client(props) as api:
            public = api.json("GET", f"{API}/settings/public")
            me = self._me(api)
            if public.get("initialized"):
                if me is None:
                    me = self._hand_over_key(api, props)
                if str((me or {}).get("jellyfinUsername", "")).casefold() != str(props["username"]).casefold():
                    return EXISTING  # a login as another user would add one with default permissions
                self._login(api, props, setup=False)
                return props["username"]
            if me is None:  # the hostname once Jellyfin is configured is a 500: then log in without it
                self._login(api, props, setup=public.get("mediaServerType") != JELLYFIN)
            libraries = api.request("GET", f"{API}/settings/jellyfin/library", params={"sync": "true"}, ok=(404,))
            if libraries.status_code < 300 and libraries.json():  # 404: Jellyfin has no library yet
                ids = ",".join(str(library["id"]) for library in libraries.json())
                api.json("GET", f"{API}/settings/jellyfin/library", params={"enable": ids})
            # Last, as in the UI: the wizard stays open until everything before it is done, and the public route
            # opens after this wiring, never onto an open wizard.
            api.json("POST", f"{API}/settings/initialize")
        return props["username"]

    def remove(self, props: Mapping[str, Any], item_id: str) -> None:
        pass  # a login outlives its wiring (mediastack/wiring/api.py)

    def exists(self, props: Mapping[str, Any], item_id: str) -> bool:
        with self.client(props) as api:
            return bool(api.json("GET", f"{API}/settings/public").get("initialized"))


class SeerrArr(Kind):
    """props: app, url, api_key, target (sonarr|radarr), body (the entry's fields the stack owns: name, hostname,
    port, apiKey, useSsl, baseUrl, is4k), defaults (sent on create only: the user may change them), root_folder
    (the path to pick among the app's root folders). Found by hostname and port (or by the id it was made with);
    the quality profile (the app's first) and the root folder are read from POST /settings/<target>/test on
    create and kept on update unless the entry has none."""

    replace_on: tuple[str, ...] = ("app", "target")

    def client(self, props: Mapping[str, Any]) -> AppClient:
        return _seerr_client(props)

    def _entries(self, api: AppClient, props: Mapping[str, Any]) -> list[dict[str, Any]]:
        return [e for e in api.json("GET", f"{API}/settings/{props['target']}") if isinstance(e, dict)]

    def _find(self, entries: list[dict[str, Any]], props: Mapping[str, Any], current_id: str | None) -> Any:
        body = props["body"]
        by_id = [e for e in entries if current_id is not None and str(e.get("id")) == current_id]
        same = [e for e in entries if (e.get("hostname"), e.get("port")) == (body["hostname"], body["port"])]
        return next(iter(by_id or same), None)

    def _chosen(self, api: AppClient, props: Mapping[str, Any]) -> dict[str, Any]:
        """The profile and root folder, as the app itself answers them to Seerr."""
        body, target = props["body"], props["target"]
        reach = {k: body[k] for k in ("hostname", "port", "apiKey", "useSsl", "baseUrl")}
        found = api.json("POST", f"{API}/settings/{target}/test", json=reach)
        profiles, folders = found.get("profiles") or [], found.get("rootFolders") or []
        if not profiles or not folders:
            raise WiringError(
                f"{props['app']} found no quality profile or no root folder in {target} ({len(profiles)} profiles, "
                f"{len(folders)} root folders); the {target}-root-folder wiring makes the root folder first"
            )
        folder = next((f for f in folders if f.get("path") == props.get("root_folder")), folders[0])
        return {"activeProfileId": profiles[0]["id"], "activeProfileName": profiles[0]["name"],
                "activeDirectory": folder["path"]}  # fmt: skip

    def apply(self, props: Mapping[str, Any], current_id: str | None) -> str:
        base = f"{API}/settings/{props['target']}"
        with self.client(props) as api:
            existing = self._find(self._entries(api, props), props, current_id)
            if existing is None:
                wanted = {**(props.get("defaults") or {}), **self._chosen(api, props), **props["body"]}
                return str(api.json("POST", base, json=wanted)["id"])
            # PUT replaces the whole entry: the user's choices go back with it.
            wanted = {**existing, **props["body"]}
            if wanted.get("activeProfileId") is None or not wanted.get("activeDirectory"):
                wanted.update(self._chosen(api, props))
            if wanted != existing:
                api.json("PUT", f"{base}/{existing['id']}", json=wanted)
            return str(existing["id"])

    def remove(self, props: Mapping[str, Any], item_id: str) -> None:
        with self.client(props) as api:
            api.request("DELETE", f"{API}/settings/{props['target']}/{item_id}", ok=(404,))

    def exists(self, props: Mapping[str, Any], item_id: str) -> bool:
        with self.client(props) as api:
            return any(str(e.get("id")) == item_id for e in self._entries(api, props))
