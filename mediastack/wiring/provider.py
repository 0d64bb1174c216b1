"""The download pipeline wired at deploy time: Pulumi resources over the apps' own APIs.

Sonarr and Radarr get their root folder in the one data tree and both download clients, each with a
category whose save path lies in the same tree; qBittorrent and SABnzbd get those categories; Prowlarr
gets Sonarr and Radarr as applications (so indexers sync); Bazarr is connected to both; and every UI gets
its login with a generated password (Forms for the *arr apps, SABnzbd's and Bazarr's own, Jellyfin's
startup wizard, Immich's first admin). Every item is a `Wiring` resource: created (or adopted when the
app already has it), updated in place, deleted with the stack, and unchanged on a second `pulumi up`
(its inputs are its whole state). The calls are in `wiring_api.py`; this module only decides what to
wire and in which order.

Names the apps use for each other are their container names on the backend network (with a VPN,
gluetun answers to the download clients' names). The machine running Pulumi reaches each app at
`wiring.urls.<app>` or, by default, through Traefik at https://<web host>.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, ResourceProvider, UpdateResult

from mediastack.catalog.services import CATALOG
from mediastack.generate.seeds import ADMIN_USER, QBITTORRENT_USER
from mediastack.model.config import StackConfig
from mediastack.plan.resolved import ResolvedStack
from mediastack.plan.routing import web_host_of
from mediastack.wiring.api import KINDS, LOGIN_KINDS

# Inputs that say how to reach an app, not what it should hold: a change needs no call of its own.
_TRANSPORT = ("retry", "verify_tls")
# Where Pulumi reaches the app and what it polls first: recorded in the state when they change (a later
# delete or refresh must use the new URL), but no call to the app and never another item.
_LOCATION = ("url", "health")
# Inputs that are secrets wherever they appear in a wiring's state.
SECRET_INPUTS = ["api_key", "password", "body", "settings"]


class WiringProvider(ResourceProvider):
    """Dispatches each operation to the kind of wiring named in the resource's inputs."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        item_id = KINDS[props["kind"]].apply(props, None)
        return CreateResult(id_=f"{props['app']}/{props['kind']}/{item_id}", outs={**props, "item_id": item_id})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        kind = KINDS[news["kind"]]
        keys = (set(olds) | set(news)) - {"__provider", "item_id", *_TRANSPORT}
        changed = sorted(k for k in keys if olds.get(k) != news.get(k))
        replaces = kind.replaces(olds, news) if set(changed) - set(_LOCATION) else []
        return DiffResult(
            changes=bool(changed), replaces=replaces, stables=["item_id"] if not replaces else [],
            delete_before_replace=True,
        )  # fmt: skip

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        keys = (set(olds) | set(news)) - {"__provider", "item_id", *_TRANSPORT, *_LOCATION}
        if all(olds.get(k) == news.get(k) for k in keys):
            return UpdateResult(outs={**news, "item_id": olds.get("item_id")})  # only how Pulumi reaches the app
        # A login whose password changes is changed with the previous one (not kept in the new state).
        given = {**news, "previous_password": olds.get("password")} if news["kind"] in LOGIN_KINDS else news
        item_id = KINDS[news["kind"]].apply(given, olds.get("item_id"))
        return UpdateResult(outs={**news, "item_id": item_id})

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        KINDS[props["kind"]].remove(props, props["item_id"])

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        # An item removed in the app's UI reads as gone, so the next `pulumi up` makes it again.
        present = KINDS[props["kind"]].exists(props, props["item_id"])
        return ReadResult(id_ if present else "", props)


class Wiring(pulumi.dynamic.Resource):
    """One item in one app (a root folder, a download client, a category, an application, a link)."""

    item_id: pulumi.Output[str]

    def __init__(self, name: str, props: Mapping[str, pulumi.Input[Any]], opts: pulumi.ResourceOptions):
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=SECRET_INPUTS))
        super().__init__(WiringProvider(), name, {**props, "item_id": None}, opts)


# -- what the stack wires ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ArrFacts:
    """What an *arr app manages, and the names its settings use for it."""

    media: str  # its library folder under /data/media and its download category
    category_field: str
    sync: tuple[int, ...]  # the Newznab categories Prowlarr syncs to it
    api: str = "/api/v3"


# Prowlarr's own defaults (Prowlarr v2.1.5 src/NzbDrone.Core/Applications/{Sonarr,Radarr}/*Settings.cs):
# TV incl. UHD and x265 (5045, 5090), Movies incl. DVD, WEB-DL and x265 (2070, 2080, 2090).
ARR = {
    "sonarr": ArrFacts("tv", "tvCategory", (5000, 5010, 5020, 5030, 5040, 5045, 5050, 5090)),
    "radarr": ArrFacts("movies", "movieCategory", (2000, 2010, 2020, 2030, 2040, 2045, 2050, 2060, 2070, 2080, 2090)),
}
# What the arr apps' download clients get on create only (the user may change them later): the apps'
# own defaults (DownloadClientDefinition: Priority 1, RemoveCompletedDownloads and RemoveFailedDownloads
# true), which a field left out of a POST would turn into 0/false.
CLIENT_DEFAULTS = {"enable": True, "priority": 1, "removeCompletedDownloads": True, "removeFailedDownloads": True,
                   "tags": []}  # fmt: skip
# qBittorrent's preferences the pipeline needs: automatic torrent management on by default, so a torrent
# Sonarr or Radarr adds with its category saves to the category's path (qBittorrent's own default is
# off: SessionImpl `DisableAutoTMMByDefault` true; Sonarr and Radarr send no autoTMM of their own).
QBITTORRENT_PREFERENCES = {"auto_tmm_enabled": True}
# Immich names its users by e-mail address (admin@<domain>); this is the name it shows.
IMMICH_ADMIN_NAME = "Admin"
# What Seerr's Sonarr and Radarr entries get on create only (the user may change them in Seerr): the UI's own
# defaults (seerr-team/seerr v3.1.0 src/components/Settings/{SonarrModal,RadarrModal}/index.tsx, DVRSettings in
# server/lib/settings/index.ts; anime as Sonarr's anime type, the server's own fallback in
# server/subscriber/MediaRequestSubscriber.ts), as the default server for non-4K requests (isDefault, 4K off).
SEERR_DEFAULTS: dict[str, dict[str, Any]] = {
    "sonarr": {"isDefault": True, "tags": [], "animeTags": [], "seriesType": "standard", "animeSeriesType": "anime",
               "enableSeasonFolders": True, "syncEnabled": False, "preventSearch": False, "tagRequests": False,
               "externalUrl": "", "overrideRule": []},
    "radarr": {"isDefault": True, "tags": [], "minimumAvailability": "released", "syncEnabled": False,
               "preventSearch": False, "tagRequests": False, "externalUrl": "", "overrideRule": []},
}  # fmt: skip
# The Prowlarr tag that puts an indexer behind FlareSolverr: add it to the indexers behind challenges.
FLARESOLVERR_TAG = "flaresolverr"


def _port(app: str) -> int:
    """The app's port on the backend network: its web UI's, or (an app without one) its health check's."""
    web, health = CATALOG[app].web, CATALOG[app].health
    port = web.port if web is not None else health.probe_port if health is not None else None
    assert port is not None, app
    return port


def _health(app: str) -> str:
    """The path the app's own container health check asks: answered once the app is up."""
    health = CATALOG[app].health
    assert health is not None and health.probe_path is not None
    return health.probe_path


def _internal_url(app: str) -> str:
    return f"http://{app}:{_port(app)}"


def _fields(**values: Any) -> list[dict[str, Any]]:
    return [{"name": k, "value": v} for k, v in values.items()]


@dataclass(frozen=True)
class Item:
    """One wiring: its name suffix, the app it is made in, its kind and inputs, and what must exist first."""

    suffix: str
    app: str
    kind: str
    props: dict[str, Any]
    after: tuple[str, ...] = ()


def pipeline_items(config: StackConfig, enabled: frozenset[str], secrets: Mapping[str, Any]) -> list[Item]:
    """Everything to wire between the enabled apps, in an order that satisfies `after`.

    `secrets` maps generated secret ids to their values (Outputs in the program, plain text in tests).
    """
    verify = config.wiring.verify_tls if config.wiring.verify_tls is not None else bool(config.tls.acme_email)
    items: list[Item] = []

    def wire(suffix: str, app: str, kind: str, props: dict[str, Any], after: tuple[str, ...] = ()) -> str:
        url = config.wiring.urls.get(app) or f"https://{web_host_of(config, app)}"
        located = {"kind": kind, "app": app, "url": url, "health": _health(app), "verify_tls": verify}
        items.append(Item(suffix, app, kind, {**located, **props}, after))
        return suffix

    _logins(config, enabled, secrets, wire)

    for arr, facts in ARR.items():
        if arr not in enabled:
            continue
        media, api, category_field = facts.media, facts.api, facts.category_field
        arr_key = secrets[f"{arr}-api-key"]

        def arr_item(
            collection: str,
            key: str,
            body: dict[str, Any],
            arr_key: Any = arr_key,
            api: str = api,
            defaults: dict[str, Any] | None = None,
        ) -> dict[str, Any]:
            item = {"api_key": arr_key, "api": api, "collection": collection, "key": key, "body": body}
            return {**item, "defaults": defaults} if defaults else item

        root = wire(
            f"{arr}-root-folder", arr, "arr_item", arr_item("rootfolder", "path", {"path": f"/data/media/{media}"})
        )
        if "qbittorrent" in enabled:
            password = secrets["qbittorrent-password"]
            if "qbittorrent-auto-tmm" not in {i.suffix for i in items}:
                wire(
                    "qbittorrent-auto-tmm", "qbittorrent", "qbittorrent_preferences",
                    {"username": QBITTORRENT_USER, "password": password, "preferences": QBITTORRENT_PREFERENCES},
                )  # fmt: skip
            category = wire(
                f"qbittorrent-{media}-category", "qbittorrent", "qbittorrent_category",
                {"username": QBITTORRENT_USER, "password": password, "name": media,
                 "save_path": f"/data/torrents/{media}"},
            )  # fmt: skip
            body = {
                "name": "qBittorrent", "protocol": "torrent",
                "implementation": "QBittorrent", "configContract": "QBittorrentSettings",
                "fields": _fields(host="qbittorrent", port=_port("qbittorrent"), useSsl=False,
                                  username=QBITTORRENT_USER, password=password, **{category_field: media}),
            }  # fmt: skip
            wire(
                f"{arr}-qbittorrent", arr, "arr_item",
                arr_item("downloadclient", "name", body, defaults=CLIENT_DEFAULTS),
                (root, category, "qbittorrent-auto-tmm"),
            )  # fmt: skip
        if "sabnzbd" in enabled:
            sab_key = secrets["sabnzbd-api-key"]
            # SABnzbd's category folders are relative to its complete folder, /data/usenet/complete.
            category = wire(
                f"sabnzbd-{media}-category",
                "sabnzbd",
                "sabnzbd_category",
                {"api_key": sab_key, "name": media, "dir": media},
            )
            body = {
                "name": "SABnzbd", "protocol": "usenet",
                "implementation": "Sabnzbd", "configContract": "SabnzbdSettings",
                "fields": _fields(host="sabnzbd", port=_port("sabnzbd"), useSsl=False, apiKey=sab_key,
                                  **{category_field: media}),
            }  # fmt: skip
            wire(
                f"{arr}-sabnzbd", arr, "arr_item", arr_item("downloadclient", "name", body, defaults=CLIENT_DEFAULTS),
                (root, category),
            )  # fmt: skip
        if "prowlarr" in enabled:
            title = arr.capitalize()
            body = {
                "name": title, "implementation": title, "configContract": f"{title}Settings",
                "fields": _fields(prowlarrUrl=_internal_url("prowlarr"), baseUrl=_internal_url(arr), apiKey=arr_key,
                                  syncCategories=list(facts.sync)),
            }  # fmt: skip
            wire(
                f"prowlarr-{arr}", "prowlarr", "arr_item",
                {"api_key": secrets["prowlarr-api-key"], "api": "/api/v1", "collection": "applications", "key": "name",
                 "body": body, "defaults": {"syncLevel": "fullSync", "tags": []}},
                (root,),
            )  # fmt: skip
        if "bazarr" in enabled:
            settings = {"ip": arr, "port": _port(arr), "base_url": "/", "ssl": False, "apikey": arr_key}
            wire(
                f"bazarr-{arr}", "bazarr", "bazarr_arr",
                {"api_key": secrets["bazarr-api-key"], "target": arr, "settings": settings},
                (root,),
            )  # fmt: skip
    _companions(config, enabled, secrets, wire, _port)
    return items


def _companions(config: StackConfig, enabled: frozenset[str], secrets: Mapping[str, Any], wire: Any, port: Any) -> None:
    """The companion apps' wiring (docs/pipeline.md, Companions), each only when it and what it connects to are
    enabled: Seerr's admin (the stack's Jellyfin admin) and its Sonarr and Radarr; FlareSolverr as Prowlarr's
    indexer proxy. `port(app)` is the app's web port on the backend network."""
    if {"seerr", "jellyfin"} <= enabled:
        jellyfin = {"hostname": "jellyfin", "port": port("jellyfin"), "urlBase": "", "useSsl": False}
        after = ("jellyfin-admin",)  # Seerr logs in to Jellyfin as that admin, with its current password
        admin = wire(
            "seerr-admin", "seerr", "seerr_admin",
            {"api_key": secrets["seerr-api-key"], "username": ADMIN_USER,
             "password": secrets["jellyfin-admin-password"], "email": f"{ADMIN_USER}@{config.domain}",
             "jellyfin": jellyfin},
            after,
        )  # fmt: skip
        for arr, facts in ARR.items():
            if arr not in enabled:
                continue
            body = {"name": arr.capitalize(), "hostname": arr, "port": port(arr), "apiKey": secrets[f"{arr}-api-key"],
                    "useSsl": False, "baseUrl": "", "is4k": False}  # fmt: skip
            wire(
                f"seerr-{arr}", "seerr", "seerr_arr",
                {"api_key": secrets["seerr-api-key"], "target": arr, "body": body, "defaults": SEERR_DEFAULTS[arr],
                 "root_folder": f"/data/media/{facts.media}"},
                (admin, f"{arr}-root-folder"),
            )  # fmt: skip
    if {"flaresolverr", "prowlarr"} <= enabled:
        # FlareSolverr v3.5.0 listens on 8191 (Dockerfile EXPOSE, src/flaresolverr.py PORT). Prowlarr's
        # FlareSolverrSettings: Host, and RequestTimeout left at its default (60 s; the user may raise it), a field
        # left out of a save taking the class's default (Prowlarr v2.1.5 SchemaBuilder).
        body = {
            "name": "FlareSolverr", "implementation": "FlareSolverr", "implementationName": "FlareSolverr",
            "configContract": "FlareSolverrSettings",
            "fields": _fields(host=f"http://flaresolverr:{port('flaresolverr')}/"),
        }  # fmt: skip
        wire(
            "prowlarr-flaresolverr", "prowlarr", "arr_tagged_item",
            {"api_key": secrets["prowlarr-api-key"], "api": "/api/v1", "collection": "indexerProxy", "key": "name",
             "body": body, "tag": FLARESOLVERR_TAG},
        )  # fmt: skip


def _logins(config: StackConfig, enabled: frozenset[str], secrets: Mapping[str, Any], wire: Any) -> dict[str, str]:
    """Each enabled app's login, made with the stack's generated password (docs/pipeline.md, Logins)."""
    made = {}
    for arr, api in (("sonarr", "/api/v3"), ("radarr", "/api/v3"), ("prowlarr", "/api/v1")):
        if arr in enabled:
            made[arr] = wire(
                f"{arr}-login", arr, "arr_login",
                {"api_key": secrets[f"{arr}-api-key"], "api": api, "username": ADMIN_USER,
                 "password": secrets[f"{arr}-admin-password"]},
            )  # fmt: skip
    for app in ("sabnzbd", "bazarr"):  # their login also seeded into their first-start config
        if app in enabled:
            made[app] = wire(
                f"{app}-login",
                app,
                f"{app}_login",
                {"api_key": secrets[f"{app}-api-key"], "username": ADMIN_USER, "password": secrets[f"{app}-password"]},
            )
    if "jellyfin" in enabled:
        made["jellyfin"] = wire(
            "jellyfin-admin",
            "jellyfin",
            "jellyfin_admin",
            {"username": ADMIN_USER, "password": secrets["jellyfin-admin-password"]},
        )
    if "immich-server" in enabled:
        made["immich-server"] = wire(
            "immich-admin", "immich-server", "immich_admin",
            {"email": f"{ADMIN_USER}@{config.domain}", "name": IMMICH_ADMIN_NAME,
             "password": secrets["immich-admin-password"]},
        )  # fmt: skip
    return made


@dataclass(frozen=True)
class PipelineWiringArgs:
    stack: ResolvedStack
    secrets: Mapping[str, pulumi.Output[str]]
    # Each app's container: its wiring waits for it to exist (and then, with retries, to answer).
    services: Mapping[str, pulumi.Resource]


class PipelineWiring(pulumi.ComponentResource):
    """Every connection between the *arr apps and the download clients that the stack's apps allow, and
    each app's login (`logins`, by app: what a route to the app can wait for)."""

    def __init__(self, name: str, args: PipelineWiringArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mediastack:wiring:PipelineWiring", name, None, opts)
        self.items: dict[str, Wiring] = {}
        # Each app's login, by app: what a route to the app can depend on.
        self.logins: dict[str, Wiring] = {}
        for item in pipeline_items(args.stack.config, args.stack.enabled, args.secrets):
            depends = [args.services[item.app], *(self.items[a] for a in item.after)]
            self.items[item.suffix] = Wiring(
                f"{name}-{item.suffix}", item.props, pulumi.ResourceOptions(parent=self, depends_on=depends)
            )
            if item.kind in LOGIN_KINDS:
                self.logins[item.app] = self.items[item.suffix]
        self.register_outputs({"items": sorted(self.items)})
