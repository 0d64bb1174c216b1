"""`mediastack plan --against OLD.json`: the images an upgrade changes, read from two real plans."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml
from typer.testing import CliRunner

from conftest import ROOT
from mediastack.catalog.services import CATALOG
from mediastack_cli.main import app
from mediastack_cli.upgrades import ImageChange, image_changes

runner = CliRunner()


def project(tmp_path: Path, **services: dict[str, object]) -> Path:
    """A copy of the project whose dev stack overrides some services (e.g. a newer image tag)."""
    target = tmp_path / "project"
    target.mkdir(exist_ok=True)
    for name in ("Pulumi.yaml", "__main__.py"):
        shutil.copy(ROOT / name, target)
    doc = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
    overrides = doc["config"].setdefault("mediastack:services", {})
    for name, override in services.items():
        overrides.setdefault(name, {}).update(override)
    (target / "Pulumi.dev.yaml").write_text(yaml.safe_dump(doc))
    return target


def plan(project_dir: Path, *args: str) -> str:
    result = runner.invoke(
        app, ["plan", "--stack", "dev", "--project", str(project_dir), "--no-policy", "--quiet", *args]
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_a_changed_pin_is_listed_with_before_and_after(tmp_path: Path) -> None:
    old = tmp_path / "old.json"
    plan(project(tmp_path), "--json", str(old))
    sonarr = CATALOG["sonarr"]
    output = plan(project(tmp_path, sonarr={"image_tag": "4.0.99"}), "--against", str(old))
    assert "images changed against" in output
    assert "media-sonarr-image" in output and "changed" in output
    assert f"{sonarr.image}:{sonarr.tag}" in output.replace("\n", "").replace("│", "").replace(" ", "")
    assert "1 image(s) changed" in output
    assert "radarr" not in output.split("images changed against")[1]


def test_an_unchanged_plan_says_so(tmp_path: Path) -> None:
    old = tmp_path / "old.json"
    plan(project(tmp_path), "--json", str(old))
    output = plan(project(tmp_path), "--against", str(old))
    assert f"images: none changed against {old}" in output


def test_a_disabled_service_is_a_removed_image(tmp_path: Path) -> None:
    old = tmp_path / "old.json"
    plan(project(tmp_path), "--json", str(old))
    output = plan(project(tmp_path, sabnzbd={"enabled": False}), "--against", str(old))
    assert "media-sabnzbd-image" in output and "removed" in output


def test_image_changes_added_removed_changed() -> None:
    def doc(**refs: str) -> dict[str, object]:
        return {
            "resources": [
                {"type": "docker:index/remoteImage:RemoteImage", "name": n, "inputs": {"name": r}}
                for n, r in refs.items()
            ]
            + [{"type": "docker:index/image:Image", "name": "built", "inputs": {"imageName": "me/x:1"}}]
        }

    changes = image_changes(doc(a="r/a:1", b="r/b:1"), doc(a="r/a:2", c="r/c:1"))
    assert changes == [
        ImageChange("a", "r/a:1", "r/a:2"),
        ImageChange("b", "r/b:1", None),
        ImageChange("c", None, "r/c:1"),
    ]
    assert [c.kind for c in changes] == ["changed", "removed", "added"]


def test_an_unreadable_earlier_plan_is_a_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "old.json"
    bad.write_text("{not json")
    for path, message in (
        (bad, "not a plan written by `mediastack plan --json`"),
        (tmp_path / "missing.json", "no such file; write one with `mediastack plan --json`"),
    ):
        result = runner.invoke(app, ["plan", "--stack", "dev", "--project", str(ROOT), "--against", str(path)])
        assert result.exit_code == 2
        assert f"--against {path}: {message}" in result.output.replace("\n", "")
        assert "Traceback" not in result.output
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"stack": "dev"}))
    result = runner.invoke(app, ["plan", "--stack", "dev", "--project", str(ROOT), "--against", str(other)])
    assert result.exit_code == 2 and "no `resources` list" in result.output
