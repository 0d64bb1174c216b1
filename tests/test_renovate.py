"""renovate.json: valid for Renovate's own validator, and Renovate's own regex manager finds every catalog pin.

Both run the pinned `renovate` npm package (.ci/renovate, installed by .ci/run with `npm ci`): the validator
CLI, and the regex manager's `extractPackageFile` plus `applyPackageRules` through tests/renovate_extract.js.
Without Node.js or the package these tests skip, unless CI=true.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT
from mediastack.catalog.services import CATALOG

RENOVATE = ROOT / ".ci" / "renovate"
MODULES = RENOVATE / "node_modules"
VALIDATOR = MODULES / ".bin" / "renovate-config-validator"
CATALOG_FILE = ROOT / "mediastack" / "catalog" / "services.py"


def require_renovate() -> Path:
    missing = None
    if not shutil.which("node"):
        missing = "Node.js is not installed"
    elif not VALIDATOR.exists():
        missing = "the pinned renovate package is not installed: npm ci --prefix .ci/renovate"
    if missing is None:
        return VALIDATOR
    if os.environ.get("CI") == "true":
        pytest.fail(f"{missing} (.ci/run installs it)")
    pytest.skip(missing)


def validate(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(require_renovate()), "--strict", str(config)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=config.parent,
        env={**os.environ, "LOG_LEVEL": "info"},
        check=False,
    )


def test_the_pinned_validator_is_the_one_installed() -> None:
    require_renovate()
    wanted = json.loads((RENOVATE / "package.json").read_text())["dependencies"]["renovate"]
    installed = json.loads((MODULES / "renovate" / "package.json").read_text())["version"]
    assert installed == wanted


def test_renovate_json_passes_renovates_validator() -> None:
    result = validate(ROOT / "renovate.json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Config validated successfully" in result.stdout + result.stderr


def test_the_validator_refuses_a_broken_config(tmp_path: Path) -> None:
    doc = json.loads((ROOT / "renovate.json").read_text())
    doc["automerge"] = "sometimes"  # must be a boolean
    doc["packageRules"][0]["matchPackageName"] = ["typo"]  # not an option
    broken = tmp_path / "renovate.json"
    broken.write_text(json.dumps(doc))
    result = validate(broken)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "automerge" in output and "matchPackageName" in output


@functools.cache
def extracted() -> tuple[dict[str, Any], ...]:
    require_renovate()
    result = subprocess.run(
        ["node", str(ROOT / "tests" / "renovate_extract.js"), str(ROOT / "renovate.json"), str(CATALOG_FILE)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NODE_PATH": str(MODULES), "LOG_LEVEL": "fatal"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return tuple(json.loads(result.stdout))


def test_every_catalog_pin_is_found_once_with_its_registry_name() -> None:
    deps = extracted()
    found = [(d["depName"], d["currentValue"]) for d in deps]
    pins = {(s.image, s.tag) for s in CATALOG.values()}  # the replica reuses its primary's pin
    assert len(found) == len(set(found)), "a pin matched twice would open two changes"
    assert set(found) == pins
    assert {d["datasource"] for d in deps} == {"docker"}
    text = CATALOG_FILE.read_text()
    for d in deps:
        # Renovate rewrites exactly this text: it must be in the file, with the tag inside it.
        assert d["replaceString"] in text and d["currentValue"] in d["replaceString"], d


def test_one_change_per_app_grouped_where_apps_move_together() -> None:
    deps = {d["depName"]: d for d in extracted()}
    groups: dict[str, set[str]] = {}
    for name, d in deps.items():
        if d["groupName"]:
            groups.setdefault(d["groupName"], set()).add(name)
    immich = {s.image for s in CATALOG.values() if s.image.startswith("ghcr.io/immich-app/")}
    assert groups["Immich"] == immich and len(immich) == 3
    assert groups["Tdarr"] == {CATALOG["tdarr"].image, CATALOG["tdarr-node"].image}
    exportarr = {CATALOG[f"{app}-exporter"].image for app in ("sonarr", "radarr", "prowlarr")}
    assert groups["exportarr (sonarr, radarr, prowlarr exporters)"] == exportarr == {"ghcr.io/onedr0p/exportarr"}
    # Everything else is its own change: no group.
    grouped = set().union(*groups.values())
    assert all(deps[name]["groupName"] is None for name in set(deps) - grouped)
    assert deps["ghcr.io/immich-app/postgres"]["allowedVersions"] == "/^14-/"


def test_only_the_locally_built_image_is_left_out() -> None:
    built = {s.image for s in CATALOG.values() if s.build}
    disabled = {d["depName"] for d in extracted() if not d["enabled"]}
    assert disabled == built == {"mediastack/media-exporter"}


def test_nothing_merges_itself() -> None:
    doc = json.loads((ROOT / "renovate.json").read_text())
    assert doc["automerge"] is False and doc["platformAutomerge"] is False
    assert not any(rule.get("automerge") for rule in doc["packageRules"])
