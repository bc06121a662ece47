"""Pydantic models of the OpenAI-compatible Videos API (``/videos*``).

The reference is the official OpenAPI text (``VideoResource``, ``VideoListResource``, ...). The
models are shared by the client (the Hook) and the bundled local server, so the two cannot drift.

Forward compatible on purpose: gateways (Azure AI Foundry, the LiteLLM proxy, ...) route to other
backends that add models, sizes, durations and statuses. Such values are kept as plain strings
instead of failing validation; the ``KNOWN_*`` tuples list what the spec itself names, and the
server validates against them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Values the spec enumerates. Clients accept others; the local server enforces these.
KNOWN_MODELS: tuple[str, ...] = (
    "sora-2",
    "sora-2-pro",
    "sora-2-2025-10-06",
    "sora-2-pro-2025-10-06",
    "sora-2-2025-12-08",
)
KNOWN_SIZES: tuple[str, ...] = ("720x1280", "1280x720", "1024x1792", "1792x1024")
KNOWN_SECONDS: tuple[str, ...] = ("4", "8", "12")
# The extension endpoint's description allows longer segments than the create enum.
KNOWN_EXTENSION_SECONDS: tuple[str, ...] = ("4", "8", "12", "16", "20")
VARIANTS: tuple[str, ...] = ("video", "thumbnail", "spritesheet")
Variant = Literal["video", "thumbnail", "spritesheet"]

DEFAULT_MODEL = "sora-2"
DEFAULT_SIZE = "720x1280"
DEFAULT_SECONDS = "4"
MAX_PROMPT_LENGTH = 32_000

# Status values of the spec. Anything else a backend invents is treated as "still running".
QUEUED = "queued"
IN_PROGRESS = "in_progress"
COMPLETED = "completed"
FAILED = "failed"
TERMINAL_STATUSES: frozenset[str] = frozenset({COMPLETED, FAILED})


class _Model(BaseModel):
    """Base for response models: unknown fields are kept, not rejected."""

    # defer_build: the schemas are built on first use, not on import (DAG parsing imports us).
    model_config = ConfigDict(extra="allow", populate_by_name=True, defer_build=True)


class VideoError(_Model):
    """Why a job failed (spec ``Error-2``)."""

    code: str = "unknown_error"
    message: str = ""

    @field_validator("code", "message", mode="before")
    @classmethod
    def _none_to_empty(cls, value: Any) -> Any:
        return "" if value is None else str(value)


class Video(_Model):
    """A video job (spec ``VideoResource``)."""

    id: str
    object: str = "video"
    model: str | None = None
    status: str
    progress: int = 0
    created_at: int | None = None
    completed_at: int | None = None
    expires_at: int | None = None
    prompt: str | None = None
    size: str | None = None
    seconds: str | None = None
    remixed_from_video_id: str | None = None
    error: VideoError | None = None

    @field_validator("progress", mode="before")
    @classmethod
    def _progress_as_int(cls, value: Any) -> Any:
        # Some backends report a float (12.5) or null while queued.
        if value is None:
            return 0
        if isinstance(value, float):
            return round(value)
        return value

    @field_validator("seconds", mode="before")
    @classmethod
    def _seconds_as_str(cls, value: Any) -> Any:
        # The spec says string ("8"); some backends send a number.
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float):
            return str(int(value)) if float(value).is_integer() else str(value)
        return value

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def succeeded(self) -> bool:
        return self.status == COMPLETED

    @property
    def failed(self) -> bool:
        return self.status == FAILED


class VideoList(_Model):
    """One page of ``GET /videos`` (spec ``VideoListResource``)."""

    object: str = "list"
    data: list[Video] = Field(default_factory=list)
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class DeletedVideo(_Model):
    """Reply of ``DELETE /videos/{id}`` (spec ``DeletedVideoResource``)."""

    id: str
    object: str = "video.deleted"
    deleted: bool = True


class VideoCharacter(_Model):
    """A character made from an uploaded video (spec ``VideoCharacterResource``)."""

    id: str | None = None
    name: str | None = None
    created_at: int | None = None


class ErrorDetail(_Model):
    """The inner object of OpenAI's error shape."""

    message: str = ""
    type: str | None = None
    param: str | None = None
    code: str | None = None

    @field_validator("code", "param", "type", mode="before")
    @classmethod
    def _as_str(cls, value: Any) -> Any:
        # Some backends send numeric codes (e.g. 429).
        return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


class ErrorBody(_Model):
    """OpenAI's error shape: ``{"error": {"message", "type", "param", "code"}}``."""

    error: ErrorDetail


class VideoReference(_Model):
    """Reference to a completed video in edit and extension requests (``{"id": ...}``)."""

    id: str
