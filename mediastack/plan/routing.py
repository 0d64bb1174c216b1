"""Traefik's routes per service, which of them the internet reaches, and when the public ones open."""

from __future__ import annotations

from dataclasses import dataclass

from mediastack.catalog.services import (
    CATALOG,
)
from mediastack.model.config import StackConfig
from mediastack.plan.resolved import ResolvedStack


def web_host_of(config: StackConfig, name: str) -> str:
    override = config.services.get(name)
    web = CATALOG[name].web
    subdomain = (override.subdomain if override and override.subdomain else None) or (web.subdomain if web else name)
    return f"{subdomain}.{config.domain}"


def is_public(config: StackConfig, name: str) -> bool:
    """Whether the internet may reach this service's web UI (exposure.public); every other UI is LAN-only."""
    return name in config.exposure.public


@dataclass(frozen=True)
class Route:
    """One Traefik router and the service behind it, as the generated dynamic config states them."""

    name: str  # the router's name, and its service's
    rule: str
    url: str  # where Traefik sends it; "api@internal" for Traefik's own dashboard
    lan_only: bool
    compress: bool = True  # Traefik's compress middleware (it skips already-compressed types such as images)
    priority: int | None = None
    login_of: str = ""  # the service whose login guards this route (its own, or the one it fronts)


def public_after_logins(stack: ResolvedStack) -> bool:
    """Whether public routes open only once the logins exist: with the deploy-time wiring, which makes them (on
    one host and on a Swarm). Until then a public UI answers the LAN only (the wiring itself reaches it from
    there)."""
    return stack.config.wiring.enabled


def routes(stack: ResolvedStack) -> list[Route]:
    """Every web UI at https://<subdomain>.<domain>, LAN-only unless exposure.public names it; the artwork cache
    in front of Jellyfin's image endpoints (priority 100, above Jellyfin's own router; as reachable as Jellyfin)."""
    config = stack.config
    found: list[Route] = []
    for service in stack.services:
        spec = service.spec
        if spec.web and service.web_host:
            url = spec.route_url or f"http://{spec.name}:{spec.web.port}"
            rule = f"Host(`{service.web_host}`)"
            found.append(Route(spec.name, rule, url, not is_public(config, spec.name), login_of=spec.name))
        front = spec.fronts
        if front and front.service in stack.enabled:
            rule = f"Host(`{web_host_of(config, front.service)}`) && {front.paths}"
            found.append(
                Route(
                    front.route,
                    rule,
                    f"http://{spec.name}:{front.port}",
                    not is_public(config, front.service),
                    compress=False,
                    priority=front.priority,
                    login_of=front.service,
                )
            )
    return found
