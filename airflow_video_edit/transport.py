"""The async connection pool: ``max_connections`` connections in shards of 4, one TLS context."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable

import httpx

from airflow_video_edit.settings import ClientSettings


class ReleasingStream(httpx.AsyncByteStream):
    """A response body that calls ``release`` once, when it is closed."""

    def __init__(self, stream: httpx.AsyncByteStream, release: Callable[[], None]) -> None:
        self._stream = stream
        self._release: Callable[[], None] | None = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            release, self._release = self._release, None
            if release is not None:
                release()


class ShardedTransport(httpx.AsyncBaseTransport):
    """``max_connections`` pooled connections, held in shards of at most 4, one TLS context.

    httpcore 1.0 walks every pooled connection on each request it assigns and each response it
    releases: one socket query per connection, and a count of all connections per idle one
    (quadratic). With 64 kept-alive connections in one pool that costs milliseconds of CPU per
    request; in pools of 4 it is a few dozen microseconds. A request goes to the shard with the
    fewest requests in flight, so with at most ``max_connections`` in flight (the client's
    semaphore) none waits for a connection.
    """

    SHARD_SIZE = 4

    def __init__(self, settings: ClientSettings) -> None:
        total = max(1, settings.max_connections)
        count = -(-total // self.SHARD_SIZE)
        size = -(-total // count)
        limits = httpx.Limits(
            max_connections=size, max_keepalive_connections=size, keepalive_expiry=settings.keepalive_expiry
        )
        verify = settings.ssl_verify()
        context = verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify=verify)
        self._shards = [httpx.AsyncHTTPTransport(verify=context, limits=limits) for _ in range(count)]
        self._busy = [0] * count

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        index = self._busy.index(min(self._busy))
        self._busy[index] += 1
        try:
            response = await self._shards[index].handle_async_request(request)
        except BaseException:
            self._busy[index] -= 1
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = ReleasingStream(response.stream, lambda: self._release(index))
        return response

    def _release(self, index: int) -> None:
        self._busy[index] -= 1

    async def aclose(self) -> None:
        for shard in self._shards:
            await shard.aclose()
