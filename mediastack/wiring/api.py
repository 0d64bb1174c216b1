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
- `arr_tagged_item`: an `arr_item` that also carries a tag, made when missing, and is saved without the app's
  connection test (Prowlarr's indexer proxy for FlareSolverr).
- `seerr_arr`: a Sonarr or Radarr entry in Seerr (`/api/v1/settings/sonarr|radarr`), found by hostname and port.
- `bazarr_arr`: Bazarr's connection to Sonarr or Radarr (`/api/system/settings`, form fields).
- `arr_login`: Forms login for Sonarr, Radarr or Prowlarr (`/api/v{1,3}/config/host`).
- `sabnzbd_login`, `bazarr_login`: SABnzbd's and Bazarr's own web login (also seeded before their first start).
- `jellyfin_admin`: Jellyfin's startup wizard, run with the stack's admin user.
- `immich_admin`: Immich's first admin (`/api/auth/admin-sign-up`).
- `seerr_admin`: Seerr's first admin, the stack's Jellyfin admin (`/api/v1/auth/jellyfin`), its libraries and
  the end of its setup wizard.

An app's URL (and how its TLS is checked) says how Pulumi reaches the app, not which item it holds:
changing it calls nothing in the app.
"""

from __future__ import annotations

from mediastack.wiring.client import Kind
from mediastack.wiring.items import (
    ArrItem,
    ArrTaggedItem,
    BazarrArr,
    QbittorrentCategory,
    QbittorrentPreferences,
    SabnzbdCategory,
)
from mediastack.wiring.logins import ArrLogin, BazarrLogin, ImmichAdmin, JellyfinAdmin, SabnzbdLogin
from mediastack.wiring.seerr import SeerrAdmin, SeerrArr

# -- the kinds of wiring ----------------------------------------------------------------------------


# -- logins ------------------------------------------------------------------------------------------
# A login outlives its wiring: deleting one leaves the app's account and its login as they are (deleting
# them would open the app to the first visitor again).


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
    "arr_tagged_item": ArrTaggedItem(),
    "seerr_admin": SeerrAdmin(),
    "seerr_arr": SeerrArr(),
}
LOGIN_KINDS = frozenset({"arr_login", "sabnzbd_login", "bazarr_login", "jellyfin_admin", "immich_admin", "seerr_admin"})
