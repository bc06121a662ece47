"""Shared fixtures for the unit tests: mock transports, a recording fake sleep, hook wiring.

No test talks to a network or really sleeps: every client gets an ``httpx.MockTransport`` and a
``sleep`` that only records the requested waits.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from airflow_video_edit import clients
from airflow_video_edit.clients import AsyncVideosClient, VideosClient
from airflow_video_edit.settings import ClientSettings

SECRET = "sk-test-SECRET-0123456789abcdef"
BASE_URL = "http://test/v1"


def video_json(video_id: str = "video_123", status: str = "queued", **fields: Any) -> dict[str, Any]:
    return {
        "id": video_id,
        "object": "video",
        "model": "sora-2",
        "status": status,
        "progress": 0,
        "created_at": 1712697600,
        "size": "720x1280",
        "seconds": "4",
        **fields,
    }


def error_json(message: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}


@dataclass
class Seen:
    """One request as the server saw it (the body fully read)."""

    method: str
    path: str
    params: dict[str, str]
    headers: httpx.Headers
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)

    def multipart(self) -> dict[str, tuple[str | None, bytes]]:
        """``{field name: (filename or None, payload)}`` of a multipart/form-data body."""
        content_type = self.headers["content-type"]
        assert content_type.startswith("multipart/form-data"), content_type
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + self.content
        )
        fields: dict[str, tuple[str | None, bytes]] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            fields[str(name)] = (part.get_filename(), payload if isinstance(payload, bytes) else b"")
        return fields


class Chunks(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body delivered in pieces, sync or async, repeatable."""

    def __init__(self, content: bytes, size: int = 64 * 1024) -> None:
        self.content = content
        self.size = size

    def __iter__(self) -> Iterator[bytes]:
        for start in range(0, len(self.content), self.size):
            yield self.content[start : start + self.size]

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self:
            yield chunk


def _streamed(response: httpx.Response) -> httpx.Response:
    """A fresh copy whose body is streamed, as from a socket.

    A response built with ``content=`` is already consumed and cannot be streamed again, and a
    repeated reply must not be a response a previous attempt already read.
    """
    if hasattr(response, "_content"):
        return httpx.Response(response.status_code, headers=response.headers, stream=Chunks(response.content))
    return response


Handler = Callable[[httpx.Request], httpx.Response]


@dataclass
class Server:
    """A fake backend: records every request, answers with ``handler`` (or a queue of replies)."""

    handler: Handler | None = None
    replies: list[httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]] = field(
        default_factory=list
    )
    seen: list[Seen] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(
            Seen(
                request.method,
                request.url.raw_path.decode().split("?")[0],
                dict(request.url.params),
                request.headers,
                request.content,
            )
        )
        if self.replies:
            reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
            if isinstance(reply, Exception):
                raise reply
            return _streamed(reply if isinstance(reply, httpx.Response) else reply(request))
        assert self.handler is not None, f"unexpected request {request.method} {request.url}"
        return _streamed(self.handler(request))

    def reply(self, *replies: httpx.Response | Exception | Handler) -> Server:
        """Answer the next requests in order; the last reply repeats."""
        self.replies = list(replies)
        return self

    @property
    def last(self) -> Seen:
        return self.seen[-1]


class Sleeps(list[float]):
    """The waits the retry policy asked for, instead of sleeping them."""

    def sync(self, seconds: float) -> None:
        self.append(seconds)

    async def async_(self, seconds: float) -> None:
        self.append(seconds)


def never_called(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"no request expected, got {request.method} {request.url}")


@pytest.fixture
def server() -> Server:
    return Server()


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def settings() -> ClientSettings:
    return ClientSettings(base_url=BASE_URL, api_key=SECRET, max_retries=4)


ClientFactory = Callable[..., VideosClient]
AsyncClientFactory = Callable[..., AsyncVideosClient]


@pytest.fixture
def make_client(settings: ClientSettings, sleeps: Sleeps) -> Iterator[ClientFactory]:
    """``make_client(server, **settings overrides)`` -> a ``VideosClient`` on a mock transport."""
    clients: list[VideosClient] = []

    def make(handler: Handler, **overrides: Any) -> VideosClient:
        client = VideosClient(
            ClientSettings(**{**settings.__dict__, **overrides}),
            transport=httpx.MockTransport(handler),
            sleep=sleeps.sync,
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
async def make_async_client(settings: ClientSettings, sleeps: Sleeps) -> Any:
    clients: list[AsyncVideosClient] = []

    def make(handler: Handler, **overrides: Any) -> AsyncVideosClient:
        client = AsyncVideosClient(
            ClientSettings(**{**settings.__dict__, **overrides}),
            transport=httpx.MockTransport(handler),
            sleep=sleeps.async_,
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


def set_connection(
    monkeypatch: pytest.MonkeyPatch, conn_id: str = "openai_videos_default", **conn: Any
) -> None:
    """Define an Airflow connection through its ``AIRFLOW_CONN_*`` environment variable (JSON form)."""
    value = {"conn_type": "openai_videos", "host": BASE_URL, "password": SECRET, **conn}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(value))


@pytest.fixture
def wire_hook(monkeypatch: pytest.MonkeyPatch, sleeps: Sleeps) -> Iterator[Callable[..., Any]]:
    """``wire_hook(server, **extra)`` -> an ``OpenAIVideosHook`` whose sync and async clients use ``server``.

    The connection comes from ``AIRFLOW_CONN_OPENAI_VIDEOS_DEFAULT``; only the transport is injected,
    so the settings under test are the ones the Hook derived from the connection.
    """
    from airflow_video_edit.hooks import OpenAIVideosHook

    hooks: list[OpenAIVideosHook] = []
    async_clients: dict[ClientSettings, AsyncVideosClient] = {}

    def wire(handler: Handler, *, conn: dict[str, Any] | None = None, **extra: Any) -> OpenAIVideosHook:
        set_connection(monkeypatch, extra=extra, **(conn or {}))
        hook = OpenAIVideosHook()
        hook.__dict__["client"] = VideosClient(
            hook.settings, transport=httpx.MockTransport(handler), sleep=sleeps.sync
        )

        async def shared(settings: ClientSettings) -> AsyncVideosClient:
            client = async_clients.get(settings)
            if client is None:
                client = async_clients[settings] = AsyncVideosClient(
                    settings, transport=httpx.MockTransport(handler), sleep=sleeps.async_
                )
            return client

        monkeypatch.setattr(clients, "shared_async_client", shared)
        hooks.append(hook)
        return hook

    yield wire
    for hook in hooks:
        hook.close()
