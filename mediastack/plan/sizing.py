"""A service's tier and resources once the stack's tiers and overrides are applied."""

from __future__ import annotations

from mediastack.catalog.services import Service
from mediastack.model.config import Resources, StackConfig, TierName


def effective_resources(service: Service, config: StackConfig) -> tuple[TierName, Resources]:
    override = config.services.get(service.name)
    tier = (override.tier if override and override.tier else None) or service.tier
    base = config.tiers.get(tier).model_dump()
    for layer in (service.resources, override.resources if override else None):
        if layer is not None:
            base.update({k: v for k, v in layer.model_dump().items() if v is not None})
    return tier, Resources.model_construct(**base)
