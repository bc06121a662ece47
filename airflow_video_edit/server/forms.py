"""Requests in, errors out, for the local server: request bodies (JSON or multipart, size-capped),
field validation against the spec's values, and OpenAI's error envelope
``{"error": {"message", "type", "param", "code"}}`` with the right status."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive

from airflow_video_edit.models import MAX_PROMPT_LENGTH, ErrorBody, ErrorDetail

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
        kind: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param = status, message, param
        self.code = code or _ERROR_CODES.get(status)
        self.kind = kind or _ERROR_TYPES.get(
            status, "server_error" if status >= 500 else "invalid_request_error"
        )
        self.headers = dict(headers or {})

    def body(self) -> bytes:
        detail = ErrorDetail(message=self.message, type=self.kind, param=self.param, code=self.code)
        return ErrorBody(error=detail).model_dump_json().encode()

    def response(self) -> Response:
        return Response(self.body(), self.status, self.headers, media_type="application/json")


def error_body(status: int, message: str) -> bytes:
    """JSON bytes of an error answer (used by the fault middleware)."""
    return APIError(status, message).body()


def json_response(model: BaseModel, headers: Mapping[str, str] | None = None) -> Response:
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
        try:
            form = await request.form(max_files=16, max_fields=256)
        except (HTTPException, MultiPartException) as exc:  # Starlette's bare text/plain 400
            detail = getattr(exc, "detail", None) or getattr(exc, "message", None) or str(exc)
            raise APIError(
                400, f"We could not parse the form body of your request: {detail}", code="invalid_body"
            ) from exc
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
    """The one validation helper for the spec's string fields: absent gives ``default`` (or a 400
    when ``required``); present, it must be a non-empty string (never ``null``, a number or
    ``""``), of ``allowed`` values and at most ``max_length`` long, else a 400 naming ``name``."""
    if name not in body.fields:
        if required:
            raise APIError(
                400, f"Missing required parameter: '{name}'.", param=name, code="missing_required_parameter"
            )
        return default
    value = body.fields[name]
    if not isinstance(value, str):
        got = "null" if value is None else type(value).__name__
        message = f"Invalid type for '{name}': expected a string, but got {got}."
        raise APIError(400, message, param=name, code="invalid_type")
    if value == "":
        message = f"Invalid '{name}': empty string. Expected a non-empty string."
        raise APIError(400, message, param=name, code="empty_string")
    if allowed is not None and value not in allowed:
        supported = ", ".join(f"'{item}'" for item in allowed)
        raise APIError(
            400,
            f"Invalid value: '{value}'. Supported values are: {supported}.",
            param=name,
            code="invalid_value",
        )
    if max_length is not None and len(value) > max_length:
        raise APIError(
            400,
            f"Invalid '{name}': string too long. Expected a string with maximum length {max_length}, "
            f"but got a string with length {len(value)} instead.",
            param=name,
            code="string_above_max_length",
        )
    return value


def prompt_field(body: Body) -> str:
    prompt = field_value(body, "prompt", required=True, max_length=MAX_PROMPT_LENGTH)
    assert prompt is not None
    if not prompt.strip():
        raise APIError(400, "Invalid 'prompt': empty string.", param="prompt", code="empty_string")
    return prompt


def image_reference(value: Any) -> dict[str, Any]:
    """A JSON/form ``input_reference``: an object with exactly one of image_url, file_id."""
    keys = {"image_url", "file_id"}
    if (
        not isinstance(value, dict)
        or len(keys & value.keys()) != 1
        or not all(isinstance(value[key], str) and value[key] for key in keys & value.keys())
    ):
        raise APIError(
            400,
            "Invalid 'input_reference': expected a file upload or an object with exactly one of "
            "'image_url' or 'file_id' (a non-empty string).",
            param="input_reference",
            code="invalid_value",
        )
    return value
