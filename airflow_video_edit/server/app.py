"""Routes and validation of the local OpenAI-compatible Videos server (Starlette, no FastAPI).

Every ``/videos*`` operation of the OpenAPI text is served under ``/v1`` with the spec's request
and response shapes (the pydantic models of :mod:`airflow_video_edit.models`). Errors use
OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``.

The ASGI stack, outermost first: access log + stats -> fault injection -> API-key check -> routes.
``/_server/*`` (stats, faults) needs no key and is never faulted.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio.to_thread
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from airflow_video_edit.models import (
    COMPLETED,
    DEFAULT_MODEL,
    DEFAULT_SECONDS,
    DEFAULT_SIZE,
    FAILED,
    KNOWN_EXTENSION_SECONDS,
    KNOWN_MODELS,
    KNOWN_SECONDS,
    KNOWN_SIZES,
    MAX_PROMPT_LENGTH,
    VARIANTS,
    DeletedVideo,
    ErrorBody,
    ErrorDetail,
    VideoList,
)

from . import defaults, media
from .faults import PROMPT_FAIL_MARKER, FaultMiddleware, FaultRule, fault_of, parse_rules
from .jobs import CREATE, EDIT, EXTEND, REMIX, Job, JobStore, new_id

logger = logging.getLogger("airflow_video_edit.server")

POLL_AFTER_HEADER = "openai-poll-after-ms"
_COPY_CHUNK = 1024 * 1024
_ERROR_TYPES = {401: "invalid_request_error", 429: "requests"}
_ERROR_CODES = {401: "invalid_api_key", 413: "file_too_large", 429: "rate_limit_exceeded"}


# --- errors -------------------------------------------------------------------------------------
class APIError(Exception):
    """An error answer in OpenAI's shape; raise it anywhere in a route."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param = status, message, param
        self.code = code or _ERROR_CODES.get(status)
        self.headers = dict(headers or {})

    def body(self) -> bytes:
        kind = _ERROR_TYPES.get(
            self.status, "server_error" if self.status >= 500 else "invalid_request_error"
        )
        detail = ErrorDetail(message=self.message, type=kind, param=self.param, code=self.code)
        return ErrorBody(error=detail).model_dump_json().encode()

    def response(self) -> Response:
        return Response(self.body(), self.status, self.headers, media_type="application/json")


def error_body(status: int, message: str) -> bytes:
    """JSON bytes of an error answer (used by the fault middleware)."""
    return APIError(status, message).body()


def _json(model: BaseModel, headers: Mapping[str, str] | None = None) -> Response:
    return Response(model.model_dump_json(), 200, headers, media_type="application/json")


# --- request bodies -----------------------------------------------------------------------------
@dataclass
class Body:
    """A request body, JSON or form, as nested fields plus uploaded files.

    Form keys like ``video[id]`` become nested fields (``{"video": {"id": ...}}``).
    """

    fields: dict[str, Any] = field(default_factory=dict)
    files: dict[str, UploadFile] = field(default_factory=dict)

    def put(self, key: str, value: Any) -> None:
        target, parts = self.fields, key.replace("]", "").split("[")
        for part in parts[:-1]:
            child = target.setdefault(part, {})
            if not isinstance(child, dict):
                child = target[part] = {}
            target = child
        target[parts[-1]] = value


def _limited(receive: Receive, limit: int) -> Receive:
    """A ``receive`` that fails with 413 once more than ``limit`` body bytes arrived."""
    total = 0

    async def wrapped() -> Message:
        nonlocal total
        message = await receive()
        total += len(message.get("body", b""))
        if total > limit:
            raise APIError(413, f"Request body exceeds the {limit} byte limit.")
        return message

    return wrapped


async def read_body(request: Request, max_bytes: int) -> Body:
    """Parse a JSON or form body; form files are spooled to disk by python-multipart."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes:
        raise APIError(413, f"Request body exceeds the {max_bytes} byte limit.")
    content_type = request.headers.get("content-type", "")
    request = Request(request.scope, _limited(request.receive, max_bytes))
    body = Body()
    if content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        form = await request.form(max_files=16, max_fields=256)
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                body.files[key] = value
            else:
                body.put(key, value)
        return body
    raw = await request.body()
    if not raw.strip():
        return body
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise APIError(400, f"We could not parse the JSON body of your request: {exc}") from exc
    if not isinstance(data, dict):
        raise APIError(400, "The request body must be a JSON object.")
    body.fields = data
    return body


def field_value(
    body: Body,
    name: str,
    *,
    required: bool = False,
    default: str | None = None,
    allowed: tuple[str, ...] | None = None,
    max_length: int | None = None,
) -> str | None:
    """The one validation helper: a string field (numbers accepted), checked, or a 400."""
    value = body.fields.get(name)
    if value is None or value == "":
        if required:
            raise APIError(
                400, f"Missing required parameter: '{name}'.", param=name, code="missing_required_parameter"
            )
        return default
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise APIError(400, f"Invalid type for '{name}': expected a string.", param=name, code="invalid_type")
    text = str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    if allowed is not None and text not in allowed:
        supported = ", ".join(f"'{item}'" for item in allowed)
        raise APIError(
            400,
            f"Invalid value: '{text}'. Supported values are: {supported}.",
            param=name,
            code="invalid_value",
        )
    if max_length is not None and len(text) > max_length:
        raise APIError(
            400,
            f"Invalid '{name}': string too long. Expected a string with maximum length {max_length}, "
            f"but got a string with length {len(text)} instead.",
            param=name,
            code="string_above_max_length",
        )
    return text


def _prompt(body: Body) -> str:
    prompt = field_value(body, "prompt", required=True, max_length=MAX_PROMPT_LENGTH)
    assert prompt is not None
    if not prompt.strip():
        raise APIError(400, "Invalid 'prompt': empty string.", param="prompt", code="empty_string")
    return prompt


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
    ) -> None:
        self.store = store
        self.api_key = api_key
        self.poll_after = str(poll_after_ms)
        self.max_upload_bytes = max_upload_bytes
        self.access_log = access_log
        self.requests: Counter[tuple[str, int]] = Counter()
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
        starlette = Starlette(
            routes=self.routes,
            exception_handlers={APIError: self._api_error, 404: self._not_found, 405: self._not_allowed},
        )
        self.faults = FaultMiddleware(self._auth(starlette), parse_rules(faults), error_body=error_body)
        self._app: ASGIApp = self.faults

    # --- middleware ---------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Access log and request stats around the rest of the stack."""
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # Counted before the client can have the reply: a test that got its answer
                # reads stats that include it.
                self.requests[(self._template(scope), status)] += 1
            await send(message)

        try:
            await self._app(scope, receive, observed_send)
        finally:
            if not status:  # dropped before any reply
                self.requests[(self._template(scope), status)] += 1
            if self.access_log and logger.isEnabledFor(logging.INFO):
                logger.info(
                    "%s %s %s %.1fms",
                    scope["method"],
                    scope["path"],
                    status or "dropped",
                    (time.perf_counter() - started) * 1000,
                )

    def _template(self, scope: Scope) -> str:
        route = scope.get("route")
        if not isinstance(route, Route):
            route = next((r for r in self.routes if r.matches(scope)[0] is Match.FULL), None)
        return f"{scope['method']} {route.path if route is not None else scope['path']}"

    def _auth(self, app: ASGIApp) -> ASGIApp:
        async def check(scope: Scope, receive: Receive, send: Send) -> None:
            if self.api_key is not None and scope["type"] == "http" and scope["path"].startswith("/v1"):
                headers = dict(scope["headers"])
                given = headers.get(b"api-key", b"").decode("latin-1")
                bearer = headers.get(b"authorization", b"").decode("latin-1")
                if bearer[:7].lower() == "bearer ":
                    given = given or bearer[7:].strip()
                if not given or not secrets.compare_digest(given.encode(), self.api_key.encode()):
                    message = (
                        "Incorrect API key provided."
                        if given
                        else "You didn't provide an API key. Use 'Authorization: Bearer KEY'."
                    )
                    await APIError(401, message).response()(scope, receive, send)
                    return
            await app(scope, receive, send)

        return check

    async def _api_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, APIError)
        return exc.response()

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

    async def _store_upload(self, upload: UploadFile, directory: Path, stem: str) -> Path:
        """Copy a spooled upload into ``directory`` (in a worker thread); return its path."""
        suffix = Path(upload.filename or "").suffix.lower()[:8] or ".bin"
        target = directory / f"{stem}{suffix}"

        def copy() -> None:
            directory.mkdir(parents=True, exist_ok=True)
            upload.file.seek(0)
            with target.open("wb") as out:
                shutil.copyfileobj(upload.file, out, _COPY_CHUNK)

        await anyio.to_thread.run_sync(copy)
        return target

    async def _probe_upload(self, path: Path, param: str) -> media.Probe:
        try:
            return await anyio.to_thread.run_sync(media.probe, path)
        except media.MediaError as exc:
            shutil.rmtree(path.parent, ignore_errors=True)
            raise APIError(400, f"Invalid '{param}': {exc}", param=param, code="invalid_video") from exc

    def _failure(self, request: Request, prompt: str) -> dict[str, Any]:
        """Job fields a fault asks for: a scripted failure, early expiry."""
        fault = fault_of(request.scope)
        extra: dict[str, Any] = {}
        marker = PROMPT_FAIL_MARKER.search(prompt)
        code = fault.fail_job if fault is not None and fault.fail_job else marker.group(1) if marker else None
        if code:
            extra["fail_code"] = code
            extra["fail_message"] = f"The video job failed ({code}, injected by the local server)."
        if fault is not None and fault.expire_after is not None:
            extra["asset_ttl"] = max(fault.expire_after, 1e-3)
        return extra

    async def _source(
        self, request: Request, body: Body, job_id: str
    ) -> tuple[Job | None, media.Probe | None]:
        """The video an edit/extension works on: a stored video by id, or an upload."""
        upload = body.files.get("video")
        if upload is not None:
            path = await self._store_upload(upload, self.store.job_dir(job_id), "source")
            return None, await self._probe_upload(path, "video")
        ref = body.fields.get("video")
        video_id = ref.get("id") if isinstance(ref, dict) else ref
        if not isinstance(video_id, str) or not video_id:
            raise APIError(
                400,
                "Missing required parameter: 'video' (a file upload or {\"id\": ...}).",
                param="video",
                code="missing_required_parameter",
            )
        return self._job(video_id, completed=True, param="video"), None

    # --- routes -------------------------------------------------------------------------------
    async def create_video(self, request: Request) -> Response:
        body = await read_body(request, self.max_upload_bytes)
        prompt = _prompt(body)
        model = field_value(body, "model", default=DEFAULT_MODEL, allowed=KNOWN_MODELS)
        size = field_value(body, "size", default=DEFAULT_SIZE, allowed=KNOWN_SIZES)
        seconds = field_value(body, "seconds", default=DEFAULT_SECONDS, allowed=KNOWN_SECONDS)
        job_id = new_id("video")
        extra = self._failure(request, prompt)
        upload = body.files.get("input_reference")
        reference = body.fields.get("input_reference")
        if upload is not None:
            path = await self._store_upload(upload, self.store.job_dir(job_id), "reference")
            extra["reference_file"] = path.name
        elif reference is not None:
            if not isinstance(reference, dict) or len({"image_url", "file_id"} & reference.keys()) != 1:
                raise APIError(
                    400,
                    "Invalid 'input_reference': provide exactly one of 'image_url' or 'file_id'.",
                    param="input_reference",
                    code="invalid_value",
                )
            extra["reference"] = reference
        job = self.store.create(
            CREATE,
            id=job_id,
            model=model or DEFAULT_MODEL,
            prompt=prompt,
            size=size or "",
            seconds=seconds or "",
            **extra,
        )
        return _json(self.store.view(job))

    async def list_videos(self, request: Request) -> Response:
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
        return _json(
            VideoList(
                data=data,
                first_id=data[0].id if data else None,
                last_id=data[-1].id if data else None,
                has_more=has_more,
            )
        )

    async def retrieve_video(self, request: Request) -> Response:
        job = self._job(request.path_params["video_id"])
        return _json(self.store.view(job), {POLL_AFTER_HEADER: self.poll_after})

    async def delete_video(self, request: Request) -> Response:
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
        return _json(DeletedVideo(id=video_id))

    async def download_content(self, request: Request) -> Response:
        video_id = request.path_params["video_id"]
        variant = request.query_params.get("variant", "video")
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
        source = self._job(request.path_params["video_id"], completed=True)
        body = await read_body(request, self.max_upload_bytes)
        prompt = _prompt(body)
        job = self.store.create(
            REMIX,
            model=source.model,
            prompt=prompt,
            size=source.size,
            seconds=source.seconds,
            remixed_from_video_id=source.id,
            **self._failure(request, prompt),
        )
        return _json(self.store.view(job))

    async def _derive(self, request: Request, kind: str) -> Response:
        """Edits and extensions: same three input forms, different output."""
        body = await read_body(request, self.max_upload_bytes)
        prompt = _prompt(body)
        model = field_value(body, "model", allowed=KNOWN_MODELS)
        extension: str | None = None
        if kind == EXTEND:
            extension = field_value(body, "seconds", required=True, allowed=KNOWN_EXTENSION_SECONDS)
        job_id = new_id("video")
        source, info = await self._source(request, body, job_id)
        if source is not None:
            size, base_seconds, base_model = source.size, float(source.seconds), source.model
        else:
            assert info is not None
            size, base_seconds, base_model = f"{info.width}x{info.height}", info.duration, DEFAULT_MODEL
        extra = self._failure(request, prompt)
        if source is None:
            extra["source_file"] = next(self.store.job_dir(job_id).glob("source*")).name
        else:
            extra["source_id"] = source.id
        if extension is not None:
            extra["extension_seconds"] = int(extension)
            base_seconds += int(extension)
        job = self.store.create(
            kind,
            id=job_id,
            model=model or base_model,
            prompt=prompt,
            size=size,
            seconds=str(round(base_seconds)),
            **extra,
        )
        return _json(self.store.view(job))

    async def edit_video(self, request: Request) -> Response:
        return await self._derive(request, EDIT)

    async def extend_video(self, request: Request) -> Response:
        return await self._derive(request, EXTEND)

    async def create_character(self, request: Request) -> Response:
        body = await read_body(request, self.max_upload_bytes)
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
        path = await self._store_upload(upload, staging, "source")
        await self._probe_upload(path, "video")
        character = await anyio.to_thread.run_sync(self.store.add_character, name, path)
        shutil.rmtree(staging, ignore_errors=True)
        return _json(character.view())

    async def get_character(self, request: Request) -> Response:
        character_id = request.path_params["character_id"]
        character = self.store.characters.get(character_id)
        if character is None:
            raise APIError(404, f"Character with id '{character_id}' not found.", code="character_not_found")
        return _json(character.view())

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


class _FileResponse(FileResponse):
    """Streams from disk in 1 MiB chunks (fewer event-loop turns than Starlette's 64 KiB)."""

    chunk_size = 1024 * 1024


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
    )
