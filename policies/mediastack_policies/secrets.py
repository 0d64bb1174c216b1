"""Let policies see which values are Pulumi secrets.

pulumi_policy unwraps secrets before a policy sees the properties, so "is this environment variable
a secret?" cannot be answered from them. The pack's entry point swaps in a deserializer that keeps
the unwrapped value but marks it (a str, list or dict subclass), so every policy reads values as
before and `secret-env` can ask `is_secret`. Installed only in the pack's own process.

`secret-not-in-container-env` (privileges.py) uses the same marks: on one host no container carries a secret
value in its environment at all.
"""

from __future__ import annotations

from typing import Any

SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"


class SecretStr(str):
    pass


class SecretList(list):
    pass


class SecretDict(dict):
    pass


class SecretNumber(float):
    pass


def mark(value: Any) -> Any:
    if isinstance(value, str):
        return SecretStr(value)
    if isinstance(value, list):
        return SecretList(value)
    if isinstance(value, dict):
        return SecretDict(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return SecretNumber(value)
    return value


def is_secret(value: Any) -> bool:
    return isinstance(value, (SecretStr, SecretList, SecretDict, SecretNumber)) or getattr(
        type(value), "mediastack_secret", False
    )


def install() -> bool:
    """Patch pulumi_policy's deserializer; False (and nothing changed) if its layout is not the expected one."""
    try:
        from pulumi_policy import deserialize, policy
    except ImportError:
        return False
    original = getattr(deserialize, "_deserialize_property", None)
    if original is None or not hasattr(policy, "deserialize_properties"):
        return False

    def prop(value: Any, proxy_secrets: bool = False) -> Any:
        if isinstance(value, dict) and value.get(SIG_KEY) == SECRET_SIG and "value" in value:
            return mark(prop(value["value"], proxy_secrets))
        if isinstance(value, dict) and SIG_KEY not in value:
            return {k: prop(v, proxy_secrets) for k, v in value.items()}
        if isinstance(value, list):
            return [prop(v, proxy_secrets) for v in value]
        return original(value, proxy_secrets)

    def properties(props: dict[str, Any], proxy_secrets: bool = False) -> dict[str, Any]:
        if proxy_secrets:  # remediation keeps pulumi_policy's own secret proxies
            return deserialize.deserialize_properties(props, proxy_secrets)
        return {k: prop(v) for k, v in props.items()}

    policy.deserialize_properties = properties  # type: ignore[attr-defined]
    _keep_marks_through_proxies()
    return True


def _keep_marks_through_proxies() -> None:
    """pulumi_policy wraps every list and dict in an unknown-checking proxy built from a fresh copy, which drops
    the mark of a whole secret list or map (a container's `envs`, a Swarm service's `env`). A marked value gets a
    marked proxy."""
    from pulumi_policy import proxy

    original = getattr(proxy, "_proxy_helper", None)
    lists, dicts = getattr(proxy, "_ListProxy", None), getattr(proxy, "_DictProxy", None)
    if original is None or lists is None or dicts is None:
        return
    marked = {
        lists: type("SecretListProxy", (lists,), {"mediastack_secret": True}),
        dicts: type("SecretDictProxy", (dicts,), {"mediastack_secret": True}),
    }

    def helper(to_proxy: Any, props_acc: list[str]) -> Any:
        result = original(to_proxy, props_acc)
        if is_secret(to_proxy) and type(result) in marked:
            result.__class__ = marked[type(result)]
        return result

    proxy._proxy_helper = helper  # type: ignore[attr-defined]
