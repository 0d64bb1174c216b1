"""One encoder per format a value reaches, used at every point of use (docs/security.md).

The config model already refuses anything outside each key's grammar; these are the second layer: a value
that got past it still lands as data. Each raises ValueError for what its format cannot carry at all.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass

import yaml

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError(f"{value!r}: a NUL byte cannot be passed to another program")
    return value


def sh(value: object) -> str:
    """One shell word that stands for exactly `value` (POSIX sh single quotes)."""
    return shlex.quote(_no_nul(str(value)))


def sh_text(content: str) -> str:
    """A shell command printing `content` exactly, for `x=$(...)` or a redirect: one single-quoted word, so
    nothing in `content` is read as shell and, unlike a here-document, no line of it can end it. It stays
    readable in a plan's diff. A shellcheck directive comes with it: `$` in the text is meant literally."""
    return f"printf '%s' {sh(content)}"


SHELLCHECK_LITERAL = "# shellcheck disable=SC2016  # the quoted text is data: its $ and backticks stay literal\n"


def fstab_field(value: str) -> str:
    """One field of an fstab line: space, tab, newline and backslash octal-escaped as fstab(5) and
    getmntent(3) decode them, so a value can neither split its field nor add a line."""
    _no_nul(value)
    return "".join(f"\\{ord(c):03o}" if c in " \t\n\\" else c for c in value)


def ini_value(value: str) -> str:
    """A value on one `key = value` line of an INI file or a systemd unit: refused when it holds a line
    break or another control character (it would start a new key or section)."""
    if _CONTROL.search(value):
        raise ValueError(f"{value!r}: a control character or line break cannot stand in a one-line setting")
    return value


def yaml_scalar(value: str) -> str:
    """A YAML double-quoted scalar (JSON strings are YAML): every character escaped as needed."""
    return json.dumps(_no_nul(value))


@dataclass(frozen=True)
class YamlTagged:
    """A scalar with a local tag the reading program resolves, e.g. Recyclarr's `!env_var NAME`."""

    tag: str  # !name
    value: str


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(YamlTagged, lambda dumper, v: dumper.represent_scalar(v.tag, v.value))


def yaml_document(doc: object) -> str:
    """A whole YAML document the program writes for another program, keys in the order given."""
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False)
