"""The logins the wiring makes before a route opens to the internet: Forms login for the *arr apps, SABnzbd's
and Bazarr's own, Jellyfin's startup wizard, Immich's first admin.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from mediastack.wiring.client import AppClient, Kind, WiringError, _answer, _client
from mediastack.wiring.items import BazarrArr, SabnzbdCategory

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
