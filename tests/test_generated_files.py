"""Generated files checked by the programs that consume them, on what `mediastack render` writes."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import ROOT, require_tool
from mediastack_cli.main import app

STACKS = ("dev", "prod", "cluster")


@pytest.fixture(scope="module", params=STACKS)
def rendered(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    out = tmp_path_factory.mktemp(f"render-{request.param}")
    result = CliRunner().invoke(app, ["render", "--stack", request.param, "--out", str(out), "--project", str(ROOT)])
    assert result.exit_code == 0, result.output
    return request.param, out


def run(*args: str, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, **kwargs)


def test_prometheus_config_passes_promtool(rendered: tuple[str, Path]) -> None:
    stack, out = rendered
    config = out / "prometheus/prometheus.yml"
    if stack == "dev":
        assert not config.exists()  # no monitoring bundle in dev
        return
    result = run(require_tool("promtool"), "check", "config", "--syntax-only", str(config))
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_config_rejects_a_broken_file(tmp_path: Path) -> None:
    """The check above can fail: promtool refuses a scrape job without a name."""
    bad = tmp_path / "prometheus.yml"
    bad.write_text("scrape_configs:\n  - static_configs: [{targets: ['a:1']}]\n")
    result = run(require_tool("promtool"), "check", "config", "--syntax-only", str(bad))
    assert result.returncode != 0


def test_alertmanager_config_passes_amtool(rendered: tuple[str, Path]) -> None:
    stack, out = rendered
    config = out / "alertmanager/alertmanager.yml"
    if stack == "dev":
        return
    result = run(require_tool("amtool"), "check-config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr


def test_blackbox_config_passes_its_own_check(rendered: tuple[str, Path]) -> None:
    stack, out = rendered
    if stack == "dev":
        return
    exporter = require_tool("prometheus-blackbox-exporter")
    result = run(exporter, "--config.check", f"--config.file={out / 'blackbox/config.yml'}")
    assert result.returncode == 0, result.stdout + result.stderr


def test_scripts_pass_shellcheck(rendered: tuple[str, Path]) -> None:
    stack, out = rendered
    scripts = sorted(out.rglob("*.sh"))
    # storage, sysctl and daemon.json: create and delete each; GPU detection; the clients' seeds; the backup
    # tool and its create and delete; prod (a `link`): the shaping tool and its create and delete. Cluster: per
    # host its storage, tuning and backup scripts (the seeds only on gpu1, where the clients run: 11 + 10 + 10),
    # the swarm bootstrap (init and its delete, two tokens, a join delete, per host a labels pair, per joining
    # host a join and a member delete: 15), the GlusterFS storage (mount, brick, volume pairs: 6) and Immich's
    # database replica (its entrypoint and init: 2)
    assert len(scripts) == {"dev": 11, "prod": 14, "cluster": 11 + 10 + 10 + 15 + 6 + 2}[stack]
    result = run(require_tool("shellcheck"), "--shell=sh", "--severity=style", *map(str, scripts))
    assert result.returncode == 0, result.stdout


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): oct(p.stat().st_mode & 0o7777) for p in sorted(root.rglob("*"))}


def test_storage_scripts_are_idempotent_and_revert(rendered: tuple[str, Path], tmp_path: Path) -> None:
    """Run for real against a sandbox root: twice (same state), then delete (back to what was there)."""
    _, out = rendered
    host_dir = next(d for d in sorted((out / "hosts").iterdir()) if (d / "storage-create.sh").exists())
    sandbox = tmp_path / "root"
    sandbox.mkdir()
    # Something the user already had inside the data root must survive the delete step.
    from conftest import raw_config
    from mediastack.plan.loading import parse_stack_config

    stack = rendered[0]
    data_root = parse_stack_config(raw_config(stack), stack).paths.data_root
    keep = sandbox / data_root.lstrip("/") / "media/movies/Film (2020)"
    keep.mkdir(parents=True)
    (keep / "film.mkv").write_text("x")
    before = _tree(sandbox)
    env = {**os.environ, "ROOT": str(sandbox)}
    first = run("sh", str(host_dir / "storage-create.sh"), env=env)
    assert first.returncode == 0, first.stderr
    assert "directories created" in first.stdout and not first.stdout.startswith("storage: 0 ")
    after_first = _tree(sandbox)
    second = run("sh", str(host_dir / "storage-create.sh"), env=env)
    assert second.returncode == 0 and second.stdout.strip() == "storage: 0 directories created"
    assert _tree(sandbox) == after_first
    assert (sandbox / data_root.lstrip("/") / "torrents/tv").is_dir()
    mode = oct((sandbox / data_root.lstrip("/") / "torrents/tv").stat().st_mode & 0o777)
    assert mode == "0o775"  # umask 002: group-writable for every app of the one identity
    deleted = run("sh", str(host_dir / "storage-delete.sh"), env=env)
    assert deleted.returncode == 0, deleted.stderr
    assert _tree(sandbox) == before
