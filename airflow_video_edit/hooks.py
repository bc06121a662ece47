"""The Hook: an Airflow connection in, every Videos API operation out (sync and async).

The Hook only turns a Connection into :class:`~airflow_video_edit.http.ClientSettings` and names
the operations; requests, errors and retries live in :mod:`airflow_video_edit.http`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator, Mapping
from functools import cached_property
from typing import Any

from airflow.providers.common.compat.connection import get_async_connection
from airflow.sdk import BaseHook
from airflow.sdk.log import amask_secret, mask_secret

from airflow_video_edit import http, models
from airflow_video_edit.errors import InvalidInputError, VideoAPIError
from airflow_video_edit.http import ClientSettings, Download

DEFAULT_BASE_URL = "https://api.openai.com/v1"

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


def _as_mapping(value: Any, name: str) -> dict[str, str]:
    """Extra headers / query parameters: a JSON object, given as a dict or as JSON text."""
    if value in (None, "", {}):
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise InvalidInputError(f"connection extra {name!r} is not a JSON object", param=name) from None
    if not isinstance(value, Mapping):
        raise InvalidInputError(f"connection extra {name!r} must be a JSON object", param=name)
    return {str(key): str(item) for key, item in value.items()}


def _as_bool(value: Any, default: bool) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _verify(value: Any) -> bool | str:
    if value is None or value == "":
        return True
    if isinstance(value, bool):
        return value
    text = str(value).strip()
    if text.lower() in ("true", "false", "1", "0", "yes", "no"):
        return _as_bool(text, True)
    return text  # a CA bundle path


def _base_url(host: str | None, port: int | None, schema: str | None, extra: Mapping[str, Any]) -> str:
    """``host`` is the base URL. A URI-style connection (host, port, schema) is also understood."""
    if not host:
        return DEFAULT_BASE_URL
    if "://" in host:
        return host.rstrip("/")
    scheme = str(extra.get("scheme") or "https")
    url = f"{scheme}://{host}"
    if port:
        url += f":{port}"
    if schema:
        url += "/" + schema.strip("/")
    return url


def settings_from_connection(
    *,
    host: str | None,
    port: int | None,
    schema: str | None,
    password: str | None,
    extra: Mapping[str, Any],
) -> ClientSettings:
    """Build client settings from a connection's fields. Pure: shared by the sync and async paths."""
    defaults = ClientSettings()
    auth_style = str(extra.get("auth_style") or "bearer").lower()
    if auth_style not in ("bearer", "api-key"):
        raise InvalidInputError(
            f"connection extra 'auth_style' must be 'bearer' or 'api-key', got {auth_style!r}",
            param="auth_style",
        )

    def number(name: str, default: float) -> float:
        value = extra.get(name)
        return default if value in (None, "") else float(value)

    return ClientSettings(
        base_url=_base_url(host, port, schema, extra),
        api_key=password or None,
        auth_style="api-key" if auth_style == "api-key" else "bearer",
        organization=extra.get("organization") or None,
        project=extra.get("project") or None,
        extra_headers=tuple(_as_mapping(extra.get("extra_headers"), "extra_headers").items()),
        extra_query=tuple(_as_mapping(extra.get("extra_query"), "extra_query").items()),
        default_model=extra.get("default_model") or None,
        connect_timeout=number("connect_timeout", defaults.connect_timeout),
        read_timeout=number("read_timeout", defaults.read_timeout),
        max_retries=int(number("max_retries", defaults.max_retries)),
        max_retry_seconds=number("max_retry_seconds", defaults.max_retry_seconds),
        retry_job_creation=_as_bool(extra.get("retry_job_creation"), False),
        verify=_verify(extra.get("verify")),
        proxy=extra.get("proxy") or None,
    )


class OpenAIVideosHook(BaseHook):
    """Talks to an OpenAI-compatible Videos API (OpenAI, Azure AI Foundry, LiteLLM proxy, ...).

    Connection fields: host = base URL (e.g. ``https://api.openai.com/v1``,
    ``https://<resource>.openai.azure.com/openai/v1``, ``http://litellm:4000/v1``), password = API
    key, and the extras declared in the provider info (auth style, organization, project, extra
    headers and query parameters, timeouts, retries, TLS, proxy, default model).

    Sync methods use one ``httpx.Client`` per hook (close it with :meth:`close`, or use the hook
    as a context manager). Async methods (prefixed ``a``) resolve the connection with Airflow's
    async connection API and use one pooled ``httpx.AsyncClient`` shared by every hook of equal
    settings on the event loop, which is what keeps thousands of triggers cheap.

    :param openai_videos_conn_id: the Airflow connection id.
    """

    conn_name_attr = "openai_videos_conn_id"
    default_conn_name = "openai_videos_default"
    conn_type = "openai_videos"
    hook_name = "OpenAI-compatible Videos API"

    def __init__(self, openai_videos_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.openai_videos_conn_id = openai_videos_conn_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}(openai_videos_conn_id={self.openai_videos_conn_id!r})"

    # -- connection -> settings ---------------------------------------------------------------
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
        """Settings resolved without blocking the event loop (Airflow's async connection API)."""
        conn = await get_async_connection(self.openai_videos_conn_id, hook=self)
        if conn.password:
            await amask_secret(conn.password)
        extra = await get_async_extra_dejson(conn)
        return settings_from_connection(
            host=conn.host, port=conn.port, schema=conn.schema, password=conn.password, extra=extra
        )

    @cached_property
    def client(self) -> http.VideosClient:
        return http.VideosClient(self.settings)

    async def aget_client(self) -> http.AsyncVideosClient:
        """The process-wide pooled async client for this connection's settings."""
        return await http.shared_async_client(await self.aget_settings())

    def close(self) -> None:
        if "client" in self.__dict__:
            self.client.close()
            del self.__dict__["client"]

    def __enter__(self) -> OpenAIVideosHook:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- operations (sync) --------------------------------------------------------------------
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
        call = http.create_video(
            prompt, model=model, size=size, seconds=seconds, input_reference=input_reference
        )
        return self.client.request(call)

    def get_video(self, video_id: str) -> models.Video:
        return self.client.request(http.retrieve_video(video_id))

    def poll_video(self, video_id: str) -> tuple[models.Video, float | None]:
        """The job and the server's suggested seconds until the next poll (if it gave one)."""
        return self.client.request(http.poll_video(video_id))

    def list_videos(
        self, *, order: str | None = None, page_size: int | None = None
    ) -> Iterator[models.Video]:
        """Every video, following ``after`` cursors page by page."""
        after: str | None = None
        while True:
            page = self.client.request(http.list_videos(after=after, limit=page_size, order=order))
            yield from page.data
            if not page.has_more or not page.data:
                return
            after = page.last_id or page.data[-1].id

    def delete_video(self, video_id: str) -> models.DeletedVideo:
        return self.client.request(http.delete_video(video_id))

    def download_content(self, video_id: str, destination: Any, *, variant: str = "video") -> Download:
        """Stream one variant (video, thumbnail, spritesheet) to a path or ObjectStoragePath, atomically."""
        return self.client.download(http.download_content(video_id, variant), destination)

    def remix_video(self, video_id: str, prompt: str) -> models.Video:
        """Remix a completed video with a new prompt. Creates a paid job."""
        return self.client.request(http.remix_video(video_id, prompt))

    def edit_video(self, video: Any, prompt: str, *, model: str | None = None) -> models.Video:
        """Edit a completed video (id or ``{"id": ...}``) or an uploaded file. Creates a paid job."""
        return self.client.request(http.edit_video(video, prompt, model=model))

    def extend_video(
        self, video: Any, prompt: str, seconds: str | int, *, model: str | None = None
    ) -> models.Video:
        """Extend a completed video (id or file) by ``seconds``. Creates a paid job."""
        return self.client.request(http.extend_video(video, prompt, seconds, model=model))

    def create_character(self, video: Any, name: str) -> models.VideoCharacter:
        return self.client.request(http.create_character(video, name))

    def get_character(self, character_id: str) -> models.VideoCharacter:
        return self.client.request(http.get_character(character_id))

    def test_connection(self) -> tuple[bool, str]:
        """For the UI's Test button: one cheap authenticated read (list one video)."""
        try:
            self.client.request(http.list_videos(limit=1))
        except VideoAPIError as exc:
            return False, str(exc)
        finally:
            self.close()
        return True, "Connection to the Videos API works"

    # -- operations (async) -------------------------------------------------------------------
    async def acreate_video(
        self,
        prompt: str,
        *,
        model: str | None = None,
        size: str | None = None,
        seconds: str | int | None = None,
        input_reference: Any = None,
    ) -> models.Video:
        call = http.create_video(
            prompt, model=model, size=size, seconds=seconds, input_reference=input_reference
        )
        return await (await self.aget_client()).request(call)

    async def aget_video(self, video_id: str) -> models.Video:
        return await (await self.aget_client()).request(http.retrieve_video(video_id))

    async def apoll_video(self, video_id: str) -> tuple[models.Video, float | None]:
        return await (await self.aget_client()).request(http.poll_video(video_id))

    async def alist_videos(
        self, *, order: str | None = None, page_size: int | None = None
    ) -> AsyncIterator[models.Video]:
        client = await self.aget_client()
        after: str | None = None
        while True:
            page = await client.request(http.list_videos(after=after, limit=page_size, order=order))
            for video in page.data:
                yield video
            if not page.has_more or not page.data:
                return
            after = page.last_id or page.data[-1].id

    async def adelete_video(self, video_id: str) -> models.DeletedVideo:
        return await (await self.aget_client()).request(http.delete_video(video_id))

    async def adownload_content(self, video_id: str, destination: Any, *, variant: str = "video") -> Download:
        return await (await self.aget_client()).download(
            http.download_content(video_id, variant), destination
        )

    async def aremix_video(self, video_id: str, prompt: str) -> models.Video:
        return await (await self.aget_client()).request(http.remix_video(video_id, prompt))

    async def aedit_video(self, video: Any, prompt: str, *, model: str | None = None) -> models.Video:
        return await (await self.aget_client()).request(http.edit_video(video, prompt, model=model))

    async def aextend_video(
        self, video: Any, prompt: str, seconds: str | int, *, model: str | None = None
    ) -> models.Video:
        return await (await self.aget_client()).request(
            http.extend_video(video, prompt, seconds, model=model)
        )

    async def acreate_character(self, video: Any, name: str) -> models.VideoCharacter:
        return await (await self.aget_client()).request(http.create_character(video, name))

    async def aget_character(self, character_id: str) -> models.VideoCharacter:
        return await (await self.aget_client()).request(http.get_character(character_id))
