"""From Pulumi config to a validated StackConfig, or one clear message per problem."""

from __future__ import annotations

import json
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from mediastack.model.config import NAMESPACE, StackConfig
from mediastack.model.problems import _MISSING, ConfigError, Problem

SECRET_MASK = "[secret]"


def key_path(loc: tuple[Any, ...]) -> str:
    path = NAMESPACE + ":"
    for i, part in enumerate(loc):
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += ("." if i else "") + str(part)
    return path


def strip_optional(annotation: Any) -> Any:
    """Drop Annotated[...] and Optional[...]: what is left is a model, a list, a dict or a scalar."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return strip_optional(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return strip_optional(next(a for a in typing.get_args(annotation) if a is not type(None)))
    return annotation


def _unwrap(annotation: Any) -> Any:
    """The model class behind Optional[...], list[...], dict[str, ...] and Annotated[...]."""
    annotation = strip_optional(annotation)
    origin = typing.get_origin(annotation)
    if origin in (list, tuple):
        return _unwrap(typing.get_args(annotation)[0])
    if origin is dict:
        return _unwrap(typing.get_args(annotation)[1])
    return annotation


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    model: Any = StackConfig
    for part in loc:
        if isinstance(part, int):
            continue
        if isinstance(model, type) and issubclass(model, BaseModel):
            field = model.model_fields.get(str(part))
            if field is None:
                # a dict key (service name) sits between the dict field and its value model
                continue
            model = _unwrap(field.annotation)
        else:
            return None
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _explain(error: Any) -> str:
    kind, msg, loc = error["type"], error["msg"], tuple(error["loc"])
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        allowed = ", ".join(model.model_fields) if model else "see docs/config.md"
        return f"unknown key; allowed keys here: {allowed}"
    if kind == "missing":
        return "required key is missing; add it (see docs/config.md)"
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    if kind in ("model_type", "model_attributes_type"):
        model = _model_at(loc)
        keys = ", ".join(model.model_fields) if model else ""
        return f"expected a mapping with keys {keys}" if keys else "expected a mapping"
    return msg[0].lower() + msg[1:] if msg else kind


def _value_at(raw: Any, loc: tuple[Any, ...]) -> Any:
    value = raw
    for part in loc:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return value


def problems_from(error: ValidationError, raw: dict[str, Any], secret_keys: frozenset[str]) -> list[Problem]:
    problems = []
    for err in error.errors():
        loc = tuple(err["loc"])
        value = SECRET_MASK if loc and f"{NAMESPACE}:{loc[0]}" in secret_keys else _value_at(raw, loc)
        problems.append(Problem(key_path(loc), value, _explain(err)))
    return problems


def parse_stack_config(raw: dict[str, Any], stack: str, secret_keys: frozenset[str] = frozenset()) -> StackConfig:
    """Validate raw config (keys without the namespace) against the model and the catalog."""
    from mediastack.plan.checks import check_against_catalog

    try:
        config = StackConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(stack, problems_from(error, raw, secret_keys)) from None
    problems = check_against_catalog(config)
    if problems:
        raise ConfigError(stack, problems)
    return config


def decode(value: Any) -> Any:
    """Pulumi hands structured and scalar config to programs as JSON text; plain strings stay strings."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def raw_config_from_pulumi() -> tuple[dict[str, Any], frozenset[str]]:
    """Every `mediastack:` key the engine passed to this program, decoded, and which are secret."""
    from pulumi.runtime import config as runtime_config

    merged: dict[str, Any] = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    prefix = NAMESPACE + ":"
    raw = {key[len(prefix) :]: decode(value) for key, value in merged.items() if key.startswith(prefix)}
    secret_keys = frozenset(
        key
        for key in {*runtime_config.get_config_secret_keys_env(), *runtime_config._SECRET_KEYS.get()}
        if key.startswith(prefix)
    )
    return raw, secret_keys


def load_from_pulumi(stack: str) -> StackConfig:
    raw, secret_keys = raw_config_from_pulumi()
    return parse_stack_config(raw, stack, secret_keys)
