"""Host scripts kept as shell: a `.sh` file beside the code that installs it, fed generated blocks.

A line `#@name` in the file stands for a generated block: quoted parameters (`mediastack/quoting.py`), or
per-service branches. Everything else is the file as written, so shellcheck reads the source itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

HERE = Path(__file__).parent


def script(name: str, blocks: Mapping[str, str]) -> str:
    """The script `name` (a .sh file in this directory) with each `#@block` line replaced by its block (one or
    more lines, or nothing when the block is empty). A marker without a block is an error."""
    out = []
    for line in (HERE / name).read_text().splitlines(keepends=True):
        if line.startswith("#@"):
            block = blocks[line.strip()[2:]]
            out.append(block + "\n" if block else "")
        else:
            out.append(line)
    return "".join(out)
