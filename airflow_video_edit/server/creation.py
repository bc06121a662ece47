"""How the local server makes each paid job from a job-creating request: create, remix, edit,
extend (their fields checked, the source video found or the upload stored and probed).

:class:`JobMaker` is what :mod:`.app`'s ``POST`` routes call once the body is read and the
``Idempotency-Key`` claimed; it returns the stored :class:`~.records.Job`.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import anyio.to_thread
from starlette.datastructures import UploadFile
from starlette.requests import Request

from airflow_video_edit.models import (
    DEFAULT_MODEL,
    DEFAULT_SECONDS,
    DEFAULT_SIZE,
    KNOWN_EXTENSION_SECONDS,
    KNOWN_MODELS,
    KNOWN_SECONDS,
    KNOWN_SIZES,
)

from . import media
from .faults import job_fault_fields
from .forms import APIError, Body, field_value, image_reference, prompt_field
from .jobs import JobStore
from .records import CREATE, EDIT, EXTEND, REMIX, Job, new_id

_COPY_CHUNK = 1024 * 1024
# (video_id, completed=..., param=...) -> the job or an APIError: the app's lookup.
FindJob = Callable[..., Job]


async def store_upload(upload: UploadFile, directory: Path, stem: str) -> Path:
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


async def probe_upload(path: Path, param: str) -> media.Probe:
    """The uploaded clip's facts, or a 400 naming ``param`` (the upload's folder removed)."""
    try:
        return await anyio.to_thread.run_sync(media.probe, path)
    except media.MediaError as exc:
        shutil.rmtree(path.parent, ignore_errors=True)
        raise APIError(400, f"Invalid '{param}': {exc}", param=param, code="invalid_video") from exc


class JobMaker:
    """Makes the jobs of ``store``; ``find`` looks a source video up as the routes do.

    With ``gateway_quirks`` a request that may carry a model must (the gateway routes by it).
    """

    def __init__(self, store: JobStore, find: FindJob, *, gateway_quirks: bool = False) -> None:
        self.store = store
        self.find = find
        self.gateway_quirks = gateway_quirks

    def require_model(self, body: Body) -> None:
        if self.gateway_quirks and "model" not in body.fields:
            raise APIError(
                400,
                "model is required: the gateway routes each request by its 'model'.",
                param="model",
                code="missing_required_parameter",
            )

    async def create(self, request: Request, body: Body) -> Job:
        """``POST /videos``: a prompt, optionally an ``input_reference`` image."""
        self.require_model(body)
        prompt = prompt_field(body)
        model = field_value(body, "model", default=DEFAULT_MODEL, allowed=KNOWN_MODELS)
        size = field_value(body, "size", default=DEFAULT_SIZE, allowed=KNOWN_SIZES)
        seconds = field_value(body, "seconds", default=DEFAULT_SECONDS, allowed=KNOWN_SECONDS)
        job_id = new_id("video")
        extra = job_fault_fields(request.scope, prompt)
        upload = body.files.get("input_reference")
        if upload is not None:
            path = await store_upload(upload, self.store.job_dir(job_id), "reference")
            extra["reference_file"] = path.name
        elif "input_reference" in body.fields:
            extra["reference"] = image_reference(body.fields["input_reference"])
        return self.store.create(
            CREATE,
            id=job_id,
            model=model or DEFAULT_MODEL,
            prompt=prompt,
            size=size or DEFAULT_SIZE,
            seconds=seconds or DEFAULT_SECONDS,
            **extra,
        )

    async def remix(self, request: Request, body: Body) -> Job:
        """``POST /videos/{id}/remix``: a completed video and a prompt; model and size its own."""
        source = self.find(request.path_params["video_id"], completed=True)
        prompt = prompt_field(body)
        return self.store.create(
            REMIX,
            model=source.model,
            prompt=prompt,
            size=source.size,
            seconds=source.seconds,
            remixed_from_video_id=source.id,
            render_size=source.render_size,
            **job_fault_fields(request.scope, prompt),
        )

    async def edit(self, request: Request, body: Body) -> Job:
        """``POST /videos/edits``."""
        return await self._derive(request, body, EDIT)

    async def extend(self, request: Request, body: Body) -> Job:
        """``POST /videos/extensions``: as an edit, plus the ``seconds`` added."""
        return await self._derive(request, body, EXTEND)

    async def _derive(self, request: Request, body: Body, kind: str) -> Job:
        """Edits and extensions: same three input forms, different output."""
        self.require_model(body)
        prompt = prompt_field(body)
        model = field_value(body, "model", allowed=KNOWN_MODELS)
        extension: str | None = None
        if kind == EXTEND:
            extension = field_value(body, "seconds", required=True, allowed=KNOWN_EXTENSION_SECONDS)
        job_id = new_id("video")
        source, info = await self._source(body, job_id)
        extra = job_fault_fields(request.scope, prompt)
        if source is not None:
            size, base_seconds, base_model = source.size, float(source.seconds), source.model
            extra["render_size"] = source.render_size
            extra["source_id"] = source.id
        else:
            assert info is not None
            # The job reports a size of the spec; the clip's real dimensions stay private.
            size, base_seconds = media.spec_size(info.width, info.height), info.duration
            base_model = DEFAULT_MODEL
            extra["render_size"] = f"{info.width}x{info.height}"
            extra["source_file"] = next(self.store.job_dir(job_id).glob("source*")).name
        if extension is not None:
            extra["extension_seconds"] = int(extension)
            base_seconds += int(extension)
        return self.store.create(
            kind,
            id=job_id,
            model=model or base_model,
            prompt=prompt,
            size=size,
            seconds=str(round(base_seconds)),
            **extra,
        )

    async def _source(self, body: Body, job_id: str) -> tuple[Job | None, media.Probe | None]:
        """The video an edit/extension works on: a stored video by id, or an upload."""
        upload = body.files.get("video")
        if upload is not None:
            path = await store_upload(upload, self.store.job_dir(job_id), "source")
            return None, await probe_upload(path, "video")
        if "video" not in body.fields:
            raise APIError(
                400,
                "Missing required parameter: 'video' (a file upload or {\"id\": ...}).",
                param="video",
                code="missing_required_parameter",
            )
        ref = body.fields["video"]
        video_id = ref.get("id") if isinstance(ref, dict) else None
        if not isinstance(video_id, str) or not video_id:
            raise APIError(
                400,
                'Invalid \'video\': expected a file upload or an object {"id": "<a completed video\'s id>"}.',
                param="video",
                code="invalid_type",
            )
        return self.find(video_id, completed=True, param="video"), None
