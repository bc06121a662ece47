"""Waiting for a job: the events that end a wait, and the one wait step both waits take.

A wait, in the triggerer (:class:`~airflow_video_edit.triggers.VideoJobTrigger`) or in a worker
(a non-deferrable operator), is the same loop: poll, :meth:`Wait.step`, sleep or stop. The step
decides alone: the event of a terminal job, a timeout at the wall-clock deadline, or how long to
sleep (the poll interval, lengthened by the server's ``openai-poll-after-ms`` hint, never past
the deadline); :meth:`Wait.failed` does the same after a failed check (an outage is ridden out
until the deadline, a rejection ends the wait); both write the log lines. :func:`wait_blocking`
and :func:`wait_async` are the two loops around it. Every event is a plain dict (trigger events
are serialized); :func:`finished_video` turns one back into the finished job or the failure.

Nothing here knows about Airflow or the wire: ``poll`` is any callable that returns
``(video, poll_after)`` or raises :class:`~airflow_video_edit.errors.VideoAPIError`.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Protocol

from airflow_video_edit.errors import (
    PermanentVideoJobFailure,
    VideoAPIError,
    VideoJobFailed,
    is_permanent_job_failure,
)
from airflow_video_edit.models import IN_PROGRESS, Video
from airflow_video_edit.retries import is_retryable, quiet_retries

# Between status checks during an outage: the poll interval doubled per failed check, at most this.
OUTAGE_BACKOFF_CAP = 60.0
_LOUD: AbstractContextManager[None] = nullcontext()  # reusable: no object per poll outside an outage

COMPLETED, FAILED, TIMEOUT, ERROR = "completed", "failed", "timeout", "error"
# A status check refused with one of these ends the wait in a failure no retry can change.
REFUSED_STATUSES = frozenset({400, 401, 403, 422})
Poll = tuple[Video, "float | None"]


class Log(Protocol):
    """Where progress lines go: a ``logging.Logger``, or an operator's or trigger's ``log``."""

    def info(self, event: Any, *args: Any, **kw: Any) -> Any: ...

    def warning(self, event: Any, *args: Any, **kw: Any) -> Any: ...


def job_event(video: Video) -> dict[str, Any] | None:
    """The event for a job in a terminal status, or None while it runs."""
    if not video.is_terminal:
        return None
    payload: dict[str, Any] = {
        "event": COMPLETED if video.succeeded else FAILED,
        "video_id": video.id,
        "video": video.model_dump(mode="json"),
    }
    if video.failed:
        payload["code"] = video.error.code if video.error else "unknown_error"
        payload["message"] = video.error.message if video.error else "the backend gave no reason"
    return payload


def timeout_event(video_id: str, last: Video | None) -> dict[str, Any]:
    status = f"{last.status}, {last.progress}%" if last else "unknown"
    return {
        "event": TIMEOUT,
        "video_id": video_id,
        "message": f"gave up waiting for video job {video_id} (last seen: {status}); "
        "the remote job may still be running",
    }


def error_event(video_id: str, exc: VideoAPIError) -> dict[str, Any]:
    """The error text comes from the reply, never from the request: no credential can be in it."""
    return {
        "event": ERROR,
        "video_id": video_id,
        "message": str(exc),
        "code": exc.code,
        "http_status": exc.status_code,
    }


def finished_video(event: dict[str, Any]) -> Video:
    """The completed job an event carries; any other event raises :class:`VideoJobFailed`."""
    kind = event.get("event")
    video_id = event.get("video_id", "?")
    if kind == COMPLETED:
        return Video.model_validate(event["video"])
    if kind == FAILED:
        code = event.get("code")
        message = f"video job {video_id} failed: {code}: {event.get('message')}"
        if is_permanent_job_failure(code):
            raise PermanentVideoJobFailure(f"{message} (a new try would fail the same way)", code=code)
        raise VideoJobFailed(message)
    if kind == ERROR and event.get("http_status") in REFUSED_STATUSES:
        # The key, its permissions or the request were refused: a new try is refused too.
        raise PermanentVideoJobFailure(
            f"video job {video_id}: {event.get('message')}", code=event.get("code")
        )
    raise VideoJobFailed(event.get("message") or f"video job {video_id}: unexpected event {event!r}")


def progress_line(video: Video) -> str:
    if video.status == IN_PROGRESS:
        return f"video job {video.id}: {IN_PROGRESS} {video.progress}%"
    return f"video job {video.id}: {video.status}"


class Wait:
    """The state of one wait and its one step.

    A status check that fails for good (its own retries spent) with a transient error (a
    connection error, a timeout, 5xx, 429: what the retry policy retries) starts an *outage*: the
    wait goes on, checking again with capped, jittered backoff, until the wall-clock deadline,
    the one knob of a wait. The log says once when an outage starts and once when it ends; in
    between, the status checks' own retries log no WARNING line each (:meth:`checking`).
    Any other error (401, 403, 404, a rejected request) ends the wait at once.

    :param video_id: the job waited for.
    :param poll_interval: seconds between polls; a longer ``openai-poll-after-ms`` hint wins.
    :param deadline: wall-clock time (epoch seconds) after which the wait ends in a timeout.
    :param log: where progress lines go: a new status, or progress entering a new tenth (a line
        per poll would flood a triggerer's log and cost CPU at scale).
    """

    def __init__(self, video_id: str, *, poll_interval: float, deadline: float | None, log: Log) -> None:
        self.video_id = video_id
        self.poll_interval = poll_interval
        self.deadline = deadline
        self.log = log
        self.last: Video | None = None
        self.outage_started: float | None = None
        self.outage_failures = 0

    def checking(self) -> AbstractContextManager[None]:
        """Around each status check: during an outage its retries are not logged one by one
        (the outage's start and end lines say it); otherwise each retry logs a WARNING line."""
        return _LOUD if self.outage_started is None else quiet_retries()

    def step(self, video: Video, poll_after: float | None) -> tuple[dict[str, Any] | None, float]:
        """After one poll: the event that ends the wait, or else how long to sleep before the next."""
        if self.outage_started is not None:
            self.log.info(
                "status checks of video job %s work again after %.0f s (%d failed)",
                self.video_id,
                time.time() - self.outage_started,
                self.outage_failures,
            )
            self.outage_started, self.outage_failures = None, 0
        if self.last is None or (video.status, video.progress // 10) != (
            self.last.status,
            self.last.progress // 10,
        ):
            self.log.info(progress_line(video))
        self.last = video
        event = job_event(video)
        if event is not None:
            return event, 0.0
        return self._sleep_or_timeout(max(self.poll_interval, poll_after or 0.0))

    def failed(self, exc: VideoAPIError) -> tuple[dict[str, Any] | None, float]:
        """After a poll that failed for good: an outage to ride out (sleep), or the error event."""
        if not is_retryable(exc, creates_job=False, retry_job_creation=False):
            return error_event(self.video_id, exc), 0.0
        self.outage_failures += 1
        if self.outage_started is None:
            self.outage_started = time.time()
            self.log.warning(
                "status checks of video job %s are failing (%s); checking again with backoff until "
                "the deadline",
                self.video_id,
                exc,
            )
        backoff = min(OUTAGE_BACKOFF_CAP, self.poll_interval * 2 ** (self.outage_failures - 1))
        sleep = max(random.uniform(backoff / 2, backoff), exc.retry_after or 0.0)
        event, sleep = self._sleep_or_timeout(sleep)
        if event is not None:
            failing = time.time() - self.outage_started
            event["message"] += f"; status checks had been failing for {failing:.0f} s: {exc}"
        return event, sleep

    def _sleep_or_timeout(self, sleep: float) -> tuple[dict[str, Any] | None, float]:
        """``sleep``, cut at the deadline; past it, the timeout event."""
        if self.deadline is not None:
            remaining = self.deadline - time.time()
            if remaining <= 0:
                return timeout_event(self.video_id, self.last), 0.0
            sleep = min(sleep, remaining)
        return None, sleep


def wait_blocking(state: Wait, poll: Callable[[], Poll], *, first: Poll | None = None) -> dict[str, Any]:
    """The blocking wait (a worker): poll and step until an event. ``first``: a poll already made.

    Both loops keep their pace from the start of each check: a status check that took a while
    (a slow reply, a shared round) shortens the sleep after it, so a job is checked once per
    interval, not once per interval plus the time its checks take."""
    result = first
    while True:
        started = time.monotonic()
        try:
            if result is None:
                with state.checking():
                    result = poll()
        except VideoAPIError as exc:
            event, sleep = state.failed(exc)
        else:
            event, sleep = state.step(*result)
        if event is not None:
            return event
        time.sleep(max(0.0, sleep - (time.monotonic() - started)))
        result = None


async def wait_async(state: Wait, poll: Callable[[], Awaitable[Poll]]) -> dict[str, Any]:
    """The async wait (the triggerer): the same loop, sleeping without blocking the event loop."""
    while True:
        started = time.monotonic()
        try:
            with state.checking():
                result = await poll()
        except VideoAPIError as exc:
            event, sleep = state.failed(exc)
        else:
            event, sleep = state.step(*result)
        if event is not None:
            return event
        await asyncio.sleep(max(0.0, sleep - (time.monotonic() - started)))
