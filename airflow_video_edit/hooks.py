"""The Hook: an Airflow connection in, every Videos API operation out (sync and async).

The Hook turns a Connection into :class:`~airflow_video_edit.settings.ClientSettings` (once per
Hook, on either path) and names the operations; each operation is a request builder of
:mod:`airflow_video_edit.calls` sent by a client of :mod:`airflow_video_edit.clients`, where
errors and retries are handled.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Iterator
from functools import cached_property
from typing import Any, TypeVar

from airflow.providers.common.compat.connection import get_async_connection
from airflow.sdk import BaseHook
from airflow.sdk.log import amask_secret, mask_secret

from airflow_video_edit import calls, clients, models
from airflow_video_edit.calls import Call
from airflow_video_edit.clients import AsyncVideosClient, Download, VideosClient
from airflow_video_edit.errors import (
    APIStatusError,
    AuthenticationError,
    PermissionDeniedError,
    VideoAPIError,
)
from airflow_video_edit.settings import ClientSettings, settings_from_connection
from airflow_video_edit.watcher import Watch, shared_watcher

T = TypeVar("T")
# The connection lookups in flight, per event loop and connection id (see aget_settings).
_lookups: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Future[ClientSettings]]] = (
    weakref.WeakKeyDictionary()
)
# A well-formed id no backend has: what the connection test retrieves.
CONNECTION_TEST_ID = "video_airflow_connection_test_0000000000"

try:
    from airflow.providers.common.compat.connection import get_async_extra_dejson
except ImportError:  # common-compat < 1.21 (the newest release for Python 3.10)

    async def get_async_extra_dejson(conn: Any) -> dict[str, Any]:  # type: ignore[misc]
        """The extra, with its secrets masked, without blocking the event loop.

        What common-compat >= 1.21 does: Airflow >= 3.3.2 masks asynchronously; before that the
        synchronous ``extra_dejson`` (a blocking call to the supervisor) runs in a worker thread.
        """
        if hasattr(conn, "aextra_dejson"):
            return dict(await conn.aextra_dejson())
        return dict(await asyncio.to_thread(lambda: conn.extra_dejson))


class OpenAIVideosHook(BaseHook):
    """Talks to an OpenAI-compatible Videos API (Azure AI Foundry, LiteLLM proxy, Bifrost, ...).

    Connection fields: host = base URL (e.g. ``https://<resource>.openai.azure.com/openai/v1``,
    ``http://litellm:4000/v1``, ``http://127.0.0.1:8787/v1`` for the bundled server), password =
    API key, and the extras declared in the provider info (auth style, organization, project,
    extra headers and query parameters, timeouts, retries, TLS, proxy, default model).

    Sync methods use one ``httpx.Client`` per hook (close it with :meth:`close`, or use the hook
    as a context manager). Async methods (prefixed ``a``) resolve the connection once per hook with
    Airflow's async connection API and use the pooled ``httpx.AsyncClient`` shared by every hook
    of equal settings on the event loop, which is what keeps thousands of triggers cheap.

    :param openai_videos_conn_id: the Airflow connection id.
    """

    conn_name_attr = "openai_videos_conn_id"
    default_conn_name = "openai_videos_default"
    conn_type = "openai_videos"
    hook_name = "OpenAI-compatible Videos API"

    def __init__(self, openai_videos_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.openai_videos_conn_id = openai_videos_conn_id
        self._async_settings: ClientSettings | None = None
        self._async_client: tuple[asyncio.AbstractEventLoop, AsyncVideosClient] | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(openai_videos_conn_id={self.openai_videos_conn_id!r})"

    # -- connection -> settings -> client, once per hook ----------------------------------------
    @cached_property
    def settings(self) -> ClientSettings:
        conn = self.get_connection(self.openai_videos_conn_id)
        if conn.password:
            mask_secret(conn.password)
        return settings_from_connection(
            host=conn.host,
            port=conn.port,
            schema=conn.schema,
            password=conn.password,
            extra=conn.extra_dejson,
        )

    async def aget_settings(self) -> ClientSettings:
        """Settings resolved without blocking the event loop (Airflow's async connection API).

        Looked up once per hook: a trigger polling for hours asks for its connection once. Hooks
        of one connection asking at the same moment (a triggerer taking over thousands of
        triggers) share one lookup; a later hook looks up again, so a changed key is seen."""
        if self._async_settings is None:
            conn_id = self.openai_videos_conn_id
            lookups = _lookups.setdefault(asyncio.get_running_loop(), {})
            lookup = lookups.get(conn_id)
            if lookup is None:
                lookup = lookups[conn_id] = asyncio.ensure_future(self._alookup_settings())
                lookup.add_done_callback(lambda _: lookups.pop(conn_id, None))
            # Shielded: a hook cancelled while waiting does not cancel the others' lookup.
            self._async_settings = await asyncio.shield(lookup)
        return self._async_settings

    async def _alookup_settings(self) -> ClientSettings:
        conn = await get_async_connection(self.openai_videos_conn_id, hook=self)
        if conn.password:
            await amask_secret(conn.password)
        extra = await get_async_extra_dejson(conn)
        return settings_from_connection(
            host=conn.host, port=conn.port, schema=conn.schema, password=conn.password, extra=extra
        )

    @cached_property
    def client(self) -> VideosClient:
        return VideosClient(self.settings)

    async def aget_client(self) -> AsyncVideosClient:
        """The process-wide pooled async client for this connection's settings on this loop."""
        loop = asyncio.get_running_loop()
        if self._async_client is None or self._async_client[0] is not loop:
            self._async_client = (loop, await clients.shared_async_client(await self.aget_settings()))
        return self._async_client[1]

    def close(self) -> None:
        if "client" in self.__dict__:
            self.client.close()
            del self.__dict__["client"]

    def __enter__(self) -> OpenAIVideosHook:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- any operation: a Call of airflow_video_edit.calls, sent with the retry policy ----------
    def send(self, call: Call[T]) -> T:
        return self.client.request(call)

    async def asend(self, call: Call[T]) -> T:
        return await (await self.aget_client()).request(call)

    # -- the operations (sync) ------------------------------------------------------------------
    def create_video(
        self,
        prompt: str,
        *,
        model: str | None = None,
        size: str | None = None,
        seconds: str | int | None = None,
        input_reference: Any = None,
    ) -> models.Video:
        """Create a video from a prompt (and an optional reference image). Creates a paid job."""
        return self.send(
            calls.create_video(
                prompt, model=model, size=size, seconds=seconds, input_reference=input_reference
            )
        )

    def get_video(self, video_id: str) -> models.Video:
        return self.send(calls.retrieve_video(video_id))

    def poll_video(self, video_id: str) -> tuple[models.Video, float | None]:
        """The job and the server's suggested seconds until the next poll (if it gave one)."""
        return self.send(calls.poll_video(video_id))

    def list_videos(
        self, *, order: str | None = None, page_size: int | None = None
    ) -> Iterator[models.Video]:
        """Every video, following ``after`` cursors page by page."""
        after: str | None = None
        while True:
            page = self.send(calls.list_videos(after=after, limit=page_size, order=order))
            yield from page.data
            if not page.has_more or not page.data:
                return
            after = page.last_id or page.data[-1].id

    def delete_video(self, video_id: str) -> models.DeletedVideo:
        return self.send(calls.delete_video(video_id))

    def download_content(self, video_id: str, destination: Any, *, variant: str = "video") -> Download:
        """Stream one variant (video, thumbnail, spritesheet) to a path or ObjectStoragePath, atomically."""
        return self.client.download(calls.download_content(video_id, variant), destination)

    def remix_video(self, video_id: str, prompt: str) -> models.Video:
        """Remix a completed video with a new prompt. Creates a paid job."""
        return self.send(calls.remix_video(video_id, prompt))

    def edit_video(self, video: Any, prompt: str, *, model: str | None = None) -> models.Video:
        """Edit a completed video (id or ``{"id": ...}``) or an uploaded file. Creates a paid job."""
        return self.send(calls.edit_video(video, prompt, model=model))

    def extend_video(
        self, video: Any, prompt: str, seconds: str | int, *, model: str | None = None
    ) -> models.Video:
        """Extend a completed video (id or file) by ``seconds``. Creates a paid job."""
        return self.send(calls.extend_video(video, prompt, seconds, model=model))

    def create_character(self, video: Any, name: str, *, model: str | None = None) -> models.VideoCharacter:
        return self.send(calls.create_character(video, name, model=model))

    def get_character(self, character_id: str) -> models.VideoCharacter:
        return self.send(calls.get_character(character_id))

    def test_connection(self) -> tuple[bool, str]:
        """For the UI's Test button: prove the base URL and the key with one read any backend has.

        It retrieves a well-formed id that exists nowhere (gateways may have no list endpoint):
        an answer in the API's own error shape (404 ``video_not_found``, or a gateway's 400) means
        the URL reaches the Videos API and the key was accepted; 401/403, or an error that says
        so (a gateway's 400 ``auth_error`` / ``invalid_api_key``), mean a wrong key; a bare 404
        (no error body) means the base URL is not the API's.
        """
        check = f"GET /videos/{CONNECTION_TEST_ID}"
        try:
            self.send(calls.retrieve_video(CONNECTION_TEST_ID))
        except (AuthenticationError, PermissionDeniedError) as exc:
            return False, f"{check}: the key was refused: {exc}"
        except APIStatusError as exc:
            if _refused_key(exc):  # a gateway's 400 auth_error
                return False, f"{check}: the key was refused: {exc}"
            answered = exc.status_code is not None and exc.status_code < 500
            if answered and (exc.code is not None or exc.error_type is not None):
                answer = f"{exc.status_code} {exc.code or exc.error_type}"
                return True, f"{check} answered {answer}: URL and key work"
            return False, f"{check}: not the Videos API's answer (is the base URL right?): {exc}"
        except VideoAPIError as exc:
            return False, f"{check}: {exc}"
        finally:
            self.close()
        return True, f"{check} answered 200: URL and key work"

    # -- the operations (async) -----------------------------------------------------------------
    async def acreate_video(
        self,
        prompt: str,
        *,
        model: str | None = None,
        size: str | None = None,
        seconds: str | int | None = None,
        input_reference: Any = None,
    ) -> models.Video:
        return await self.asend(
            calls.create_video(
                prompt, model=model, size=size, seconds=seconds, input_reference=input_reference
            )
        )

    async def aget_video(self, video_id: str) -> models.Video:
        return await self.asend(calls.retrieve_video(video_id))

    async def apoll_video(self, video_id: str) -> tuple[models.Video, float | None]:
        return await self.asend(calls.poll_video(video_id))

    async def awatch_video(self, video_id: str) -> Watch:
        """Register a wait for ``video_id`` with the connection's status watcher: its polls then
        share list pages with the other waits of this process (:mod:`airflow_video_edit.watcher`).
        ``close()`` the watch when the wait ends."""
        return shared_watcher(await self.aget_client()).register(video_id)

    async def alist_videos(
        self, *, order: str | None = None, page_size: int | None = None
    ) -> AsyncIterator[models.Video]:
        after: str | None = None
        while True:
            page = await self.asend(calls.list_videos(after=after, limit=page_size, order=order))
            for video in page.data:
                yield video
            if not page.has_more or not page.data:
                return
            after = page.last_id or page.data[-1].id

    async def adelete_video(self, video_id: str) -> models.DeletedVideo:
        return await self.asend(calls.delete_video(video_id))

    async def adownload_content(self, video_id: str, destination: Any, *, variant: str = "video") -> Download:
        return await (await self.aget_client()).download(
            calls.download_content(video_id, variant), destination
        )

    async def aremix_video(self, video_id: str, prompt: str) -> models.Video:
        return await self.asend(calls.remix_video(video_id, prompt))

    async def aedit_video(self, video: Any, prompt: str, *, model: str | None = None) -> models.Video:
        return await self.asend(calls.edit_video(video, prompt, model=model))

    async def aextend_video(
        self, video: Any, prompt: str, seconds: str | int, *, model: str | None = None
    ) -> models.Video:
        return await self.asend(calls.extend_video(video, prompt, seconds, model=model))

    async def acreate_character(
        self, video: Any, name: str, *, model: str | None = None
    ) -> models.VideoCharacter:
        return await self.asend(calls.create_character(video, name, model=model))

    async def aget_character(self, character_id: str) -> models.VideoCharacter:
        return await self.asend(calls.get_character(character_id))


def _refused_key(exc: APIStatusError) -> bool:
    """An error answer that says the key was refused, whatever its status (gateways use 400)."""
    said = f"{exc.code or ''} {exc.error_type or ''}".lower()
    return "auth" in said or "api_key" in said
