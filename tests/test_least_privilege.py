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


def test_identity_env_cannot_make_an_app_root(pack) -> None:
    """L3: an env override could set PUID=0 past the identity checks. The config refuses the key in `env`, and
    the policy pack refuses a container whose PUID or PGID is 0 however it got there."""
    import copy

    from test_policies import CONTAINER, analyze, base_container, with_

    from components.loading import ConfigError, parse_stack_config
    from mediastack_policies.resource import check_identity_env
    from mediastack_policies.shapes import from_container

    cfg = copy.deepcopy(raw_config("prod"))
    cfg["services"] = {"sonarr": {"env": {"PUID": "0"}}}
    try:
        parse_stack_config(cfg, "prod")
    except ConfigError as error:
        assert "services.sonarr.env" in str(error) and "set identity.puid instead of env.PUID" in str(error)
    else:
        raise AssertionError("PUID in env was accepted")

    root = with_(base_container(), envs=["PUID=0", "PGID=1000", "UMASK=002"])
    assert "identity-env" in analyze(pack, CONTAINER, root)
    assert "identity-env" not in analyze(pack, CONTAINER, base_container())
    messages: list[str] = []
    w = from_container("sonarr", {**root, "name": "sonarr"})
    check_identity_env(w, {}, lambda message, _: messages.append(message))
    assert messages == [
        "sonarr: PUID=0 would run the app as root or as no user; set identity.puid to the data root's owner (not 0) "
        "and remove it from the service's env"
    ]
