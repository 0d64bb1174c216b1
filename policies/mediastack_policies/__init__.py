"""mediastack's CrossGuard policies, importable without starting the analyzer (see ../__main__.py)."""

from .containers import RESOURCE_POLICIES

__all__ = ["RESOURCE_POLICIES"]
