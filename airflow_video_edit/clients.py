"""Senders: ``VideosClient`` (``httpx.Client``) and ``AsyncVideosClient`` (``httpx.AsyncClient``).

They apply what the modules below them say: the request a :class:`~airflow_video_edit.calls.Call`
describes, the reply mapping of :mod:`~airflow_video_edit.replies` and the policy of
:mod:`~airflow_video_edit.retries`. Only the I/O loops differ between the two. Downloads stream
in bounded memory into a temporary file that is renamed into place when complete and checked.
Nothing here knows about Airflow.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

import httpx
import tenacity

from airflow_video_edit.calls import Call, build_request
from airflow_video_edit.content import ALLOWED, SUFFIXES, ContentCheck
from airflow_video_edit.errors import TransportError
from airflow_video_edit.replies import error_from_response, error_from_transport
from airflow_video_edit.retries import retry_log, retry_policy
from airflow_video_edit.settings import ClientSettings
from airflow_video_edit.transport import ShardedTransport

T = TypeVar("T")
CHUNK_SIZE = 1024 * 1024
IMAGE_SUFFIXES = frozenset({".webp", ".jpg", ".jpeg", ".png"})


class _AtomicFile:
    """A download target written under a temporary name, renamed into place when complete.

    Readers never see a partial file. There is no fsync: what it guards against (a power cut
    right after the rename) ends the task too, and the task's next try downloads again. With a
    ``check``, every chunk is checked as it is written (:mod:`airflow_video_edit.content`), and an
    image whose real type differs from the destination's suffix gets the real suffix.
    """

    def __init__(self, destination: Any, check: ContentCheck | None = None) -> None:
        self.destination = Path(destination) if isinstance(destination, str | os.PathLike) else destination
        self.check = check
        self.temporary = self.destination.parent / f".{self.destination.name}.{uuid.uuid4().hex[:8]}.part"
        self.destination.parent.mkdir(parents=True, exist_ok=True)  # a Path or an ObjectStoragePath
        self.handle: IO[bytes] = self.temporary.open("wb")
        self.written = 0

    def write(self, chunk: bytes) -> None:
        if self.check is not None:
            self.check.feed(chunk)
        self.handle.write(chunk)
        self.written += len(chunk)

    def commit(self, expected: int | None) -> int:
        self.handle.close()
        try:
            if expected is not None and self.written != expected:
                raise TransportError(
                    f"download truncated: got {self.written} of {expected} bytes", surely_not_sent=False
                )
            if self.check is not None:
                real = SUFFIXES[self.check.finish()]
                suffix = self.destination.suffix.lower()
                if suffix in IMAGE_SUFFIXES and suffix != real and not (suffix == ".jpeg" and real == ".jpg"):
                    self.destination = self.destination.with_suffix(real)
        except BaseException:
            self.abort()
            raise
        self.temporary.rename(self.destination)
        return self.written

    def abort(self) -> None:
        self.handle.close()
        with suppress(FileNotFoundError):
            self.temporary.unlink()


def _check(call: Call[Any], response: httpx.Response) -> ContentCheck | None:
    variant = (call.params or {}).get("variant")
    return ContentCheck(variant, response.headers.get("content-type")) if variant in ALLOWED else None


def _content_length(response: httpx.Response) -> int | None:
    value = response.headers.get("content-length")
    return int(value) if value and value.isdigit() else None


@dataclass(frozen=True)
class Download:
    """What a download wrote."""

    path: str
    bytes: int
    content_type: str | None


class VideosClient:
    """Synchronous sender over one ``httpx.Client``."""

    def __init__(
        self,
        settings: ClientSettings,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self._http = httpx.Client(transport=transport, **settings.httpx_kwargs())
        self._sleep = sleep

    def __enter__(self) -> VideosClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _retrying(self, call: Call[Any]) -> tenacity.Retrying:
        return tenacity.Retrying(
            sleep=self._sleep,
            before_sleep=retry_log(call.method, call.path, self.settings),
            **retry_policy(self.settings, creates_job=call.creates_job),
        )

    @contextmanager
    def _response(self, call: Call[Any], *, stream: bool = False) -> Iterator[httpx.Response]:
        """One attempt: send, map failures to exceptions, yield a successful reply."""
        with call.upload[1].open() if call.upload else nullcontext() as handle:
            request = build_request(
                self._http, call, handle, default_model=self.settings.default_model, stream=stream
            )
            try:
                response = self._http.send(request, stream=True)
            except httpx.TransportError as exc:
                raise error_from_transport(exc) from None
        try:
            if response.is_error or not stream:
                try:
                    response.read()
                except httpx.TransportError as exc:
                    raise error_from_transport(exc) from None
            if response.is_error:
                raise error_from_response(response, secret=self.settings.api_key)
            yield response
        finally:
            response.close()

    def request(self, call: Call[T]) -> T:
        """Send ``call`` with the retry policy and parse its reply."""
        for attempt in self._retrying(call):
            with attempt, self._response(call) as response:
                return call.parse(response)
        raise AssertionError("unreachable")  # pragma: no cover

    def download(self, call: Call[Any], destination: Any) -> Download:
        """Stream a content reply into ``destination`` (a path or ``ObjectStoragePath``), atomically."""
        for attempt in self._retrying(call):
            with attempt, self._response(call, stream=True) as response:
                target = _AtomicFile(destination, _check(call, response))
                try:
                    # Chunks as the socket delivers them (<= 64 KiB): re-chunking to CHUNK_SIZE
                    # in httpx copies every byte twice and halved download throughput.
                    for chunk in response.iter_raw():
                        target.write(chunk)
                except httpx.TransportError as exc:
                    target.abort()
                    raise error_from_transport(exc) from None
                except BaseException:
                    target.abort()
                    raise
                written = target.commit(_content_length(response))
                return Download(str(target.destination), written, response.headers.get("content-type"))
        raise AssertionError("unreachable")  # pragma: no cover


class AsyncVideosClient:
    """Asynchronous sender over one ``httpx.AsyncClient``.

    Use :func:`shared_async_client` in long-lived processes (the triggerer): all users of equal
    settings on one event loop share one client, so one connection pool and one TLS context.
    Requests in flight are bounded by the pool size, so none queue inside httpcore (whose cost
    grows with queued requests x connections).
    """

    def __init__(
        self,
        settings: ClientSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self._http = httpx.AsyncClient(
            transport=transport or ShardedTransport(settings), **settings.httpx_kwargs()
        )
        self._sleep = sleep
        self._slots = asyncio.Semaphore(settings.max_connections)

    async def __aenter__(self) -> AsyncVideosClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def _retrying(self, call: Call[Any]) -> tenacity.AsyncRetrying:
        return tenacity.AsyncRetrying(
            sleep=self._sleep,
            before_sleep=retry_log(call.method, call.path, self.settings),
            **retry_policy(self.settings, creates_job=call.creates_job),
        )

    async def _send(self, call: Call[Any], *, stream: bool = False) -> httpx.Response:
        """One attempt: send, map failures to exceptions, return a successful reply."""
        with call.upload[1].open() if call.upload else nullcontext() as handle:
            request = build_request(
                self._http, call, handle, default_model=self.settings.default_model, stream=stream
            )
            try:
                response = await self._http.send(request, stream=True)
                if response.is_error or not stream:
                    try:
                        await response.aread()
                    finally:
                        if response.is_error:
                            await response.aclose()
            except httpx.TransportError as exc:
                raise error_from_transport(exc) from None
        if response.is_error:
            raise error_from_response(response, secret=self.settings.api_key)
        return response

    async def request(self, call: Call[T]) -> T:
        """Send ``call`` with the retry policy and parse its reply."""
        async for attempt in self._retrying(call):
            with attempt:
                async with self._slots:
                    return call.parse(await self._send(call))
        raise AssertionError("unreachable")  # pragma: no cover

    async def download(self, call: Call[Any], destination: Any) -> Download:
        """Stream a content reply into ``destination``; file writes run in a worker thread."""
        async for attempt in self._retrying(call):
            with attempt:
                async with self._slots:
                    response = await self._send(call, stream=True)
                    try:
                        target = await asyncio.to_thread(_AtomicFile, destination, _check(call, response))
                        try:
                            async for chunk in _aiter_raw(response):
                                await asyncio.to_thread(target.write, chunk)
                        except BaseException:
                            await asyncio.to_thread(target.abort)
                            raise
                        written = await asyncio.to_thread(target.commit, _content_length(response))
                    finally:
                        await response.aclose()
                    return Download(str(target.destination), written, response.headers.get("content-type"))
        raise AssertionError("unreachable")  # pragma: no cover


async def _aiter_raw(response: httpx.Response) -> AsyncIterator[bytes]:
    """The body as the socket delivers it, batched to about CHUNK_SIZE per (threaded) write."""
    batch = bytearray()
    try:
        async for chunk in response.aiter_raw():
            batch += chunk
            if len(batch) >= CHUNK_SIZE:
                yield bytes(batch)
                batch.clear()
    except httpx.TransportError as exc:
        raise error_from_transport(exc) from None
    if batch:
        yield bytes(batch)


_shared: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[ClientSettings, asyncio.Task[AsyncVideosClient]]
] = weakref.WeakKeyDictionary()


async def shared_async_client(settings: ClientSettings) -> AsyncVideosClient:
    """The one ``AsyncVideosClient`` for ``settings`` on the running event loop.

    It is built once, in a worker thread (loading the TLS trust store takes tens of milliseconds,
    which would stall every trigger on the loop); callers arriving meanwhile await that build.
    """
    clients = _shared.setdefault(asyncio.get_running_loop(), {})
    build = clients.get(settings)
    if build is None:
        build = clients[settings] = asyncio.ensure_future(asyncio.to_thread(AsyncVideosClient, settings))

        def forget_failed(task: asyncio.Task[AsyncVideosClient]) -> None:
            if task.cancelled() or task.exception() is not None:
                clients.pop(settings, None)  # the next caller tries again

        build.add_done_callback(forget_failed)
    # Shielded: a caller cancelled while waiting does not cancel the build the others await.
    return await asyncio.shield(build)
