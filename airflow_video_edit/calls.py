"""Requests: input validation and one builder per API operation, shared by sync and async.

A builder (``create_video``, ``edit_video``, ``retrieve_video``, ...) checks its input and
describes the request as a :class:`Call`, *before* anything is sent: bad input raises
:class:`~airflow_video_edit.errors.InvalidInputError` naming the argument, and costs nothing.
``build_request`` is the one way a ``Call`` becomes an httpx request.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any, Generic, TypeVar
from urllib.parse import quote

import httpx

from airflow_video_edit import models
from airflow_video_edit.errors import InvalidInputError
from airflow_video_edit.replies import (
    parse_character,
    parse_deleted,
    parse_list_poll,
    parse_poll,
    parse_video,
    parse_video_list,
)

T = TypeVar("T")


class UploadSource:
    """A file to upload, opened anew for each attempt and read in chunks, never whole.

    Accepts a local path (``str`` / ``os.PathLike``), an ``ObjectStoragePath`` (anything with
    ``open()`` and ``stat()``) or ``bytes``.
    """

    def __init__(self, source: Any, *, argument: str, filename: str | None = None) -> None:
        self._source = source
        if isinstance(source, bytes | bytearray):
            if not source:
                raise InvalidInputError(f"{argument}: the bytes to upload are empty", param=argument)
            self.filename = filename or "upload.mp4"
            self.size = len(source)
        elif isinstance(source, str | os.PathLike):
            path = Path(source)
            if not str(source).strip():
                raise InvalidInputError(f"{argument}: empty path", param=argument)
            if not path.exists():
                raise InvalidInputError(f"{argument}: no such file: {path}", param=argument)
            if not path.is_file():
                raise InvalidInputError(f"{argument}: not a regular file: {path}", param=argument)
            self._source = path
            self.filename = filename or path.name
            self.size = path.stat().st_size
        elif hasattr(source, "open") and hasattr(source, "stat"):
            if not source.is_file():
                raise InvalidInputError(f"{argument}: no such file: {source}", param=argument)
            self.filename = filename or str(getattr(source, "name", "upload.mp4"))
            self.size = int(source.stat().st_size)
        else:
            raise InvalidInputError(
                f"{argument}: expected a path, an ObjectStoragePath or bytes, got {type(source).__name__}",
                param=argument,
            )
        if self.size == 0:
            raise InvalidInputError(f"{argument}: the file is empty: {self.filename}", param=argument)

    @property
    def content_type(self) -> str:
        suffix = Path(self.filename).suffix.lower()
        return {
            ".mp4": "video/mp4",
            ".mov": "video/quicktime",
            ".webm": "video/webm",
            ".png": "image/png",
            ".jpg": "image/jpeg",
            ".jpeg": "image/jpeg",
            ".webp": "image/webp",
        }.get(suffix, "application/octet-stream")

    @contextmanager
    def open(self) -> Iterator[IO[bytes]]:

        if isinstance(self._source, bytes | bytearray):
            yield io.BytesIO(self._source)
        else:
            with self._source.open("rb") as handle:
                yield handle


@dataclass(frozen=True)
class Call(Generic[T]):
    """One API operation: the request to send and how to read its reply."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    json: dict[str, Any] | None = None
    params: dict[str, Any] | None = None
    form: dict[str, str] | None = None
    upload: tuple[str, UploadSource] | None = None
    # A POST that creates a paid job: retried only where it surely created nothing.
    creates_job: bool = False
    # Operations whose body takes a model get the connection's default model when none is given.
    takes_model: bool = False
    # Sent as ``Idempotency-Key`` on a job-creating POST: the same for every attempt and every
    # task try of one submit, so a backend that honours it never creates a second job.
    idempotency_key: str | None = None

    def with_default_model(self, model: str | None) -> Call[T]:
        if not self.takes_model or not model:
            return self
        if self.json is not None and "model" not in self.json:
            return replace(self, json={**self.json, "model": model})
        if self.form is not None and "model" not in self.form:
            return replace(self, form={**self.form, "model": model})
        return self


def check_prompt(prompt: Any, argument: str = "prompt") -> str:
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidInputError(f"{argument}: must be a non-empty string", param=argument)
    if len(prompt) > models.MAX_PROMPT_LENGTH:
        raise InvalidInputError(
            f"{argument}: {len(prompt)} characters, at most {models.MAX_PROMPT_LENGTH} allowed",
            param=argument,
        )
    return prompt


def check_video_id(video_id: Any, argument: str = "video_id") -> str:
    """Ids are opaque (gateways rewrite them: LiteLLM's are standard base64, ``/`` and ``+``
    included, and go percent-encoded in a path): no prefix or length is assumed, only sanity."""
    if isinstance(video_id, Mapping):
        video_id = video_id.get("id")
    if not isinstance(video_id, str) or not video_id:
        raise InvalidInputError(f"{argument}: must be a non-empty string id", param=argument)
    bad = [c for c in video_id if c.isspace() or c in "?#" or not c.isprintable()]
    if bad:
        raise InvalidInputError(
            f"{argument}: {video_id!r} is not a valid id (contains {bad[0]!r})", param=argument
        )
    return video_id


def _check_choice(value: str | None, argument: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidInputError(f"{argument}: must be a non-empty string", param=argument)
    return value


def _seconds(value: str | int | None) -> str | None:
    if value is None:
        return None
    text = str(value)
    if not text.isdigit() or int(text) <= 0:
        raise InvalidInputError(f"seconds: must be a positive whole number, got {value!r}", param="seconds")
    return text


def _video_path(video_id: str, suffix: str = "") -> str:
    return "videos/" + quote(video_id, safe="") + suffix


def _body(**fields: Any) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value is not None}


def create_video(
    prompt: str,
    *,
    model: str | None = None,
    size: str | None = None,
    seconds: str | int | None = None,
    input_reference: Any = None,
) -> Call[models.Video]:
    """``POST /videos``: JSON, or multipart when ``input_reference`` is a file to upload."""
    fields = _body(
        prompt=check_prompt(prompt),
        model=_check_choice(model, "model"),
        size=_check_choice(size, "size"),
        seconds=_seconds(seconds),
    )
    if isinstance(input_reference, Mapping):
        return Call(
            "POST",
            "videos",
            parse_video,
            json={**fields, "input_reference": dict(input_reference)},
            creates_job=True,
            takes_model=True,
        )
    if input_reference is not None:
        upload = ("input_reference", UploadSource(input_reference, argument="input_reference"))
        return Call(
            "POST", "videos", parse_video, form=fields, upload=upload, creates_job=True, takes_model=True
        )
    return Call("POST", "videos", parse_video, json=fields, creates_job=True, takes_model=True)


def retrieve_video(video_id: str) -> Call[models.Video]:
    return Call("GET", _video_path(check_video_id(video_id)), parse_video)


def poll_video(video_id: str) -> Call[tuple[models.Video, float | None]]:
    """``GET /videos/{id}``, also returning the server's ``openai-poll-after-ms`` hint in seconds."""
    return Call("GET", _video_path(check_video_id(video_id)), parse_poll)


def list_videos(
    *, after: str | None = None, limit: int | None = None, order: str | None = None
) -> Call[models.VideoList]:
    if limit is not None and not 0 <= limit <= 100:
        raise InvalidInputError("limit: must be between 0 and 100", param="limit")
    if order is not None and order not in ("asc", "desc"):
        raise InvalidInputError("order: must be 'asc' or 'desc'", param="order")
    if after is not None and (not isinstance(after, str) or not after):
        raise InvalidInputError("after: must be a non-empty cursor string", param="after")
    # A cursor is the backend's own opaque text: sent back as received (httpx encodes it).
    params = _body(after=after, limit=limit, order=order)
    return Call("GET", "videos", parse_video_list, params=params)


def status_page(after: str | None = None) -> Call[tuple[models.VideoList, float | None]]:
    """One page of the newest jobs (100, newest first, below ``after``) with the poll-after hint:
    the status of many waiting jobs in one request (:mod:`airflow_video_edit.watcher`)."""
    return Call(
        "GET", "videos", parse_list_poll, params=list_videos(after=after, limit=100, order="desc").params
    )


def delete_video(video_id: str) -> Call[models.DeletedVideo]:
    return Call("DELETE", _video_path(check_video_id(video_id)), parse_deleted)


def download_content(video_id: str, variant: str = "video") -> Call[None]:
    if variant not in models.VARIANTS:
        raise InvalidInputError(
            f"variant: {variant!r} is not one of {', '.join(models.VARIANTS)}", param="variant"
        )
    return Call(
        "GET",
        _video_path(check_video_id(video_id), "/content"),
        lambda response: None,
        params={"variant": variant},
    )


def remix_video(video_id: str, prompt: str) -> Call[models.Video]:
    return Call(
        "POST",
        _video_path(check_video_id(video_id), "/remix"),
        parse_video,
        json={"prompt": check_prompt(prompt)},
        creates_job=True,
    )


def _source_video_call(
    path: str, video: Any, fields: dict[str, Any], *, argument: str = "video"
) -> Call[models.Video]:
    """Edits and extensions take a completed video's id (JSON) or a file upload (multipart)."""
    if isinstance(video, str | Mapping) and not _looks_like_local_file(video):
        reference = {"id": check_video_id(video, argument)}
        return Call(
            "POST", path, parse_video, json={"video": reference, **fields}, creates_job=True, takes_model=True
        )
    upload = (argument, UploadSource(video, argument=argument))
    form = {key: str(value) for key, value in fields.items()}
    return Call("POST", path, parse_video, form=form, upload=upload, creates_job=True, takes_model=True)


def _looks_like_local_file(value: Any) -> bool:
    """A string names a file to upload when it is one, has a video file suffix or starts like a
    path (``/``, ``./``, ``../``, ``~``); any other string is an id. Gateway ids may hold ``/``
    (base64), so a separator alone does not make a path: ``clips/a`` that does not exist is sent
    as an id, and the backend's 404 says so."""
    if not isinstance(value, str) or not value:
        return False
    starts_like_a_path = value.startswith(("/", "./", "../", "~", os.sep))
    return starts_like_a_path or Path(value).suffix.lower() in VIDEO_SUFFIXES or os.path.isfile(value)


VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".webm", ".mkv", ".m4v"})


def edit_video(video: Any, prompt: str, *, model: str | None = None) -> Call[models.Video]:
    """``POST /videos/edits``: ``video`` is an id (``str`` or ``{"id": ...}``) or a file to upload."""
    fields = _body(prompt=check_prompt(prompt), model=_check_choice(model, "model"))
    return _source_video_call("videos/edits", video, fields)


def extend_video(
    video: Any, prompt: str, seconds: str | int, *, model: str | None = None
) -> Call[models.Video]:
    """``POST /videos/extensions``: ``seconds`` is the new segment's length; the new job's
    ``seconds`` is the stitched total."""
    if seconds is None:
        raise InvalidInputError("seconds: required for an extension", param="seconds")
    fields = _body(
        prompt=check_prompt(prompt), seconds=_seconds(seconds), model=_check_choice(model, "model")
    )
    return _source_video_call("videos/extensions", video, fields)


def create_character(video: Any, name: str, *, model: str | None = None) -> Call[models.VideoCharacter]:
    """``POST /videos/characters``; takes the connection's default model (gateways route by it)."""
    if not isinstance(name, str) or not name.strip() or len(name) > 80:
        raise InvalidInputError("name: must be 1 to 80 characters", param="name")
    upload = ("video", UploadSource(video, argument="video"))
    form = _body(name=name, model=_check_choice(model, "model"))
    return Call("POST", "videos/characters", parse_character, form=form, upload=upload, takes_model=True)


def get_character(character_id: str) -> Call[models.VideoCharacter]:
    path = "videos/characters/" + quote(check_video_id(character_id, "character_id"), safe="")
    return Call("GET", path, parse_character)


def build_request(
    client: httpx.Client | httpx.AsyncClient,
    call: Call[Any],
    handle: IO[bytes] | None,
    *,
    default_model: str | None,
    stream: bool,
) -> httpx.Request:
    """The one way a ``Call`` becomes an httpx request, for the sync and async senders alike.

    ``handle`` is the upload, opened anew for each attempt. A streamed download asks for the
    identity encoding, so that Content-Length counts the bytes written to disk.
    """
    call = call.with_default_model(default_model)
    kwargs: dict[str, Any] = {}
    if call.params:
        kwargs["params"] = call.params
    if call.json is not None:
        kwargs["json"] = call.json
    if call.upload is not None:
        name, source = call.upload
        kwargs["files"] = {name: (source.filename, handle, source.content_type)}
        kwargs["data"] = call.form or {}
    elif call.form is not None:
        kwargs["data"] = call.form
    headers = {}
    if stream:
        headers["Accept-Encoding"] = "identity"
    if call.idempotency_key is not None:
        headers["Idempotency-Key"] = call.idempotency_key
    if headers:
        kwargs["headers"] = headers
    return client.build_request(call.method, call.path, **kwargs)
