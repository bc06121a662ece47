"""Replies: successful bodies parsed into models, failures mapped to one exception each.

Every error comes from the reply (status, body, headers), never from the request: no credential
can end up in an exception's text.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
from pydantic import BaseModel, ValidationError

from airflow_video_edit import models
from airflow_video_edit.errors import (
    APIStatusError,
    MalformedResponseError,
    TransportError,
    error_class_for_status,
)


def _short(text: str, limit: int = 500) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


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


def poll_after(response: httpx.Response) -> float | None:
    """The server's ``openai-poll-after-ms`` hint, in seconds (None when absent or unreadable)."""
    hint = response.headers.get("openai-poll-after-ms")
    try:
        return float(hint) / 1000 if hint else None
    except ValueError:
        return None


def parse_poll(response: httpx.Response) -> tuple[models.Video, float | None]:
    return parse_video(response), poll_after(response)


def parse_list_poll(response: httpx.Response) -> tuple[models.VideoList, float | None]:
    return parse_video_list(response), poll_after(response)


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
