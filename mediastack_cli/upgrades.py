"""Which images a plan changes against an earlier one: the review step of an upgrade (docs/upgrades.md).

Both sides are `mediastack plan --json` documents. An image is a `docker.RemoteImage` (pulled, by its pinned
reference) or a `docker.Image` (built on the host, by its name), keyed by its resource name, which is stable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

IMAGE_INPUTS = {"docker:index/remoteImage:RemoteImage": "name", "docker:index/image:Image": "imageName"}


class PlanFileError(Exception):
    """The earlier plan cannot be read; the message names the file and what to do."""


@dataclass(frozen=True)
class ImageChange:
    resource: str
    old: str | None  # None: the image is new in this plan
    new: str | None  # None: the image is gone from this plan

    @property
    def kind(self) -> str:
        if self.old is None:
            return "added"
        if self.new is None:
            return "removed"
        return "changed"


def images(doc: dict[str, Any]) -> dict[str, str]:
    """Resource name -> image reference, from a plan document."""
    found = {}
    for r in doc.get("resources") or []:
        key = IMAGE_INPUTS.get(r.get("type", ""))
        if key and isinstance(r.get("inputs"), dict) and key in r["inputs"]:
            found[str(r["name"])] = str(r["inputs"][key])
    return found


def read_plan(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise PlanFileError(f"--against {path}: no such file; write one with `mediastack plan --json`") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PlanFileError(f"--against {path}: not a plan written by `mediastack plan --json` ({error})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("resources"), list):
        raise PlanFileError(f"--against {path}: no `resources` list; write it with `mediastack plan --json`")
    return doc


def image_changes(old: dict[str, Any], new: dict[str, Any]) -> list[ImageChange]:
    before, after = images(old), images(new)
    changes = [
        ImageChange(name, before.get(name), after.get(name))
        for name in sorted(before.keys() | after.keys())
        if before.get(name) != after.get(name)
    ]
    return changes
