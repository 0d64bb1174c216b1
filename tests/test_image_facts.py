"""Every catalog entry carries its image's facts, each fact traced to an upstream file."""

from __future__ import annotations

from components.catalog import CATALOG
from components.image_facts import FACT_KINDS, IMAGE_FACTS, PUID


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
