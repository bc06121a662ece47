"""Routes and validation of the local OpenAI-compatible Videos server (Starlette, no FastAPI).

Every ``/videos*`` operation of the OpenAPI text is served under ``/v1`` with the spec's request
and response shapes (the pydantic models of :mod:`airflow_video_edit.models`). Errors use
OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``.

The ASGI stack, outermost first (:mod:`.middleware`): access log + stats -> fault injection ->
API-key check -> routes. Bodies, field checks and the error envelope: :mod:`.forms`; what each
job-creating route makes: :mod:`.creation`.
``/_server/*`` (stats, faults) is never faulted; with a key set it needs the key too.
The job gallery (``/``, ``/jobs/{id}``: HTML for people) is :mod:`.gallery`.
With ``gateway_quirks`` the server behaves like an AI gateway (:mod:`.gateway`).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Awaitable, Callable
from typing import Any

import anyio.to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from airflow_video_edit.models import (
    COMPLETED,
    FAILED,
    VARIANTS,
    DeletedVideo,
    VideoList,
)

from . import defaults, gateway, idempotency, media
from .creation import JobMaker, probe_upload, store_upload
from .faults import FaultMiddleware, FaultRule, parse_rules
from .forms import APIError, Body, error_body, field_value, json_response, read_body
from .gallery import Gallery
from .jobs import JobStore
from .middleware import ApiKeyCheck, ObservedRequests
from .records import Job, new_id

POLL_AFTER_HEADER = "openai-poll-after-ms"


class _FileResponse(FileResponse):
    """Streams from disk in 1 MiB chunks (fewer event-loop turns than Starlette's 64 KiB)."""

    chunk_size = 1024 * 1024


# --- the application ----------------------------------------------------------------------------
class VideosApp:
    """The ASGI application: routes, middleware stack, stats and run-time fault rules.

    Args:
        store: the job store.
        api_key: the accepted key (``Authorization: Bearer K`` or ``api-key: K``); ``None``
            accepts any key.
        poll_after_ms: value of the ``openai-poll-after-ms`` header on retrieve answers.
        faults: run-wide fault rules (strings/mappings, see :mod:`.faults`).
        max_upload_bytes: largest accepted request body.
        access_log: log one line per request (logger ``airflow_video_edit.server``, INFO).
        gateway_quirks: behave like an AI gateway (long rewritten ids, ``variant`` ignored,
            ``model`` required, no list or delete, 400 for a wrong key): see :mod:`.gateway`.
    """

    def __init__(
        self,
        store: JobStore,
        *,
        api_key: str | None = None,
        poll_after_ms: int = defaults.POLL_AFTER_MS,
        faults: Any = None,
        max_upload_bytes: int = defaults.MAX_UPLOAD_BYTES,
        access_log: bool = True,
        gateway_quirks: bool = False,
    ) -> None:
        self.store = store
        self.gateway_quirks = gateway_quirks
        self.keys = idempotency.IdempotencyKeys(store.clock)
        self.api_key = api_key
        self.poll_after = str(poll_after_ms)
        self.max_upload_bytes = max_upload_bytes
        self.maker = JobMaker(store, self._job, gateway_quirks=gateway_quirks)
        self.routes = [
            Route("/v1/videos", self.create_video, methods=["POST"]),
            Route("/v1/videos", self.list_videos, methods=["GET"]),
            Route("/v1/videos/edits", self.edit_video, methods=["POST"]),
            Route("/v1/videos/extensions", self.extend_video, methods=["POST"]),
            Route("/v1/videos/characters", self.create_character, methods=["POST"]),
            Route("/v1/videos/characters/{character_id}", self.get_character, methods=["GET"]),
            Route("/v1/videos/{video_id}", self.retrieve_video, methods=["GET"]),
            Route("/v1/videos/{video_id}", self.delete_video, methods=["DELETE"]),
            Route("/v1/videos/{video_id}/content", self.download_content, methods=["GET"]),
            Route("/v1/videos/{video_id}/remix", self.remix_video, methods=["POST"]),
            Route("/_server/stats", self.stats_route, methods=["GET"]),
            Route("/_server/reset-stats", self.reset_stats_route, methods=["POST"]),
            Route("/_server/faults", self.faults_route, methods=["POST"]),
        ]
        # The job gallery (HTML pages at /, /jobs/{id}): its own module, its own key check.
        self.gallery = Gallery(
            store,
            lambda: self.api_key,
            shown_id=gateway.external_id if gateway_quirks else str,
            stored_id=gateway.internal_id if gateway_quirks else str,
        )
        self.routes += self.gallery.routes
        starlette = Starlette(
            routes=self.routes,
            exception_handlers={
                APIError: self._api_error,
                HTTPException: self._http_error,
                404: self._not_found,
                405: self._not_allowed,
            },
        )
        routed = gateway.GatewayPaths(starlette) if gateway_quirks else starlette
        checked = ApiKeyCheck(routed, lambda: self.api_key, refused_status=400 if gateway_quirks else 401)
        self.faults = FaultMiddleware(checked, parse_rules(faults), error_body=error_body)
        self.observed = ObservedRequests(self.faults, self.routes, access_log=access_log)
        self.requests = self.observed.requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.observed(scope, receive, send)

    async def _api_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, APIError)
        return exc.response()

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return APIError(exc.status_code, str(exc.detail), headers=exc.headers).response()

    async def _not_found(self, request: Request, exc: Exception) -> Response:
        return APIError(404, f"Invalid URL ({request.method} {request.url.path})").response()

    async def _not_allowed(self, request: Request, exc: Exception) -> Response:
        return APIError(405, f"Method {request.method} not allowed for {request.url.path}").response()

    # --- helpers ------------------------------------------------------------------------------
    def _job(
        self, video_id: str, *, completed: bool = False, param: str | None = None, expired_status: int = 409
    ) -> Job:
        """The job or a 404; with ``completed``, a 409 unless it completed (and expired_status if
        its assets expired)."""
        if self.gateway_quirks:
            video_id = gateway.internal_id(video_id)
        job = self.store.get(video_id)
        if job is None:
            raise APIError(404, f"Video with id '{video_id}' not found.", param=param, code="video_not_found")
        if completed:
            status, _ = job.state(self.store.clock())
            if status != COMPLETED:
                raise APIError(
                    409,
                    f"Video '{video_id}' is {status}; only completed videos can be used here.",
                    param=param,
                    code="video_not_ready",
                )
            if self.store.clock() >= job.expires_at:
                raise APIError(
                    expired_status,
                    f"The assets of video '{video_id}' have expired.",
                    param=param,
                    code="video_expired",
                )
        return job

    def _view(self, job: Job, headers: dict[str, str] | None = None) -> Response:
        """A job's Video object as the answer (ids rewritten in gateway mode)."""
        video = self.store.view(job)
        if self.gateway_quirks:
            remixed = video.remixed_from_video_id
            video = video.model_copy(
                update={
                    "id": gateway.external_id(video.id),
                    "remixed_from_video_id": gateway.external_id(remixed) if remixed else None,
                }
            )
        return json_response(video, headers)

    def _gateway_refuses(self, request: Request, status: int) -> None:
        if self.gateway_quirks:
            raise APIError(
                status,
                f"{request.method} {request.url.path} is not supported by this gateway.",
                code="unsupported_route",
            )

    # --- routes -------------------------------------------------------------------------------
    async def _creating(self, request: Request, make: Callable[[Request, Body], Awaitable[Job]]) -> Response:
        """A job-creating POST: the body, then the ``Idempotency-Key`` (a replay answers with the
        job the key's first request created), then ``make`` creates the job."""
        body = await read_body(request, self.max_upload_bytes)
        async with self.keys.claim(request, body) as claim:
            if claim.replay is not None:
                return self._view(self._job(claim.replay), idempotency.REPLAYED)
            job = await make(request, body)
            claim.video_id = job.id
        return self._view(job)

    async def create_video(self, request: Request) -> Response:
        return await self._creating(request, self.maker.create)

    async def list_videos(self, request: Request) -> Response:
        self._gateway_refuses(request, 400)
        query = request.query_params
        limit_text = query.get("limit", "20")
        if not limit_text.isdigit() or not 0 <= int(limit_text) <= 100:
            raise APIError(
                400,
                "Invalid 'limit': expected an integer from 0 to 100.",
                param="limit",
                code="invalid_value",
            )
        order = query.get("order", "desc")
        if order not in ("asc", "desc"):
            raise APIError(
                400, "Invalid 'order': expected 'asc' or 'desc'.", param="order", code="invalid_value"
            )
        after = query.get("after") or None
        if after is not None and self.store.get(after) is None:
            raise APIError(404, f"Video with id '{after}' not found.", param="after", code="video_not_found")
        jobs, has_more = self.store.page(after=after, limit=int(limit_text), descending=order == "desc")
        data = [self.store.view(job) for job in jobs]
        return json_response(
            VideoList(
                data=data,
                first_id=data[0].id if data else None,
                last_id=data[-1].id if data else None,
                has_more=has_more,
            )
        )

    async def retrieve_video(self, request: Request) -> Response:
        job = self._job(request.path_params["video_id"])
        return self._view(job, {POLL_AFTER_HEADER: self.poll_after})

    async def delete_video(self, request: Request) -> Response:
        self._gateway_refuses(request, 405)
        video_id = request.path_params["video_id"]
        job = self._job(video_id)
        status, _ = job.state(self.store.clock())
        if status not in (COMPLETED, FAILED):
            raise APIError(
                409,
                f"Video '{video_id}' is {status}; only finished videos can be deleted.",
                code="video_not_finished",
            )
        await anyio.to_thread.run_sync(self.store.delete, video_id)
        return json_response(DeletedVideo(id=video_id))

    async def download_content(self, request: Request) -> Response:
        video_id = request.path_params["video_id"]
        # A gateway drops the query: every variant comes back as the MP4.
        variant = "video" if self.gateway_quirks else request.query_params.get("variant", "video")
        if variant not in VARIANTS:
            supported = ", ".join(VARIANTS)
            raise APIError(
                400, f"Invalid 'variant': expected one of {supported}.", param="variant", code="invalid_value"
            )
        job = self._job(video_id, completed=True, expired_status=404)
        try:
            files = await anyio.to_thread.run_sync(self.store.ensure_media, job)
        except media.MediaError as exc:
            raise APIError(500, f"Rendering failed: {exc}", code="render_failed") from exc
        path = {"video": files.video, "thumbnail": files.thumbnail, "spritesheet": files.spritesheet}[variant]
        if not path.exists():
            raise APIError(
                404, f"Video '{video_id}' has no {variant}.", param="variant", code="variant_not_found"
            )
        content_type = "video/mp4" if variant == "video" else media.image_format()[1]
        return _FileResponse(path, media_type=content_type)

    async def remix_video(self, request: Request) -> Response:
        return await self._creating(request, self.maker.remix)

    async def edit_video(self, request: Request) -> Response:
        return await self._creating(request, self.maker.edit)

    async def extend_video(self, request: Request) -> Response:
        return await self._creating(request, self.maker.extend)

    async def create_character(self, request: Request) -> Response:
        body = await read_body(request, self.max_upload_bytes)
        self.maker.require_model(body)
        name = field_value(body, "name", required=True, max_length=80)
        assert name is not None
        upload = body.files.get("video")
        if upload is None:
            raise APIError(
                400,
                "Missing required parameter: 'video' (a file upload).",
                param="video",
                code="missing_required_parameter",
            )
        staging = self.store.job_dir(new_id("upload"))
        path = await store_upload(upload, staging, "source")
        await probe_upload(path, "video")
        character = await anyio.to_thread.run_sync(self.store.add_character, name, path)
        shutil.rmtree(staging, ignore_errors=True)
        return json_response(character.view())

    async def get_character(self, request: Request) -> Response:
        character_id = request.path_params["character_id"]
        character = self.store.characters.get(character_id)
        if character is None:
            raise APIError(404, f"Character with id '{character_id}' not found.", code="character_not_found")
        return json_response(character.view())

    # --- server control -----------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Requests by route template and status, plus job counts."""
        by_route: dict[str, dict[str, int]] = {}
        for (route, status), count in sorted(self.requests.items()):
            by_route.setdefault(route, {})[str(status)] = count
        return {"requests": by_route, "requests_total": sum(self.requests.values()), **self.store.stats()}

    def reset_stats(self) -> None:
        self.requests.clear()
        self.store.reset_stats()

    def set_faults(self, rules: Any) -> list[FaultRule]:
        parsed = parse_rules(rules)
        self.faults.set_rules(parsed)
        return parsed

    async def stats_route(self, request: Request) -> Response:
        return Response(json.dumps(self.stats()), media_type="application/json")

    async def reset_stats_route(self, request: Request) -> Response:
        self.reset_stats()
        return Response(json.dumps({"ok": True}), media_type="application/json")

    async def faults_route(self, request: Request) -> Response:
        body = await request.body()
        try:
            rules = self.set_faults(json.loads(body or b"[]"))
        except ValueError as exc:
            raise APIError(400, f"Invalid fault rules: {exc}") from exc
        return Response(json.dumps({"rules": len(rules)}), media_type="application/json")


def create_app(
    *,
    api_key: str | None = None,
    job_seconds: float = defaults.JOB_SECONDS,
    poll_after_ms: int = defaults.POLL_AFTER_MS,
    data_dir: str | os.PathLike[str] | None = None,
    faults: Any = None,
    max_upload_bytes: int = defaults.MAX_UPLOAD_BYTES,
    asset_ttl: float = defaults.ASSET_TTL,
    access_log: bool = True,
    gateway_quirks: bool = False,
    store: JobStore | None = None,
) -> VideosApp:
    """Build the ASGI app (with a new :class:`JobStore` unless ``store`` is given).

    The caller owns the store: call ``app.store.close()`` when done.
    """
    if store is None:
        store = JobStore(data_dir, job_seconds=job_seconds, asset_ttl=asset_ttl)
    return VideosApp(
        store,
        api_key=api_key,
        poll_after_ms=poll_after_ms,
        faults=faults,
        max_upload_bytes=max_upload_bytes,
        access_log=access_log,
        gateway_quirks=gateway_quirks,
    )
