"""Host-side least privilege (issue 16): the host scripts touch only what the stack made."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from conftest import raw_config
from mediastack.host.directories import create_script, delete_script
from mediastack.plan.loading import parse_stack_config
from mediastack.plan.resolve import resolve


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

    from mediastack.plan.loading import ConfigError, parse_stack_config
    from mediastack_policies.privileges import check_identity_env
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


RESTIC_SWAP = """#!/bin/sh
# restic, but at the start of a restore into a work directory the media user swaps the work directory's name
# for a link to a directory outside (what a race between the tool's check and its use would do).
case " $* " in
  *" restore "*)
    case " $* " in *" --target / "*) ;; *)
      mv "$CONFIG_ROOT/.mediastack-restore" "$CONFIG_ROOT/.moved-away"
      ln -s "$OUTSIDE" "$CONFIG_ROOT/.mediastack-restore"
    ;; esac ;;
esac
exec restic "$@"
"""


def test_restore_cannot_be_redirected_by_the_config_directory_owner(tmp_path: Path) -> None:
    """L10: the restore's work directory sits in CONFIG_ROOT, which the media user owns; swapping its name for
    a link must not make root write the snapshot through the link."""
    from test_backup import Tool, config_for

    from conftest import require_tool

    require_tool("restic")
    host = tmp_path / "host"
    host.mkdir()
    config = config_for(host, ["arr"])
    sonarr = host / "config/sonarr"
    sonarr.mkdir(parents=True)
    (sonarr / "config.xml").write_text("<Config><Port>8989</Port></Config>\n")
    outside = tmp_path / "outside"  # stands for /etc
    outside.mkdir()
    swap = tmp_path / "restic-swap"
    swap.write_text(RESTIC_SWAP)
    swap.chmod(0o755)
    tool = Tool(host, config)
    tool.run("init")
    tool.run("backup")
    (sonarr / "config.xml").write_text("changed\n")
    tool.run("restore", "sonarr", RESTIC=str(swap), CONFIG_ROOT=str(host / "config"), OUTSIDE=str(outside))
    assert list(outside.iterdir()) == [], "the snapshot was written through the planted link"
    assert (sonarr / "config.xml").read_text() == "<Config><Port>8989</Port></Config>\n"
    assert (host / "config/.mediastack-restore").is_symlink()  # the planted link is left as it is
