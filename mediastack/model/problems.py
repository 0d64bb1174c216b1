"""A config problem (key path, value, fix) and the error that carries them: below every layer that reports one."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Problem:
    path: str  # e.g. mediastack:hosts[0].memory
    value: Any
    message: str

    def __str__(self) -> str:
        return f"{self.path} = {_show(self.value)}: {self.message}"


class ConfigError(Exception):
    """Bad stack config: raised before any resource is registered."""

    def __init__(self, stack: str, problems: list[Problem]):
        self.stack = stack
        self.problems = problems
        super().__init__(str(self))

    def __str__(self) -> str:
        count = len(self.problems)
        head = f"stack '{self.stack}': {count} config problem{'s' if count != 1 else ''} in Pulumi.{self.stack}.yaml"
        return "\n".join([head, *(f"  - {p}" for p in self.problems)])


_MISSING = object()


def _show(value: Any) -> str:
    if value is _MISSING:
        return "(missing)"
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
