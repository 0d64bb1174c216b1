"""One vocabulary for the program and the pack, and stack policies that report what they cannot classify."""

from __future__ import annotations

import ast
import copy
import sys
from pathlib import Path
from typing import Any

from conftest import CONTAINER, ROOT, containers, plan
from mediastack.catalog.services import BUNDLES, CATALOG
from mediastack_cli.analyzer import PolicyPack
from mediastack_cli.offline import Registration

sys.path.insert(0, str(ROOT / "policies"))
import mediastack_vocabulary as vocabulary
from mediastack_vocabulary import WORKLOAD_LABELS, Bundle, Label, Role, StateKind

WORDS = {
    value
    for value in [
        *(v for k, v in vars(Label).items() if not k.startswith("_")),
        vocabulary.HOST_FILE_MARKER,
        vocabulary.BACKUP_COVERS_MARKER,
    ]
}


def test_the_catalog_speaks_the_vocabulary() -> None:
    assert {s.role for s in CATALOG.values()} <= set(Role)
    assert {s.state for s in CATALOG.values() if s.state} <= set(StateKind)
    assert tuple(BUNDLES) == tuple(Bundle)


def _string_constants(path: Path) -> set[str]:
    """String literals in code (docstrings are prose and may name a label)."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            found.add(node.value)
    return found


def test_neither_the_program_nor_the_pack_repeats_a_word() -> None:
    """Label keys and markers are spelled once, in the vocabulary; everyone else imports them."""
    repeated = {}
    for folder in (ROOT / "mediastack", ROOT / "policies" / "mediastack_policies"):
        for path in sorted(folder.rglob("*.py")):
            words = _string_constants(path) & WORDS
            if words:
                repeated[str(path.relative_to(ROOT))] = sorted(words)
    assert repeated == {}


# -- stack policies: a workload without the program's labels is unknown, and said so ------------------


def _registration(props: dict[str, Any], name: str) -> Registration:
    return Registration(
        urn=f"urn:pulumi:test::mediastack::{CONTAINER}::{name}",
        type=CONTAINER,
        name=name,
        parent="",
        custom=True,
        inputs=props,
    )


def hand_written_qbittorrent() -> dict[str, Any]:
    """A qBittorrent written by hand beside the stack: another data root, another PUID, no bandwidth cap, no
    labels of the program's."""
    props = copy.deepcopy(containers(plan("prod"))["qbittorrent"])
    props["name"] = "qbittorrent-manual"
    props["labels"] = []
    props["envs"] = ["PUID=1001", "PGID=1001", "UMASK=022"]
    props["mounts"] = [{"type": "bind", "source": "/mnt/other", "target": "/data", "readOnly": False}]
    return props


def stack_messages(pack: PolicyPack, extra: list[Registration]) -> dict[str, list[str]]:
    resources = [copy.deepcopy(r) for r in plan("prod").resources if r.custom] + extra
    result: dict[str, list[str]] = {}
    for d in pack.analyze_stack(resources).diagnostics:
        # The analyzer prefixes the policy's description on a line of its own.
        result.setdefault(d.policyName, []).append(d.message.split("\n", 1)[-1])
    return result


def test_an_unlabelled_download_client_is_reported_not_passed(pack: PolicyPack) -> None:
    messages = stack_messages(pack, [_registration(hand_written_qbittorrent(), "qbittorrent-manual")])
    missing = ", ".join(WORKLOAD_LABELS)
    for policy, concern in [
        ("hardlinks-work", "whether it shares the one data root"),
        ("one-identity", "whether it writes the data root as the one identity"),
        ("download-bandwidth-limit", "whether it is a download client that needs a bandwidth limit"),
        ("stateful-services-backed-up", "whether it keeps state the backups must cover"),
    ]:
        assert (
            f"qbittorrent-manual: unknown workload (no {missing} label), so {concern} cannot be checked; "
            "deploy it through the mediastack program, or give it the program's labels"
        ) in messages.get(policy, []), (policy, messages.get(policy))


def test_one_missing_label_is_named(pack: PolicyPack) -> None:
    props = copy.deepcopy(containers(plan("prod"))["qbittorrent"])
    props["name"] = "qbittorrent-2"
    props["labels"] = [lb for lb in props["labels"] if lb["label"] != Label.role]
    messages = stack_messages(pack, [_registration(props, "qbittorrent-2")])
    assert messages["download-bandwidth-limit"] == [
        f"qbittorrent: unknown workload (no {Label.role} label), so whether it is a download client that needs a "
        "bandwidth limit cannot be checked; deploy it through the mediastack program, or give it the program's labels"
    ]


def test_the_programs_own_stack_has_no_unknown_workload(pack: PolicyPack) -> None:
    messages = stack_messages(pack, [])
    assert not [m for ms in messages.values() for m in ms if "unknown workload" in m]
