"""Every catalog entry carries its image's facts, each fact traced to an upstream file."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from conftest import CONTAINER, container_labels, containers, dependencies_expanded, plan, plan_config, raw_config
from mediastack.catalog.image_facts import FACT_KINDS, IMAGE_FACTS, PUID
from mediastack.catalog.services import CATALOG
from mediastack.host.directories import storage_plan
from mediastack.plan.loading import parse_stack_config
from mediastack.plan.resolve import resolve
from mediastack.plan.resolved import ResolvedStack


def test_every_entry_has_the_facts_of_its_own_image_and_tag() -> None:
    for s in CATALOG.values():
        assert s.facts is not None, s.name
        assert s.facts.image == s.image, (s.name, s.facts.image)
        assert s.facts.tag == s.tag, f"{s.name}: pinned {s.tag}, facts read for {s.facts.tag}"
    assert set(IMAGE_FACTS) == {s.image for s in CATALOG.values()}, "facts for an image no entry runs"


def test_every_fact_names_its_source_or_says_why_not() -> None:
    for facts in IMAGE_FACTS.values():
        for source in facts.sources:
            assert "/" in source.repo and source.path and source.ref, (facts.image, source)
            assert set(source.facts) <= set(FACT_KINDS), (facts.image, source.facts)
        for kind in ("tag", "user", "binaries"):
            unread = [u for u in facts.unverified if u.startswith(f"{kind}:")]
            assert facts.sources_for(kind) or unread, f"{facts.image}: no source for {kind} and no reason given"
        assert facts.user == PUID or all(p.isdigit() for p in facts.user.split(":")), facts.user
        assert all(b.startswith("/") for b in facts.binaries), facts.binaries


# -- the program's choices, held to the facts -------------------------------------------------------------

STACKS = ("dev", "prod", "cluster")
SHELL_WORDS = {"if", "then", "else", "fi", "!", "exit", "kill", "true", "false", "[", "test", "echo", ":"}


def _resolved(stack: str) -> ResolvedStack:
    return resolve(parse_stack_config(raw_config(stack), stack), stack)


def health_programs(test: tuple[str, ...]) -> set[str]:
    """The programs a Docker health check runs: CMD's argv[0]; for CMD-SHELL the shell and the first word of
    every command in it (builtins aside)."""
    kind, *argv = test
    if kind == "CMD":
        return {argv[0]}
    programs = {"sh"}
    for command in re.split(r"[;&|]+|\bthen\b|\belse\b", argv[0]):
        words = [w for w in command.split() if w not in ("if", "!")]
        if words and words[0] not in SHELL_WORDS:
            programs.add(words[0])
    return programs


@pytest.mark.parametrize("stack", STACKS)
def test_health_checks_run_only_binaries_the_image_has(stack: str) -> None:
    for s in _resolved(stack).services:
        if s.health is None:
            assert s.spec.facts and not ({"sh", "curl", "wget"} & s.spec.facts.binary_names()), s.name
            continue
        missing = health_programs(s.health.test) - s.spec.facts.binary_names()
        assert not missing, f"{s.name}: its health check runs {sorted(missing)}, which its image's facts do not list"


def test_the_health_check_parser_sees_every_program() -> None:
    assert health_programs(("CMD-SHELL", "grep -qsx Tdarr_Node /proc/[0-9]*/comm")) == {"sh", "grep"}
    assert health_programs(("CMD-SHELL", "pgrep -f Tdarr_Node >/dev/null || exit 1")) == {"sh", "pgrep"}
    assert health_programs(("CMD-SHELL", "if ! curl -s x; then kill 1; exit 1; fi; wget -q y")) == {
        "sh",
        "curl",
        "wget",
    }


@pytest.mark.parametrize("stack", STACKS)
def test_each_state_directory_belongs_to_the_user_its_image_writes_as(stack: str) -> None:
    resolved = _resolved(stack)
    for d in storage_plan(resolved):
        if not d.service:
            continue
        service = resolved.get(d.service)
        facts = service.spec.facts
        bound = next(m for m in service.mounts if m.source == d.path)
        if bound.read_only:
            assert (d.uid, d.mode) == (0, 0o755), d  # generated files: root's, readable by all
            continue
        image_user = (
            (resolved.config.identity.puid, resolved.config.identity.pgid)
            if facts.user == PUID
            else tuple(int(p) for p in facts.user.split(":"))
        )
        assert (d.uid, d.gid) == image_user, (
            f"{d.path} is owned by {d.owner}, but {d.service}'s image writes as {facts.user} ({facts.image} "
            f"{', '.join(f'{src.repo}/{src.path}@{src.ref}' for src in facts.sources_for('user'))})"
        )
        if facts.dir_mode is not None:
            assert d.mode == facts.dir_mode, d


def test_a_service_that_writes_runs_as_its_images_own_user() -> None:
    """Setting `user` on an image that writes would leave its directories to someone else."""
    for s in CATALOG.values():
        if s.user and s.facts.writes:
            assert s.user == s.facts.user, f"{s.name}: user {s.user}, but its image writes as {s.facts.user}"


@pytest.mark.parametrize("stack", ("dev", "prod"))
def test_no_read_only_rootfs_receives_uploads(stack: str) -> None:
    """Docker refuses pulumi-docker's upload into a read-only rootfs before the container starts."""
    for name, c in containers(plan(stack)).items():
        if c.get("readOnly"):
            assert not c.get("uploads"), f"{name}: read-only rootfs with uploads {[u['file'] for u in c['uploads']]}"


def test_any_read_only_service_with_generated_files_gets_them_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """Generic: a read-only-rootfs entry that gains uploads (as Traefik's dynamic config will) is bound too."""
    from mediastack.catalog import services as catalog
    from mediastack.generate import files
    from mediastack.plan import resolve as resolve_module

    traefik = replace(catalog.CATALOG["traefik"], uploads=("traefik/dynamic.yml",))
    monkeypatch.setitem(catalog.CATALOG, "traefik", traefik)
    monkeypatch.setattr(resolve_module, "CATALOG", catalog.CATALOG)
    monkeypatch.setitem(files.CONTAINER_PATHS, "traefik/dynamic.yml", "/etc/traefik/dynamic/routes.yml")
    monkeypatch.setitem(files.GENERATORS, "traefik/dynamic.yml", lambda stack: "http: {}\n")
    c = containers(plan_config(raw_config("prod"), stack="traefik-files"))
    assert c["traefik"]["readOnly"] and not c["traefik"].get("uploads")
    bind = next(m for m in c["traefik"]["mounts"] if m["target"] == "/etc/traefik/dynamic")
    assert bind["readOnly"] and bind["source"] == "/srv/media/config/generated/traefik"
    assert "mediastack.files" in container_labels(c["traefik"])


@pytest.mark.parametrize("stack", STACKS)
def test_commands_keep_the_arguments_their_image_needs(stack: str) -> None:
    for s in _resolved(stack).services:
        keep = s.spec.facts.keep_args
        if not keep or keep[0] not in s.command:
            continue  # the image's own CMD runs, with its arguments
        start = s.command.index(keep[0])
        assert s.command[start : start + len(keep)] == keep, (
            f"{s.name}: command {' '.join(s.command[:6])}... drops {' '.join(keep)} ({s.spec.facts.image})"
        )


def test_postgres_keeps_the_images_config_file_and_tunes_on_top() -> None:
    prod = _resolved("prod").get("immich-postgres")
    assert prod.command[:3] == ("postgres", "-c", "config_file=/etc/postgresql/postgresql.conf")
    assert any(a.startswith("shared_buffers=") for a in prod.command)
    replica = _resolved("cluster").get("immich-postgres-replica")
    assert replica.command[2:5] == ("postgres", "-c", "config_file=/etc/postgresql/postgresql.conf")


@pytest.mark.parametrize("stack", ("dev", "prod"))
def test_capabilities_are_the_ones_the_image_needs(stack: str) -> None:
    for name, c in containers(plan(stack)).items():
        assert sorted(c["capabilities"].get("adds") or []) == sorted(CATALOG[name].facts.caps), name


def test_an_image_that_drops_privileges_keeps_what_it_takes() -> None:
    for facts in IMAGE_FACTS.values():
        if facts.starts_as_root:
            assert {"SETUID", "SETGID"} <= set(facts.caps), f"{facts.image}: starts as root, drops to {facts.user}"


def test_what_others_talk_to_is_created_healthy_before_them() -> None:
    """pulumi-docker's wait: the container resource completes once its health check passes, and the recorded
    dependencies put its dependents after it."""
    result = plan("prod")
    c = containers(result)
    by_name = {r.inputs["name"]: r for r in result.resources if r.type == CONTAINER}
    for name in ("immich-postgres", "immich-redis", "socket-proxy", "jellyfin", "traefik", "sonarr"):
        health = CATALOG[name].health
        assert c[name]["wait"] is True, name
        # start period, then three tries of a 30 s interval and a 10 s timeout, and a margin
        assert c[name]["waitTimeout"] == health.start_period_s + 3 * 40 + 30, name
    assert not c["node-exporter"].get("wait"), "nothing talks to node-exporter at deploy time"
    for dependent, needed in (("immich-server", "immich-postgres"), ("alertmanager", "prometheus")):
        assert by_name[needed].urn in dependencies_expanded(result, by_name[dependent]), (dependent, needed)


def _version(tag: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", tag)[:3])


def test_pins_are_at_or_past_the_upstream_fixes_the_stack_needs() -> None:
    # Traefik before v3.6.1 sends Docker API 1.24, which Engine 29 refuses (traefik/traefik issue 12253).
    assert _version(CATALOG["traefik"].tag) >= (3, 6, 1)
    # cAdvisor sees containers on the containerd image store from v0.54, published at ghcr.io from v0.53.
    assert CATALOG["cadvisor"].image == "ghcr.io/google/cadvisor" and _version(CATALOG["cadvisor"].tag) >= (0, 54, 0)
    # valkey-container tags the Debian variant <version> and <version>-<suite>; 8.1 is built on trixie.
    assert not CATALOG["immich-redis"].tag.endswith("-bookworm")
