"""Host-side least privilege (issue 16): the host scripts touch only what the stack made."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from components.loading import parse_stack_config
from components.resolve import resolve
from components.storage import create_script, delete_script
from conftest import raw_config


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_storage_delete_removes_only_the_directories_it_created(tmp_path: Path) -> None:
    """L2: an empty /srv (or /srv/media) that was there before the stack stays after its delete."""
    stack = resolve(parse_stack_config(raw_config("prod"), "prod"), "prod")
    root = tmp_path / "root"
    (root / "srv/media").mkdir(parents=True)  # the user's, empty
    (root / "etc").mkdir()
    before = _tree(root)
    env = {**os.environ, "ROOT": str(root)}
    for script in (create_script(stack), delete_script(stack)):
        done = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    assert _tree(root) == before
    # Without a record (a host set up before the record existed) nothing is removed.
    subprocess.run(["sh", "-c", create_script(stack)], env=env, check=True, capture_output=True)
    (root / "var/lib/mediastack/created/storage").unlink()
    kept = _tree(root)
    done = subprocess.run(["sh", "-c", delete_script(stack)], env=env, capture_output=True, text=True, timeout=60)
    assert "all left in place" in done.stdout and _tree(root) == kept
