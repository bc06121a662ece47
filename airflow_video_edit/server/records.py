"""What the local server stores of a job and of a character, and a job's life cycle.

A job's status is a pure function of its timestamps, computed on read: ``queued`` for the first
15 % of ``duration`` (the server's ``job_seconds`` when the job was created), then ``in_progress``
with rising progress, then ``completed`` (or ``failed`` when a failure was scripted). No task runs
per job, so thousands of jobs cost nothing, and a restarted server simply carries on.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from airflow_video_edit.models import (
    COMPLETED,
    FAILED,
    IN_PROGRESS,
    QUEUED,
    Video,
    VideoCharacter,
    VideoError,
)

from . import defaults

QUEUED_FRACTION = 0.15
"""Share of a job's ``duration`` it spends ``queued``."""

# Job kinds, as counted by the stats endpoint.
CREATE, REMIX, EDIT, EXTEND, IMPORT = "create", "remix", "edit", "extend", "import"


@dataclass
class Job:
    """Everything the store keeps about one video job (persisted as JSON)."""

    id: str
    kind: str
    model: str
    prompt: str
    size: str
    seconds: str
    created_at: float
    duration: float
    asset_ttl: float = defaults.ASSET_TTL
    remixed_from_video_id: str | None = None
    source_id: str | None = None
    """Edits and extensions of a stored video: its id."""
    source_file: str | None = None
    """Edits and extensions of an uploaded video, imported videos: file name in the job's directory."""
    extension_seconds: int | None = None
    fail_code: str | None = None
    fail_message: str | None = None
    reference_file: str | None = None
    reference: dict[str, Any] | None = None
    render_size: str | None = None
    """The frames' real dimensions when they differ from ``size`` (always one of the spec's sizes):
    an uploaded clip's, and those of jobs made from it. Never shown."""
    rendered: bool = False
    seq: int = 0

    def state(self, now: float) -> tuple[str, int]:
        """``(status, progress)`` at time ``now``."""
        elapsed = now - self.created_at
        duration = max(self.duration, 1e-6)
        if elapsed >= duration:
            return (FAILED, 0) if self.fail_code else (COMPLETED, 100)
        queued_for = QUEUED_FRACTION * duration
        if elapsed < queued_for:
            return QUEUED, 0
        return IN_PROGRESS, min(99, int(100 * (elapsed - queued_for) / (duration - queued_for)))

    @property
    def completed_at(self) -> float:
        return self.created_at + self.duration

    @property
    def expires_at(self) -> float:
        return self.completed_at + self.asset_ttl

    def view(self, now: float) -> Video:
        """The API view (``VideoResource``) of the job at time ``now``."""
        status, progress = self.state(now)
        done = status == COMPLETED
        return Video(
            id=self.id,
            model=self.model,
            status=status,
            progress=progress,
            created_at=int(self.created_at),
            completed_at=int(self.completed_at) if done else None,
            expires_at=int(self.expires_at) if done else None,
            prompt=self.prompt,
            size=self.size,
            seconds=self.seconds,
            remixed_from_video_id=self.remixed_from_video_id,
            error=(
                VideoError(code=self.fail_code or "", message=self.fail_message or "")
                if status == FAILED
                else None
            ),
        )


@dataclass
class Character:
    """A character made from an uploaded video."""

    id: str
    name: str
    created_at: int
    video_file: str

    def view(self) -> VideoCharacter:
        return VideoCharacter(id=self.id, name=self.name, created_at=self.created_at)


def new_id(prefix: str) -> str:
    """An id shaped like OpenAI's (``video_`` + 32 hex digits)."""
    return f"{prefix}_{secrets.token_hex(16)}"
