"""Fault injection for the local server, as ASGI middleware.

A *fault spec* is a ``;``-separated list of items, e.g. ``status=429;retry-after=2``:

=====================  ===========================================================================
``status=N``           answer N (429, 500, 502, 503, 504, ...) in OpenAI's error shape; the request
                       does not reach the API (no job is created)
``retry-after=S``      with ``status``: add ``Retry-After: S``
``retry-after-ms=N``   with ``status``: add ``retry-after-ms: N``
``delay=S``            wait S seconds (float) before handling the request
``hold=S``             handle the request (a job is created), then wait S seconds before answering
                       (a client with a shorter read timeout loses the reply)
``reset``              handle the request, then drop the connection before any response byte
``truncate=N``         send the response head (with the full Content-Length) and only N body bytes,
                       then drop the connection
``malformed-json``     handle the request, send a broken JSON body (status and headers kept)
``fail-job=CODE``      a job created by this request fails with error code CODE
``expire-after=S``     a job created by this request has its assets expire S seconds after it
                       completes (content then answers 404)
=====================  ===========================================================================

Per request: send the spec in the ``x-fault`` header. For the whole run: rules that match method
and path (``{name}`` matches one path segment, ``*`` anything), optionally only ``times`` times
after skipping the first ``skip`` matches. As a string: ``"GET /v1/videos/{id} status=503;times=2"``
(``times``/``skip`` may be items of the spec); as a mapping (JSON/YAML file)::

    {"rules": [{"method": "GET", "path": "/v1/videos/{id}", "fault": "status=503", "times": 2}]}

A job can also be made to fail by its prompt: ``[fail-job=CODE]`` anywhere in the prompt.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

FAULT_HEADER = "x-fault"
SCOPE_KEY = "airflow_video_edit.fault"
"""Scope key under which the middleware hands the job-level part of a fault to the app."""
PROMPT_FAIL_MARKER = re.compile(r"\[fail-job=([A-Za-z0-9_.-]+)\]")


class FaultSyntaxError(ValueError):
    """A fault spec or rule that cannot be parsed."""


@dataclass
class Fault:
    """A parsed fault spec (see the module docstring)."""

    status: int | None = None
    retry_after: str | None = None
    retry_after_ms: str | None = None
    delay: float = 0.0
    hold: float = 0.0
    reset: bool = False
    truncate: int | None = None
    malformed_json: bool = False
    fail_job: str | None = None
    expire_after: float | None = None

    @property
    def touches_response(self) -> bool:
        return self.reset or self.truncate is not None or self.malformed_json or bool(self.hold)

    def merged(self, other: Fault | None) -> Fault:
        """This fault with every item ``other`` sets taken from ``other``."""
        if other is None:
            return self
        result = Fault(**vars(self))
        for name, value in vars(other).items():
            if value not in (None, False, 0.0):
                setattr(result, name, value)
        return result


def parse_fault(spec: str) -> tuple[Fault, dict[str, int]]:
    """Parse ``"status=503;retry-after=2"``; return the fault and any ``times``/``skip`` counts."""
    fault = Fault()
    counts: dict[str, int] = {}
    for raw in spec.split(";"):
        item = raw.strip()
        if not item:
            continue
        key, _, value = item.partition("=")
        key, value = key.strip().lower().replace("_", "-"), value.strip()
        try:
            if key == "status":
                fault.status = int(value)
            elif key == "retry-after":
                fault.retry_after = value
            elif key == "retry-after-ms":
                fault.retry_after_ms = value
            elif key == "delay":
                fault.delay = float(value)
            elif key == "hold":
                fault.hold = float(value)
            elif key == "reset":
                fault.reset = True
            elif key == "truncate":
                fault.truncate = int(value)
            elif key == "malformed-json":
                fault.malformed_json = True
            elif key == "fail-job":
                fault.fail_job = value or "internal_error"
            elif key == "expire-after":
                fault.expire_after = float(value)
            elif key in ("times", "skip"):
                counts[key] = int(value)
            else:
                raise FaultSyntaxError(f"unknown fault item {item!r}")
        except ValueError as exc:
            if isinstance(exc, FaultSyntaxError):
                raise
            raise FaultSyntaxError(f"bad value in fault item {item!r}") from exc
    return fault, counts


@dataclass
class FaultRule:
    """A run-wide rule: apply ``fault`` to matching requests (``times=None``: every one)."""

    method: str
    path: str
    fault: Fault
    times: int | None = None
    skip: int = 0
    seen: int = 0
    applied: int = 0
    _pattern: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.method = self.method.upper()
        parts = re.split(r"(\{[^}/]*\}|\*)", self.path)
        regex = "".join(
            "[^/]+" if part.startswith("{") else ".*" if part == "*" else re.escape(part) for part in parts
        )
        self._pattern = re.compile(f"^{regex}$")

    def take(self, method: str, path: str) -> Fault | None:
        """The fault if this request matches and the rule is not used up (counts it)."""
        if self.method not in ("*", method) or not self._pattern.match(path):
            return None
        self.seen += 1
        if self.seen <= self.skip or (self.times is not None and self.applied >= self.times):
            return None
        self.applied += 1
        return self.fault

    @classmethod
    def parse(cls, rule: str | Mapping[str, Any]) -> FaultRule:
        """A rule from ``"METHOD PATH SPEC"`` or ``{"method", "path", "fault", "times", "skip"}``."""
        if isinstance(rule, str):
            pieces = rule.split(None, 2)
            if len(pieces) != 3:
                raise FaultSyntaxError(f"rule {rule!r}: expected 'METHOD PATH SPEC'")
            method, path, spec = pieces
            times = skip = None
        else:
            method = str(rule.get("method", "*"))
            path = str(rule.get("path", "*"))
            spec = str(rule.get("fault", ""))
            times, skip = rule.get("times"), rule.get("skip")
        fault, counts = parse_fault(spec)
        return cls(
            method=method,
            path=path,
            fault=fault,
            times=int(times) if times is not None else counts.get("times"),
            skip=int(skip) if skip is not None else counts.get("skip", 0),
        )


def parse_rules(rules: Iterable[str | Mapping[str, Any]] | Mapping[str, Any] | None) -> list[FaultRule]:
    """Rules from a list (strings or mappings) or a mapping with a ``rules`` list."""
    if rules is None:
        return []
    if isinstance(rules, Mapping):
        rules = rules.get("rules", [])
    return [FaultRule.parse(rule) for rule in rules]


def load_rules(path: str | Path) -> list[FaultRule]:
    """Rules from a JSON or YAML file (YAML needs PyYAML)."""
    text = Path(path).read_text()
    if str(path).endswith((".yaml", ".yml")):
        import yaml  # type: ignore[import-untyped]

        data = yaml.safe_load(text)
    else:
        data = json.loads(text)
    return parse_rules(data)


def fault_of(scope: Scope) -> Fault | None:
    """The fault the middleware attached to this request, if any."""
    value = scope.get(SCOPE_KEY)
    return value if isinstance(value, Fault) else None


def job_fault_fields(scope: Scope, prompt: str) -> dict[str, Any]:
    """Job fields a fault (or the prompt's ``[fail-job=CODE]`` marker) asks for: a scripted
    failure, early expiry."""
    fault = fault_of(scope)
    extra: dict[str, Any] = {}
    marker = PROMPT_FAIL_MARKER.search(prompt)
    code = fault.fail_job if fault is not None and fault.fail_job else marker.group(1) if marker else None
    if code:
        extra["fail_code"] = code
        extra["fail_message"] = f"The video job failed ({code}, injected by the local server)."
    if fault is not None and fault.expire_after is not None:
        extra["asset_ttl"] = max(fault.expire_after, 1e-3)
    return extra


def _transport(receive: Receive) -> Any:
    """The server's transport behind ``receive`` (uvicorn), to drop a connection on purpose."""
    owner = getattr(receive, "__self__", None)
    return getattr(owner, "transport", None)


class _Dropped(Exception):
    """Stops the app once its connection was dropped on purpose."""


class FaultMiddleware:
    """Applies run-wide rules and the ``x-fault`` header to every HTTP request.

    Args:
        app: the wrapped ASGI app.
        rules: run-wide rules (replace them at run time with :meth:`set_rules`).
        error_body: builds the JSON bytes of an error answer ``(status, message) -> bytes``.
    """

    def __init__(
        self,
        app: ASGIApp,
        rules: list[FaultRule] | None = None,
        *,
        error_body: Any = None,
    ) -> None:
        self.app = app
        self.rules: list[FaultRule] = rules or []
        self.error_body = error_body

    def set_rules(self, rules: list[FaultRule]) -> None:
        self.rules = rules

    def _fault_for(self, scope: Scope) -> Fault | None:
        fault: Fault | None = None
        method, path = scope["method"], scope["path"]
        for rule in self.rules:
            taken = rule.take(method, path)
            if taken is not None:
                fault = taken
                break
        for name, value in scope.get("headers", []):
            if name == FAULT_HEADER.encode():
                header_fault, _ = parse_fault(value.decode("latin-1"))
                fault = header_fault if fault is None else fault.merged(header_fault)
        return fault

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_server"):
            await self.app(scope, receive, send)
            return
        try:
            fault = self._fault_for(scope)
        except FaultSyntaxError as exc:
            await self._send_error(send, 400, f"Invalid {FAULT_HEADER} header: {exc}")
            return
        if fault is None:
            await self.app(scope, receive, send)
            return
        scope[SCOPE_KEY] = fault
        if fault.delay:
            await anyio.sleep(fault.delay)
        if fault.status is not None:
            headers = []
            if fault.retry_after is not None:
                headers.append((b"retry-after", fault.retry_after.encode()))
            if fault.retry_after_ms is not None:
                headers.append((b"retry-after-ms", fault.retry_after_ms.encode()))
            await self._send_error(send, fault.status, f"Injected fault: status {fault.status}", headers)
            return
        if not fault.touches_response:
            await self.app(scope, receive, send)
            return
        await self._mangle(scope, receive, send, fault)

    async def _send_error(
        self, send: Send, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        body: bytes = self.error_body(status, message)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    *(headers or []),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _mangle(self, scope: Scope, receive: Receive, send: Send, fault: Fault) -> None:
        """Run the app and break its answer: hold it back, reset, truncate or malformed JSON."""
        dropped = False
        sent = 0
        start: Message | None = None
        buffered: list[bytes] = []

        async def drop() -> None:
            nonlocal dropped
            dropped = True
            transport = _transport(receive)
            if transport is not None:
                transport.abort()
                await anyio.lowlevel.checkpoint()  # let the server see the connection is gone
            raise _Dropped

        async def mangled_send(message: Message) -> None:
            nonlocal sent, start
            if dropped:
                return
            if message["type"] == "http.response.start":
                if fault.hold:
                    await anyio.sleep(fault.hold)
                if fault.reset:
                    await drop()
                start = message
                if not fault.malformed_json:
                    await send(message)
                return
            if message["type"] != "http.response.body":
                await send(message)
                return
            body: bytes = message.get("body", b"")
            more = message.get("more_body", False)
            if fault.malformed_json:
                buffered.append(body)
                if not more and start is not None:
                    whole = b"".join(buffered)
                    broken = whole[: max(1, len(whole) // 2)] + b'{"'
                    headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
                    headers.append((b"content-length", str(len(broken)).encode()))
                    await send({**start, "headers": headers})
                    await send({"type": "http.response.body", "body": broken})
                return
            if fault.truncate is None:  # held back only
                await send(message)
                return
            limit = fault.truncate
            if sent + len(body) >= limit:
                piece = body[: limit - sent]
                if piece:
                    await send({"type": "http.response.body", "body": piece, "more_body": True})
                await drop()
            sent += len(body)
            await send(message)

        try:
            await self.app(scope, receive, mangled_send)
        except _Dropped:
            if _transport(receive) is None:
                # Not uvicorn: an exception after the response started makes a server close the
                # connection, which is the effect wanted.
                raise RuntimeError("connection dropped by fault injection") from None
