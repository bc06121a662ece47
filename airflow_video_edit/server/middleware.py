"""The local server's outer layers: request stats and access log, and the API-key check.

The stack, outermost first: :class:`ObservedRequests` -> fault injection -> :class:`ApiKeyCheck`
-> the routes. ``/_server/*`` (stats, faults) needs the key too when one is set.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable, Sequence

from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .forms import APIError

logger = logging.getLogger("airflow_video_edit.server")


class ObservedRequests:
    """Counts requests by route template and status (``requests``); logs one line per request."""

    def __init__(self, app: ASGIApp, routes: Sequence[Route], *, access_log: bool) -> None:
        self.app, self.routes, self.access_log = app, routes, access_log
        self.requests: Counter[tuple[str, int]] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0
        logged = False

        def log() -> None:
            nonlocal logged
            logged = True
            if self.access_log and logger.isEnabledFor(logging.INFO):
                duration = (time.perf_counter() - started) * 1000
                logger.info("%s %s %s %.1fms", scope["method"], scope["path"], status or "dropped", duration)

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # Counted before the client can have the reply: a test that got its answer
                # reads stats that include it.
                self.requests[(self._template(scope), status)] += 1
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                log()  # likewise: written before the client can have the whole reply
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            if not status:  # dropped before any reply
                self.requests[(self._template(scope), status)] += 1
            if not logged:
                log()

    def _template(self, scope: Scope) -> str:
        route = scope.get("route")
        if not isinstance(route, Route):
            route = next((r for r in self.routes if r.matches(scope)[0] is Match.FULL), None)
        return f"{scope['method']} {route.path if route is not None else scope['path']}"


class ApiKeyCheck:
    """With a key set, ``/v1/*`` and the control routes ``/_server/*`` need it
    (``Authorization: Bearer K`` or ``api-key: K``): a demo server on a LAN address must not take
    fault rules from strangers.

    A refused key gets a 401, or on ``/v1/*`` ``refused_status`` (a gateway's 400 ``auth_error``).
    """

    def __init__(self, app: ASGIApp, api_key: Callable[[], str | None], *, refused_status: int = 401) -> None:
        self.app, self.api_key, self.refused_status = app, api_key, refused_status

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        api_key = self.api_key()
        path = scope["path"] if scope["type"] == "http" else ""
        if api_key is not None and path.startswith(("/v1", "/_server")):
            headers = dict(scope["headers"])
            given = headers.get(b"api-key", b"").decode("latin-1")
            bearer = headers.get(b"authorization", b"").decode("latin-1")
            if bearer[:7].lower() == "bearer ":
                given = given or bearer[7:].strip()
            if not given or not secrets.compare_digest(given.encode(), api_key.encode()):
                await self._refuse(path, bool(given))(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _refuse(self, path: str, given: bool) -> ASGIApp:
        if self.refused_status != 401 and path.startswith("/v1"):
            message = "Authentication Error: the gateway refused the API key (missing or invalid)."
            refused = APIError(self.refused_status, message, code="invalid_api_key", kind="auth_error")
            return refused.response()
        message = (
            "Incorrect API key provided."
            if given
            else "You didn't provide an API key. Use 'Authorization: Bearer KEY'."
        )
        return APIError(401, message).response()
