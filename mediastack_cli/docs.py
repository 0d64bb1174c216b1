"""Generate docs/config.md (every config key) and docs/catalog.md (every service) from the code.

python -m mediastack_cli.docs          # rewrite both
python -m mediastack_cli.docs --check  # exit 1 when either is stale (the tests do this)
"""

from __future__ import annotations

import enum
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from mediastack.catalog.image_facts import IMAGE_FACTS, PUID
from mediastack.catalog.services import CATALOG
from mediastack.model.config import StackConfig
from mediastack.model.units import format_size
from mediastack.plan.loading import _unwrap, strip_optional

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        base = args[0]
        validators = {getattr(getattr(m, "func", None), "__name__", "") for m in args[1:]}
        if "parse_size" in validators:
            return "size"
        if "_absolute_path" in validators:
            return "absolute path"
        return _type_name(base)
    if origin in (typing.Union, types.UnionType):
        names = [_type_name(a) for a in args if a is not type(None)]
        return " or ".join(names) + (" or null" if type(None) in args else "")
    if origin is list:
        return f"list of {_type_name(args[0])}"
    if origin is dict:
        return f"map of {_type_name(args[1])}"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return " \\| ".join(f"`{m.value}`" for m in annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping"
    return getattr(annotation, "__name__", str(annotation))


def _default(field: Any) -> str:
    if field.is_required():
        return "**required**"
    value = field.default
    if value is PydanticUndefined:
        value = field.default_factory() if field.default_factory else None
    if isinstance(value, BaseModel):
        return "see below"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, str) or value is None or isinstance(value, (bool, int, float, list, dict)):
        return f"`{json.dumps(value)}`" if not isinstance(value, str) else f"`{value}`"
    return str(value)


def _rows(model: type[BaseModel], prefix: str, seen: set[type]) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        inner = _unwrap(field.annotation)
        annotation = typing.Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
        type_name = _type_name(annotation)
        default = _default(field)
        if type(field.default) is int and type_name.startswith("size"):
            default = f"`{format_size(field.default)}`"
        rows.append(f"| `{path}` | {type_name} | {default} | {(field.description or '').replace('|', '/')} |")
        if isinstance(inner, type) and issubclass(inner, BaseModel) and inner not in seen:
            origin = typing.get_origin(strip_optional(field.annotation))
            sep = "[N]." if origin is list else ".<name>." if origin is dict else "."
            rows += _rows(inner, f"{path}{sep}", seen | {inner})
    return rows


def config_md() -> str:
    head = """# Stack config reference

Every key under the `mediastack:` namespace of `Pulumi.<stack>.yaml`, generated from the model in
`mediastack/model/config.py` (`python -m mediastack_cli.docs`). Sizes take IEC units (`512MiB`, `8GiB`) or
Docker's `k`/`m`/`g`; decimal `MB`/`GB` are refused as ambiguous. Bad values stop the program before
anything is deployed, with one line per problem naming the key, the value and the fix.

Set a value with the Pulumi CLI, e.g. `pulumi config set --path 'mediastack:identity.tz' Europe/Berlin`,
or edit the stack file. A JSON schema for editors is in `docs/config.schema.json`.

| key | type | default | meaning |
|---|---|---|---|
"""
    rows = _rows(StackConfig, "mediastack:", set())
    notes = """

## Checks across keys

Beyond each key's own type, the program refuses a stack when:
- a service in `services` is not in the catalog (with a suggestion for typos), or a bundle is unknown;
- a core service (Traefik, socket proxy) is disabled, or an enabled service needs one that is disabled;
- a reservation is above its limit, or a limit above what the host has;
- the memory reservations of all enabled services exceed the host's memory minus `reserve_for_host`,
  or their CPU reservations exceed the host's CPUs;
- `paths.transcode_tmpfs` is more than half of Jellyfin's memory limit (tmpfs pages count against it);
- an `env` override would replace a generated secret, or an extra mount reuses a catalog mount target;
- a GPU of kind intel/amd is given without the host's `render_gid`;
- a service in `exposure.public` is unknown, has no web UI, or has no login of its own (docs/security.md);
- an extra mount's source, resolved, is the Docker or containerd socket or a directory above one (`/`, `/run`);
- a `lan_ranges` entry covers every address (`0.0.0.0/0`, `::/0`), or overlaps `exposure.docker_ranges` unless
  `exposure.allow_any_source` is true.
"""
    return head + "\n".join(rows) + notes


def catalog_md() -> str:
    lines = [
        "# Service catalog",
        "",
        "Generated from `mediastack/catalog/services.py` (`python -m mediastack_cli.docs`). One entry per service;",
        "everything else (containers, routes, scrape targets, probes, files) is derived from it.",
        "",
        "| service | bundle | tier | image | web UI | health check | metrics | networks |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in CATALOG.values():
        if s.health is None:
            probe = f", probed on :{s.probe[0]}{s.probe[1]}" if s.probe else ""
            health = f"none: nothing in the image can run one{probe}, watched by Prometheus `up`"
        else:
            health = "`" + " ".join(a for a in s.health.test[1:] if not a.startswith("--max-time") and a != "8") + "`"
        web = f"`{s.web.subdomain}` :{s.web.port}, login: {s.web.login or 'none'}" if s.web else ""
        metrics = f":{s.metrics.port}{s.metrics.path}" if s.metrics else ""
        nets = ", ".join(sorted(n.value for n in s.networks))
        lines.append(
            f"| {s.name} | {s.bundle} | {s.tier.value} | `{s.image_ref}` | {web} | {health} | {metrics} | {nets} |"
        )
    lines += ["", "## What each service is for", ""]
    lines += [f"- **{s.name}**: {s.description}" for s in CATALOG.values()]
    lines += image_facts_md()
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def image_facts_md() -> list[str]:
    """Each image's facts (mediastack/catalog/image_facts.py) and the upstream files they were read from."""
    lines = [
        "",
        "## Image facts",
        "",
        "What the program relies on about each image, read from the upstream files named under it (repository,",
        "path, tag or commit). The program derives each service's directory owner and mode, capabilities,",
        "command and health check from these, and tests/test_image_facts.py fails when a choice disagrees.",
        "A fact marked *not verified* could not be read upstream; the reason is given.",
    ]
    for image, facts in IMAGE_FACTS.items():
        services = ", ".join(s.name for s in CATALOG.values() if s.image == image)
        user = "the stack's PUID:PGID" if facts.user == PUID else facts.user
        runs = f"starts as root, then runs as {user}" if facts.starts_as_root else f"runs as {user}"
        lines += ["", f"### `{image}:{facts.tag}` ({services})", ""]
        lines += [
            "| fact | value |",
            "|---|---|",
            f"| user | {runs} |",
            f"| at start | {_cell(facts.entrypoint)} |",
            f"| capabilities | {', '.join(facts.caps) or 'none'} |",
            f"| binaries | {', '.join(f'`{b}`' for b in facts.binaries)} |",
            f"| writes | {', '.join(f'`{w}`' for w in facts.writes) or 'nothing'} |",
        ]
        if facts.keep_args:
            lines.append(f"| command keeps | `{' '.join(facts.keep_args)}` |")
        if facts.engine:
            lines.append(f"| engine | {_cell(facts.engine)} |")
        if facts.dir_mode is not None:
            lines.append(f"| directory mode | {facts.dir_mode:o} |")
        lines += ["", "Sources:", ""]
        for src in facts.sources:
            note = f": {src.note}" if src.note else ""
            lines.append(f"- {', '.join(src.facts)}: `{src.repo}` `{src.path}` at `{src.ref}`{note}")
        for reason in facts.unverified:
            lines.append(f"- *not verified*: {reason}")
    return lines


def schema_json() -> str:
    return json.dumps(StackConfig.model_json_schema(mode="validation"), indent=2) + "\n"


FILES = {"config.md": config_md, "catalog.md": catalog_md, "config.schema.json": schema_json}


def main(argv: list[str]) -> int:
    stale = []
    for name, make in FILES.items():
        path = DOCS / name
        text = make()
        if "--check" in argv:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.parent.mkdir(exist_ok=True)
            path.write_text(text)
    if stale:
        print(f"stale: {', '.join(stale)}; run python -m mediastack_cli.docs", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
