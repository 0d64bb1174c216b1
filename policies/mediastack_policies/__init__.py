"""mediastack's CrossGuard policies, importable without starting the analyzer (see ../__main__.py)."""

from .cluster import CLUSTER_POLICIES
from .resource import RESOURCE_POLICIES
from .stack import STACK_POLICIES

POLICIES = [*RESOURCE_POLICIES, *STACK_POLICIES, *CLUSTER_POLICIES]

# Levels live on each policy (mandatory for safety and limits, advisory where people differ);
# users change them with --policy-pack-config, e.g. {"every-service-monitored": "mandatory"}.
INITIAL_CONFIG: dict = {}

__all__ = ["CLUSTER_POLICIES", "INITIAL_CONFIG", "POLICIES", "RESOURCE_POLICIES", "STACK_POLICIES"]
