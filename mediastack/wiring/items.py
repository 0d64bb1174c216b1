"""The pipeline's kinds of wiring: *arr items, qBittorrent categories and preferences, SABnzbd categories,
Bazarr's connections to Sonarr and Radarr (what each does: mediastack/wiring/api.py).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from mediastack.wiring.client import AppClient, Kind, WiringError, _client, _same_key, merge_over


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

    # Query parameters of a save (POST or PUT).
    save_params: Mapping[str, str] = {}

    def _owned(self, api: AppClient, props: Mapping[str, Any], existing: Mapping[str, Any] | None) -> dict[str, Any]:
        """The fields the stack owns in the item (`existing`: the item as the app holds it, None on create)."""
        return dict(props["body"])

    def apply(self, props: Mapping[str, Any], current_id: str | None) -> str:
        base = f"{props['api']}/{props['collection']}"
        with self.client(props) as api:
            existing = self._find(api, props)
            if existing is None:
                owned = self._owned(api, props, None)
                created = api.json(
                    "POST", base, json=merge_over(props.get("defaults") or {}, owned), params=self.save_params
                )
                return str(created["id"])
            if props["collection"] == "rootfolder":
                return str(existing["id"])  # a root folder is its path: nothing to update
            # The item keeps its own name spelling (the apps match names ignoring case) and everything the
            # stack does not own; the apps replace the whole item on PUT, so the PUT carries all of it.
            owned = self._owned(api, props, existing)
            body = {**merge_over(existing, owned), "id": existing["id"], "name": existing["name"]}
            if body != existing:
                api.json("PUT", f"{base}/{existing['id']}", json=body, params=self.save_params)
            return str(existing["id"])

    def remove(self, props: Mapping[str, Any], item_id: str) -> None:
        with self.client(props) as api:
            api.request("DELETE", f"{props['api']}/{props['collection']}/{item_id}", ok=(404,))

    def exists(self, props: Mapping[str, Any], item_id: str) -> bool:
        with self.client(props) as api:
            items = api.json("GET", f"{props['api']}/{props['collection']}")
        return any(isinstance(i, dict) and str(i.get("id")) == item_id for i in items)


class ArrTaggedItem(ArrItem):
    """props: as `arr_item` (Prowlarr's `/api/v1` `indexerProxy`, key name), and `tag`: a tag label the item
    carries besides the user's own tags, made when missing. Prowlarr v2.1.5: a proxy is enabled only with a tag
    (src/NzbDrone.Core/IndexerProxies/IndexerProxyDefinition.cs `Enable => Tags.Any()`) and a saved indexer uses
    it only when they share one (src/NzbDrone.Core/Indexers/IndexerHttpClient.cs); tags are lower-cased labels
    (src/NzbDrone.Core/Tags/TagService.cs). An enabled proxy is tested when saved, and FlareSolverr's test asks
    prowlarr.servarr.com through it (.../IndexerProxies/FlareSolverr/FlareSolverr.cs `Test`), which a stack
    without internet at deploy time, or a FlareSolverr still starting, fails. ProviderControllerBase
    (src/Prowlarr.Api.V1/ProviderControllerBase.cs) skips that test only on a PUT with `?forceSave=true` (a POST
    tests an enabled definition even then): so a new item is POSTed without tags (not enabled, not tested),
    then PUT with its tag and forceSave. Deleting the item leaves the tag: the user's indexers carry it (and
    Prowlarr refuses to delete a tag in use)."""

    save_params: Mapping[str, str] = {"forceSave": "true"}

    def apply(self, props: Mapping[str, Any], current_id: str | None) -> str:
        with self.client(props) as api:
            if self._find(api, props) is None:
                untagged = merge_over(props.get("defaults") or {}, {**props["body"], "tags": []})
                api.json("POST", f"{props['api']}/{props['collection']}", json=untagged, params=self.save_params)
        return super().apply(props, current_id)  # now an update: the tag, saved with forceSave

    def _tag_id(self, api: AppClient, props: Mapping[str, Any]) -> int:
        label = str(props["tag"]).lower()
        tags = api.json("GET", f"{props['api']}/tag")
        found = next((t for t in tags if isinstance(t, dict) and str(t.get("label", "")).lower() == label), None)
        return int((found or api.json("POST", f"{props['api']}/tag", json={"label": label}))["id"])

    def _owned(self, api: AppClient, props: Mapping[str, Any], existing: Mapping[str, Any] | None) -> dict[str, Any]:
        tag = self._tag_id(api, props)
        kept = [t for t in (existing or {}).get("tags") or [] if t != tag]
        return {**props["body"], "tags": [*kept, tag]}


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
