"""The HTTP layer: request building, error mapping and the retry policy, written once.

Data flows top-down through this module:

1. ``ClientSettings``: everything a connection says (base URL, auth style, timeouts, retries, ...).
2. ``Call`` builders (``create_video``, ``retrieve_video``, ...): validate the input and describe
   the request, *before* anything is sent. One builder per API operation, shared by sync and async.
3. ``error_from_response`` / ``error_from_transport``: every failure becomes one exception of
   :mod:`airflow_video_edit.errors`.
4. ``retry_policy``: one tenacity policy (what is retried, how long to wait, when to stop).
5. ``VideosClient`` (``httpx.Client``) and ``AsyncVideosClient`` (``httpx.AsyncClient``): thin
   senders that apply 1-4. Only the I/O loops differ between the two.

Nothing here knows about Airflow: the Hook turns a Connection into ``ClientSettings``.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import json
import os
import ssl
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, Generic, Literal, TypeVar
from urllib.parse import quote

import httpx
import tenacity
from pydantic import BaseModel, ValidationError

from airflow_video_edit import models
from airflow_video_edit.errors import (
    APIStatusError,
    ConflictError,
    InvalidInputError,
    MalformedResponseError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    TransportError,
    VideoAPIError,
    error_class_for_status,
)

T = TypeVar("T")
AuthStyle = Literal["bearer", "api-key"]
CHUNK_SIZE = 1024 * 1024
USER_AGENT = "airflow-video-edit"


# --------------------------------------------------------------------------------------------
# 1. Settings
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClientSettings:
    """How to reach one Videos API backend. Hashable, so equal settings can share one pool.

    ``api_key`` is excluded from ``repr`` (and so from any log line or traceback that prints it).
    """

    base_url: str = "https://api.openai.com/v1"
    api_key: str | None = field(default=None, repr=False)
    auth_style: AuthStyle = "bearer"
    organization: str | None = None
    project: str | None = None
    extra_headers: tuple[tuple[str, str], ...] = ()
    extra_query: tuple[tuple[str, str], ...] = ()
    default_model: str | None = None
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    max_retries: int = 4
    max_retry_seconds: float = 120.0
    # Cap on a server-requested Retry-After; longer waits are clipped to this.
    max_retry_after: float = 60.0
    retry_job_creation: bool = False
    verify: bool | str = True
    proxy: str | None = None
    # One pool per settings per process: at most this many connections and requests in flight.
    max_connections: int = 64
    # Idle connections are kept at least as long as a typical poll interval (httpx default: 5 s).
    keepalive_expiry: float = 120.0

    def headers(self) -> dict[str, str]:
        headers = {"User-Agent": USER_AGENT}
        if self.api_key:
            if self.auth_style == "api-key":
                headers["api-key"] = self.api_key
            else:
                headers["Authorization"] = f"Bearer {self.api_key}"
        if self.organization:
            headers["OpenAI-Organization"] = self.organization
        if self.project:
            headers["OpenAI-Project"] = self.project
        headers.update(dict(self.extra_headers))
        return headers

    def ssl_verify(self) -> bool | ssl.SSLContext:
        """``verify`` for httpx: a CA bundle path becomes an SSL context (httpx wants no paths)."""
        if isinstance(self.verify, str):
            return ssl.create_default_context(cafile=self.verify)
        return self.verify

    def httpx_kwargs(self) -> dict[str, Any]:
        """Keyword arguments shared by ``httpx.Client`` and ``httpx.AsyncClient``."""
        return {
            "base_url": self.base_url.rstrip("/") + "/",
            "headers": self.headers(),
            "params": dict(self.extra_query),
            "timeout": httpx.Timeout(
                self.read_timeout, connect=self.connect_timeout, pool=max(self.read_timeout, 60.0)
            ),
            "limits": httpx.Limits(
                max_connections=self.max_connections,
                max_keepalive_connections=self.max_connections,
                keepalive_expiry=self.keepalive_expiry,
            ),
            "verify": self.ssl_verify(),
            "proxy": self.proxy,
            "follow_redirects": True,
        }


# --------------------------------------------------------------------------------------------
# 2. Requests: validation and building, one builder per operation
# --------------------------------------------------------------------------------------------
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
        import io

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

    def with_default_model(self, model: str | None) -> Call[T]:
        if not self.takes_model or not model:
            return self
        if self.json is not None and "model" not in self.json:
            return replace(self, json={**self.json, "model": model})
        if self.form is not None and "model" not in self.form:
            return replace(self, form={**self.form, "model": model})
        return self


def _model_parser(model: type[BaseModel]) -> Callable[[httpx.Response], Any]:
    def parse(response: httpx.Response) -> Any:
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            raise MalformedResponseError(
                f"unexpected reply to {response.request.method} {response.request.url.path}: "
                f"{exc.error_count()} validation error(s): {_short(str(exc))}",
                status_code=response.status_code,
                request_id=response.headers.get("x-request-id"),
            ) from None

    return parse


parse_video: Callable[[httpx.Response], models.Video] = _model_parser(models.Video)
parse_video_list: Callable[[httpx.Response], models.VideoList] = _model_parser(models.VideoList)
parse_deleted: Callable[[httpx.Response], models.DeletedVideo] = _model_parser(models.DeletedVideo)
parse_character: Callable[[httpx.Response], models.VideoCharacter] = _model_parser(models.VideoCharacter)


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
    """Ids are opaque (gateways rewrite them): no prefix or length is assumed, only sanity."""
    if isinstance(video_id, Mapping):
        video_id = video_id.get("id")
    if not isinstance(video_id, str) or not video_id:
        raise InvalidInputError(f"{argument}: must be a non-empty string id", param=argument)
    bad = [c for c in video_id if c.isspace() or c in "/?#" or not c.isprintable()]
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


def _parse_poll(response: httpx.Response) -> tuple[models.Video, float | None]:
    hint = response.headers.get("openai-poll-after-ms")
    try:
        poll_after = float(hint) / 1000 if hint else None
    except ValueError:
        poll_after = None
    return parse_video(response), poll_after


def poll_video(video_id: str) -> Call[tuple[models.Video, float | None]]:
    """``GET /videos/{id}``, also returning the server's ``openai-poll-after-ms`` hint in seconds."""
    return Call("GET", _video_path(check_video_id(video_id)), _parse_poll)


def list_videos(
    *, after: str | None = None, limit: int | None = None, order: str | None = None
) -> Call[models.VideoList]:
    if limit is not None and not 0 <= limit <= 100:
        raise InvalidInputError("limit: must be between 0 and 100", param="limit")
    if order is not None and order not in ("asc", "desc"):
        raise InvalidInputError("order: must be 'asc' or 'desc'", param="order")
    params = _body(after=check_video_id(after, "after") if after else None, limit=limit, order=order)
    return Call("GET", "videos", parse_video_list, params=params)


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
    """A string names a file to upload when it has a path separator or a video file suffix.

    Ids never contain ``/`` (``check_video_id`` rejects it), so the two cannot be confused.
    """
    return isinstance(value, str) and (
        "/" in value or os.sep in value or Path(value).suffix.lower() in VIDEO_SUFFIXES
    )


VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".webm", ".mkv", ".m4v"})


def edit_video(video: Any, prompt: str, *, model: str | None = None) -> Call[models.Video]:
    """``POST /videos/edits``: ``video`` is an id (``str`` or ``{"id": ...}``) or a file to upload."""
    fields = _body(prompt=check_prompt(prompt), model=_check_choice(model, "model"))
    return _source_video_call("videos/edits", video, fields)


def extend_video(
    video: Any, prompt: str, seconds: str | int, *, model: str | None = None
) -> Call[models.Video]:
    """``POST /videos/extensions``: the new job's ``seconds`` is the stitched total."""
    if seconds is None:
        raise InvalidInputError("seconds: required for an extension", param="seconds")
    fields = _body(
        prompt=check_prompt(prompt), seconds=_seconds(seconds), model=_check_choice(model, "model")
    )
    return _source_video_call("videos/extensions", video, fields)


def create_character(video: Any, name: str) -> Call[models.VideoCharacter]:
    if not isinstance(name, str) or not name.strip() or len(name) > 80:
        raise InvalidInputError("name: must be 1 to 80 characters", param="name")
    upload = ("video", UploadSource(video, argument="video"))
    return Call("POST", "videos/characters", parse_character, form={"name": name}, upload=upload)


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
    if stream:
        kwargs["headers"] = {"Accept-Encoding": "identity"}
    return client.build_request(call.method, call.path, **kwargs)


# --------------------------------------------------------------------------------------------
# 3. Error mapping
# --------------------------------------------------------------------------------------------
def _short(text: str, limit: int = 500) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def parse_retry_after(headers: httpx.Headers, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms``, else ``retry-after`` (seconds or an HTTP date)."""
    milliseconds = headers.get("retry-after-ms")
    if milliseconds:
        try:
            return max(0.0, float(milliseconds) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def error_from_response(response: httpx.Response, *, secret: str | None = None) -> APIStatusError:
    """Map an error reply to an exception. The body must have been read.

    Understands OpenAI's ``{"error": {...}}``, ``{"error": "text"}``, problem+json
    (``title``/``detail``), ``{"message": ...}``, plain text and an empty body. ``secret`` (the API
    key) is masked in the message: some gateways echo the key they rejected.
    """
    status = response.status_code
    message, code, param, error_type = "", None, None, None
    try:
        body: Any = json.loads(response.content) if response.content else None
    except (ValueError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict):
        inner = body.get("error")
        if isinstance(inner, dict):
            detail = models.ErrorDetail.model_validate(inner)
            message, code, param, error_type = detail.message, detail.code, detail.param, detail.type
        elif isinstance(inner, str):
            message = inner
        else:
            message = str(body.get("detail") or body.get("message") or body.get("title") or "")
            code = str(body["code"]) if body.get("code") is not None else None
    elif response.content:
        message = response.content.decode("utf-8", "replace")
    reason = response.reason_phrase or "error"
    if secret:
        message = message.replace(secret, "***")
    text = _short(message) if message else f"HTTP {status} {reason}"
    return error_class_for_status(status)(
        text,
        status_code=status,
        code=code,
        param=param,
        error_type=error_type,
        request_id=response.headers.get("x-request-id"),
        retry_after=parse_retry_after(response.headers),
    )


def error_from_transport(exc: httpx.TransportError) -> TransportError:
    """Map an httpx transport failure. Its text never includes the URL or headers."""
    surely_not_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
    detail = _short(str(exc)) or type(exc).__name__
    return TransportError(f"{type(exc).__name__}: {detail}", surely_not_sent=surely_not_sent)


# --------------------------------------------------------------------------------------------
# 4. The retry policy
# --------------------------------------------------------------------------------------------
def is_retryable(exc: BaseException, *, creates_job: bool, retry_job_creation: bool) -> bool:
    """Whether a failed attempt may be tried again.

    Retried: 408, 409, 429, 5xx, transport errors and malformed replies. A POST that creates a
    paid job is a special case: when the reply was lost (reset, read timeout, 5xx), the backend
    may well have created the job, and sending the request again would create, and bill, a second
    one. So such a POST is retried only where it surely created nothing: the connection was never
    made (refused, connect timeout) or the server said 429 (rate limited before any work). A
    connection may opt in to retrying it anyway (``retry_job_creation``), e.g. behind a gateway
    known to deduplicate.
    """
    if isinstance(exc, RateLimitError):
        return True
    ambiguous_ok = not creates_job or retry_job_creation
    if isinstance(exc, TransportError):
        return exc.surely_not_sent or ambiguous_ok
    if isinstance(exc, RequestTimeoutError | ConflictError | ServerError | MalformedResponseError):
        return ambiguous_ok
    return False


class _Wait(tenacity.wait.wait_base):
    """Honour the server's Retry-After (capped); otherwise exponential backoff with full jitter."""

    def __init__(self, cap: float) -> None:
        self.cap = cap
        self.backoff = tenacity.wait_random_exponential(multiplier=0.5, max=8)

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, VideoAPIError) and exc.retry_after is not None:
            return min(exc.retry_after, self.cap)
        return float(self.backoff(retry_state))


@functools.lru_cache(maxsize=64)
def retry_policy(settings: ClientSettings, *, creates_job: bool) -> dict[str, Any]:
    """Keyword arguments for ``tenacity.Retrying`` and ``tenacity.AsyncRetrying`` alike.

    Its parts hold no state, so one policy per settings serves every request (cached: building
    it for every request showed up in the trigger benchmark's profile)."""
    return {
        "retry": tenacity.retry_if_exception(
            lambda exc: is_retryable(
                exc, creates_job=creates_job, retry_job_creation=settings.retry_job_creation
            )
        ),
        "wait": _Wait(settings.max_retry_after),
        "stop": tenacity.stop_after_attempt(settings.max_retries + 1)
        | tenacity.stop_before_delay(settings.max_retry_seconds),
        "reraise": True,
    }


# --------------------------------------------------------------------------------------------
# 5. Senders
# --------------------------------------------------------------------------------------------
class _AtomicFile:
    """A download target written under a temporary name, renamed into place when complete.

    Readers never see a partial file. There is no fsync: what it guards against (a power cut
    right after the rename) ends the task too, and the task's next try downloads again.
    """

    def __init__(self, destination: Any) -> None:
        self.destination = Path(destination) if isinstance(destination, str | os.PathLike) else destination
        self.temporary = self.destination.parent / f".{self.destination.name}.{uuid.uuid4().hex[:8]}.part"
        if isinstance(self.destination, Path):
            self.destination.parent.mkdir(parents=True, exist_ok=True)
        self.handle: IO[bytes] = self.temporary.open("wb")
        self.written = 0

    def write(self, chunk: bytes) -> None:
        self.handle.write(chunk)
        self.written += len(chunk)

    def commit(self, expected: int | None) -> int:
        self.handle.close()
        if expected is not None and self.written != expected:
            self.abort()
            raise TransportError(
                f"download truncated: got {self.written} of {expected} bytes", surely_not_sent=False
            )
        self.temporary.rename(self.destination)
        return self.written

    def abort(self) -> None:
        self.handle.close()
        with suppress(FileNotFoundError):
            self.temporary.unlink()


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
            sleep=self._sleep, **retry_policy(self.settings, creates_job=call.creates_job)
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
                target = _AtomicFile(destination)
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


class _ReleasingStream(httpx.AsyncByteStream):
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


class _ShardedTransport(httpx.AsyncBaseTransport):
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
        response.stream = _ReleasingStream(response.stream, lambda: self._release(index))
        return response

    def _release(self, index: int) -> None:
        self._busy[index] -= 1

    async def aclose(self) -> None:
        for shard in self._shards:
            await shard.aclose()


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
            transport=transport or _ShardedTransport(settings), **settings.httpx_kwargs()
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
            sleep=self._sleep, **retry_policy(self.settings, creates_job=call.creates_job)
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
                        target = await asyncio.to_thread(_AtomicFile, destination)
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
