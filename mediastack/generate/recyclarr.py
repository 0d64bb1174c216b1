"""Recyclarr's recyclarr.yml: the stack's Sonarr and Radarr, and what to sync into each (config `recyclarr`).

The schema is Recyclarr's own (recyclarr/recyclarr schemas/config-schema.json at v8.7.1; the tests validate
against a copy). The apps' URLs are their in-network names; their API keys are never in the file: each is
`!file /run/secrets/<app>-api-key`, which Recyclarr replaces with that file's trimmed text when it loads the file
(src/Recyclarr.Core/Config/File/FileDeserializer.cs). The stack writes the apps' generated keys there, as it does
for every image that reads a secret from a file (mediastack/plan/secret_files.py).
"""

from __future__ import annotations

from mediastack.catalog.services import CATALOG
from mediastack.model.config import RecyclarrApp
from mediastack.plan.resolved import ResolvedStack
from mediastack.plan.secret_files import container_path
from mediastack.quoting import YamlTagged, yaml_document

# app -> (Recyclarr's quality_definition type, the key of its API key in Recyclarr's secret_env)
APPS = {"sonarr": ("series", "SONARR_API_KEY"), "radarr": ("movie", "RADARR_API_KEY")}


def _instance(app: str, settings: RecyclarrApp) -> dict[str, object]:
    kind, key_variable = APPS[app]
    web = CATALOG[app].web
    assert web is not None
    instance: dict[str, object] = {
        "base_url": f"http://{app}:{web.port}",
        "api_key": YamlTagged("!file", container_path(CATALOG["recyclarr"].secret_env[key_variable])),
    }
    if settings.quality_definition:
        instance["quality_definition"] = {"type": kind}
    instance["delete_old_custom_formats"] = settings.delete_old_custom_formats
    instance["quality_profiles"] = [
        {"trash_id": trash_id, "reset_unmatched_scores": {"enabled": settings.reset_unmatched_scores}}
        for trash_id in settings.quality_profiles
    ]
    groups: dict[str, object] = {}
    if settings.custom_format_groups.add:
        groups["add"] = [
            {"trash_id": g.trash_id, **({"select": list(g.select)} if g.select is not None else {})}
            for g in settings.custom_format_groups.add
        ]
    if settings.custom_format_groups.skip:
        groups["skip"] = list(settings.custom_format_groups.skip)
    if groups:
        instance["custom_format_groups"] = groups
    return instance


def recyclarr_config(stack: ResolvedStack) -> str:
    """One instance per app that is enabled in the stack and synced (recyclarr.<app>.enabled)."""
    settings = stack.config.recyclarr
    doc: dict[str, object] = {}
    for app in APPS:
        chosen: RecyclarrApp = getattr(settings, app)
        if app in stack.enabled and chosen.enabled:
            doc[app] = {app: _instance(app, chosen)}
    return yaml_document(doc)
