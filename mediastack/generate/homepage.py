"""The start page's config (Homepage, gethomepage.dev), derived from the catalog and the resolved stack.

Every enabled service with a web UI appears with its link (https://<its host>/), grouped by bundle in catalog
order, with the live widget its catalog entry names (`Service.widget`); a new catalog entry with a web UI
appears by itself. The shapes are Homepage v1.12.3's (gethomepage/homepage docs/configs/services.md,
docs/configs/settings.md, docs/widgets/services/<type>.md). Keys never enter these files: a widget's secret is
`{{HOMEPAGE_FILE_<X>}}`, which Homepage replaces with the contents of the file the variable names
(mediastack/plan/start_page.py). All seven files are generated, so Homepage copies no skeleton into the
read-only directory (src/utils/config/config.js).
"""

from __future__ import annotations

from mediastack.catalog.services import BUNDLES, Service
from mediastack.plan.resolve import has_value
from mediastack.plan.resolved import ResolvedService, ResolvedStack
from mediastack.plan.start_page import key_files
from mediastack.quoting import yaml_document as _dump


def _start_page(stack: ResolvedStack) -> ResolvedService:
    return next(s for s in stack.services if s.spec.start_page_keys is not None)


def listed(stack: ResolvedStack) -> list[ResolvedService]:
    """The services the start page lists: every enabled one with a web UI, but itself."""
    return [s for s in stack.services if s.spec.web and s.web_host and s.spec.start_page_keys is None]


def _widget(service: Service, stack: ResolvedStack, variables: dict[tuple[str, str], str]) -> dict[str, object]:
    """The service's widget, or {} when it has none or a secret it needs has no value (a link only)."""
    widget = service.widget
    web = service.web
    if widget is None or web is None or service.route_url is not None:
        return {}
    if not all(has_value(stack.config, s) for _, s in widget.secrets()):
        return {}
    found: dict[str, object] = {"type": widget.type, "url": f"http://{service.name}:{web.port}"}
    if widget.username:
        found["username"] = widget.username
    for field, _ in widget.secrets():
        found[field] = "{{" + variables[(service.name, field)] + "}}"
    found.update(dict(widget.settings))
    return found


def services_yaml(stack: ResolvedStack) -> str:
    home = _start_page(stack)
    variables = {
        (k.service, k.field): k.variable
        for k in key_files(home.spec, stack.enabled, lambda s: has_value(stack.config, s))
    }
    groups: dict[str, list[dict[str, object]]] = {}
    for service in listed(stack):
        spec = service.spec
        assert spec.web is not None
        entry: dict[str, object] = {"href": f"https://{service.web_host}/", "description": spec.description}
        if spec.route_url is None:
            # Homepage's own request (HEAD, then GET) to the app's internal address: up or down, and how fast.
            entry["siteMonitor"] = f"http://{spec.name}:{spec.web.port}/"
        widget = _widget(spec, stack, variables)
        if widget:
            entry["widget"] = widget
        groups.setdefault(spec.bundle, []).append({spec.name: entry})
    return _dump([{bundle: groups[bundle]} for bundle in BUNDLES if bundle in groups])


def settings_yaml(stack: ResolvedStack) -> str:
    bundles = {s.spec.bundle for s in listed(stack)}
    return _dump(
        {
            "title": f"mediastack {stack.stack}",
            "headerStyle": "boxed",
            "statusStyle": "dot",
            # Group order, one row per bundle (a list keeps the order; settings.md "Layout").
            "layout": [{bundle: {"style": "row", "columns": 4}} for bundle in BUNDLES if bundle in bundles],
            "hideVersion": True,
            "disableUpdateCheck": True,  # no call to GitHub's releases API
            "disableIndexing": True,  # robots.txt: disallow
        }
    )


def widgets_yaml(stack: ResolvedStack) -> str:
    # The skeleton's resources widget without its search box (a third-party provider); the container's view.
    return _dump([{"resources": {"cpu": True, "memory": True}}])


def bookmarks_yaml(stack: ResolvedStack) -> str:
    return "# mediastack: no bookmarks; every service is in services.yaml\n[]\n"


def _integration_off(name: str) -> str:
    # The skeleton's files are comments only (an empty document): no integration (src/skeleton/<name>.yaml).
    return f"---\n# mediastack: no {name} integration; the services come from the catalog (services.yaml)\n"


def docker_yaml(stack: ResolvedStack) -> str:
    return _integration_off("Docker")


def kubernetes_yaml(stack: ResolvedStack) -> str:
    return _integration_off("Kubernetes")


def proxmox_yaml(stack: ResolvedStack) -> str:
    return _integration_off("Proxmox")


# The files Homepage reads from its config directory (src/utils/config/config.js checkAndCopyConfig callers).
CONFIG_FILES = ("settings", "services", "widgets", "bookmarks", "docker", "kubernetes", "proxmox")

GENERATORS = {
    "homepage/settings.yaml": settings_yaml,
    "homepage/services.yaml": services_yaml,
    "homepage/widgets.yaml": widgets_yaml,
    "homepage/bookmarks.yaml": bookmarks_yaml,
    "homepage/docker.yaml": docker_yaml,
    "homepage/kubernetes.yaml": kubernetes_yaml,
    "homepage/proxmox.yaml": proxmox_yaml,
}
