"""One app's HTTP API as the wiring calls it (waits, retries, errors that name the app), and the base of every
kind of wiring. Plain Python over httpx, with no Pulumi in it: it runs in the dynamic provider and in tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

NOT_READY = frozenset({502, 503, 504})


# Traefik answers 404 for a host it has no router for: a container whose health check has not passed yet.
NOT_ROUTED = 404


class WiringError(Exception):
    """The app refused or could not be reached in time; the message says which and what it answered."""


@dataclass(frozen=True)
class Retry:
    attempts: int = 40
    first_delay_s: float = 1.0
    max_delay_s: float = 10.0
    timeout_s: float = 15.0

    @staticmethod
    def from_props(props: Mapping[str, Any]) -> Retry:
        raw = props.get("retry") or {}
        return Retry(**{k: raw[k] for k in ("attempts", "first_delay_s", "max_delay_s", "timeout_s") if k in raw})


def _answer(response: httpx.Response) -> str:
    """A short account of a refusal: *arr validation messages when there are some, else the body."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, list) and body and all(isinstance(i, dict) for i in body):
        messages = [f"{i.get('propertyName') or 'request'}: {i.get('errorMessage')}" for i in body]
        return "; ".join(messages)
    if isinstance(body, dict) and ("message" in body or "error" in body):
        return str(body.get("message") or body.get("error"))
    text = response.text.strip().replace("\n", " ")
    return text[:200] or "(empty body)"


def _not_ready(response: httpx.Response, path: str) -> str | None:
    """Why an answer means the app is still starting (a call is retried), or None."""
    return f"HTTP {response.status_code} (not ready)" if response.status_code in NOT_READY else None


def _not_routed_or_ready(response: httpx.Response, path: str) -> str | None:
    """As _not_ready, and also the proxy's 404 for a route it does not have yet (only for a health path)."""
    if response.status_code == NOT_ROUTED:
        return f"HTTP {NOT_ROUTED} for {path} (not routed yet)"
    return None if response.status_code not in NOT_READY else f"HTTP {response.status_code} for {path} (not ready)"


class AppClient:
    """One app's API at one base URL, with its authentication and the wiring's retry policy."""

    def __init__(
        self,
        app: str,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        verify_tls: bool = True,
        retry: Retry | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.app = app
        self.base_url = base_url.rstrip("/")
        self.retry = retry or Retry()
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=dict(headers or {}),
            verify=verify_tls,
            timeout=self.retry.timeout_s,
            follow_redirects=False,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AppClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, *, ok: tuple[int, ...] = (), **kwargs: Any) -> httpx.Response:
        """The response to a call, once the app is up; raises WiringError for anything but success or `ok`."""
        response = self._answered(method, path, _not_ready, **kwargs)
        return self._checked(method, path, response, ok)

    def wait_ready(self, health_path: str) -> None:
        """Polls the app's own health path through the proxy until it answers (bounded like every call)."""
        self._answered("GET", health_path, _not_routed_or_ready)

    def _answered(
        self, method: str, path: str, waiting: Callable[[httpx.Response, str], str | None], **kwargs: Any
    ) -> httpx.Response:
        """The first response `waiting` does not call a wait, retried with backoff within the retry policy."""
        delay = self.retry.first_delay_s
        last = ""
        for attempt in range(1, self.retry.attempts + 1):
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as error:
                last = f"no answer ({type(error).__name__}: {error})"
            else:
                reason = waiting(response, path)
                if reason is None:
                    return response
                last = reason
            if attempt < self.retry.attempts:
                self._sleep(delay)
                delay = min(delay * 2, self.retry.max_delay_s)
        raise WiringError(
            f"{self.app} at {self.base_url} was not ready after {self.retry.attempts} attempts: {last}; "
            f"check that the {self.app} container is running and healthy and that its URL is right"
        )

    def _checked(self, method: str, path: str, response: httpx.Response, ok: tuple[int, ...]) -> httpx.Response:
        status = response.status_code
        if status < 300 or status in ok:
            return response
        if status in (401, 403):
            raise WiringError(
                f"{self.app} at {self.base_url} refused the stack's credentials for {method} {path} "
                f"(HTTP {status}: {_answer(response)}); the app's API key or password is not the one the stack "
                f"generated: see docs/pipeline.md (keys) or set mediastack:wiring.enabled to false"
            )
        raise WiringError(f"{self.app} refused {method} {path} (HTTP {status}): {_answer(response)}")

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise WiringError(
                f"{self.app} answered {method} {path} with something that is not JSON: {_answer(response)}; "
                f"is {self.base_url} really {self.app}?"
            ) from None


class Kind:
    """One kind of wiring: `apply` makes the app match `props` and returns the item's id."""

    # Inputs whose change means a different item (delete the old one, create the new one).
    replace_on: tuple[str, ...] = ()

    def client(self, props: Mapping[str, Any]) -> AppClient:
        raise NotImplementedError

    def replaces(self, olds: Mapping[str, Any], news: Mapping[str, Any]) -> list[str]:
        """The changed inputs that make the new item another item than the old one."""
        return [k for k in ("kind", *self.replace_on) if olds.get(k) != news.get(k)]

    def apply(self, props: Mapping[str, Any], current_id: str | None) -> str:
        raise NotImplementedError

    def remove(self, props: Mapping[str, Any], item_id: str) -> None:
        raise NotImplementedError

    def exists(self, props: Mapping[str, Any], item_id: str) -> bool:
        """Whether the app still has the item (`pulumi refresh` notices one removed by hand)."""
        raise NotImplementedError


def _client(props: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> AppClient:
    api = AppClient(
        props["app"],
        props["url"],
        headers=headers,
        verify_tls=bool(props.get("verify_tls", True)),
        retry=Retry.from_props(props),
    )
    if props.get("health"):  # absent from the state of wirings made before the wait existed
        try:
            api.wait_ready(props["health"])
        except BaseException:
            api.close()
            raise
    return api


def _same_key(key: str, have: Any, wanted: Any) -> bool:
    """Whether an item's natural key matches: names ignore case (the apps' "Should be unique" rule,
    ProviderControllerBase: `p.Name.EqualsIgnoreCase(c)`); paths ignore a trailing slash."""
    if not isinstance(have, str) or not isinstance(wanted, str):
        return False
    if key == "name":
        return have.casefold() == wanted.casefold()
    return have.rstrip("/") == wanted.rstrip("/")


def _fields_over(base: list[Any], over: list[Any]) -> list[Any]:
    """Provider fields (`[{name, value}, ...]`): `over`'s values replace `base`'s by name, the rest stay
    (a secret the app masks as ******** stays masked, and the app keeps its stored value)."""
    wanted = {f["name"]: f["value"] for f in over}
    merged = [{**f, "value": wanted.pop(f["name"])} if f.get("name") in wanted else f for f in base]
    return merged + [{"name": k, "value": v} for k, v in wanted.items()]


def merge_over(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`over`'s top-level keys and fields put over `base`: what the stack owns over what the app holds."""
    merged = {**base, **{k: v for k, v in over.items() if k != "fields"}}
    if "fields" in over:
        merged["fields"] = _fields_over(list(base.get("fields") or []), list(over["fields"]))
    return merged
