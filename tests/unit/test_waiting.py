"""The one wait step and the blocking loop (the worker's wait), with a scripted status source."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from airflow_video_edit import calls, retries, waiting
from airflow_video_edit.errors import (
    AuthenticationError,
    NotFoundError,
    RateLimitError,
    ServerError,
    TransportError,
    VideoAPIError,
)
from airflow_video_edit.models import Video

from .conftest import SECRET, Server, error_json, video_json

LOG = logging.getLogger("test_waiting")


def video(status: str, progress: int = 0) -> Video:
    return Video(id="video_1", status=status, progress=progress)


def scripted(*answers: Video | VideoAPIError) -> Callable[[], tuple[Video, float | None]]:
    queue = list(answers)

    def poll() -> tuple[Video, float | None]:
        answer = queue.pop(0)
        if isinstance(answer, VideoAPIError):
            raise answer
        return answer, None

    return poll


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    sleeps: list[float] = []
    monkeypatch.setattr(waiting.time, "sleep", sleeps.append)
    return sleeps


def test_the_worker_rides_out_an_outage(slept: list[float], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="test_waiting")
    state = waiting.Wait("video_1", poll_interval=1.0, deadline=time.time() + 3600, log=LOG)
    poll = scripted(
        TransportError("ConnectError: refused", surely_not_sent=True),
        ServerError("bad gateway", status_code=502),
        RateLimitError("slow down", status_code=429, retry_after=30.0),
        video("completed", 100),
    )
    event = waiting.wait_blocking(state, poll, first=(video("in_progress", 40), None))
    assert event["event"] == "completed"
    # The interval, then backoff from the interval doubling per failure (jittered, half to full),
    # a Retry-After longer than the backoff wins.
    # Each less the time its check took: the pace is kept from the start of a check.
    assert slept[0] == pytest.approx(1.0, abs=0.05)
    assert 0.45 <= slept[1] <= 1.0
    assert 0.95 <= slept[2] <= 2.0
    assert slept[3] == pytest.approx(30.0, abs=0.05)
    lines = [r.getMessage() for r in caplog.records]
    assert sum("are failing" in line for line in lines) == 1
    assert sum("work again" in line for line in lines) == 1
    assert "(3 failed)" in next(line for line in lines if "work again" in line)


def test_retries_are_logged_one_by_one_outside_an_outage_only(
    slept: list[float], server: Server, make_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Status checks through the real client (1 retry each). Outside an outage each retry is a
    WARNING line; inside one (between its start and end lines) only DEBUG; loud again after."""
    caplog.set_level(logging.INFO, logger="test_waiting")
    caplog.set_level(logging.DEBUG, logger=retries.log.name)
    down = httpx.Response(503, json=error_json("overloaded", code="server_busy"))

    def up(status: str) -> httpx.Response:
        return httpx.Response(200, json=video_json("video_1", status, progress=50))

    server.reply(
        down, up("in_progress"),  # check 1: rides out one 503 within its own retries
        down, down,  # check 2: fails for good, the outage starts
        down, down,  # check 3: in the outage
        down, up("in_progress"),  # check 4: in the outage, works again
        down, up("completed"),  # check 5: after the outage
    )  # fmt: skip
    client = make_client(server, max_retries=1)
    state = waiting.Wait("video_1", poll_interval=1.0, deadline=time.time() + 3600, log=LOG)
    event = waiting.wait_blocking(state, lambda: client.request(calls.poll_video("video_1")))
    assert event["event"] == "completed"
    assert len(server.seen) == 10
    lines = [
        (r.levelname, r.getMessage())
        for r in caplog.records
        if r.levelno >= logging.WARNING or r.name == "test_waiting"
    ]
    retry_line = "GET /videos/video_1: attempt 1 of 2 failed: overloaded (status=503, code=server_busy); "
    expected = [  # (level, how the line starts)
        ("WARNING", retry_line),  # check 1
        ("INFO", "video job video_1: in_progress 50%"),
        ("WARNING", retry_line),  # check 2 (the outage is not known yet)
        ("WARNING", "status checks of video job video_1 are failing (overloaded (status=503"),
        ("INFO", "status checks of video job video_1 work again after "),
        ("WARNING", retry_line),  # check 5
        ("INFO", "video job video_1: completed"),
    ]
    assert [
        (level, line[: len(start)]) for (level, line), (_, start) in zip(lines, expected, strict=True)
    ] == expected
    assert lines[4][1].endswith("(2 failed)")
    quiet = [
        r.getMessage() for r in caplog.records if r.name == retries.log.name and r.levelno == logging.DEBUG
    ]
    assert len(quiet) == 2  # checks 3 and 4
    assert SECRET not in caplog.text


@pytest.mark.parametrize(
    "error", [AuthenticationError("bad key", status_code=401), NotFoundError("gone", status_code=404)]
)
def test_a_rejection_ends_the_wait_at_once(slept: list[float], error: VideoAPIError) -> None:
    state = waiting.Wait("video_1", poll_interval=1.0, deadline=time.time() + 3600, log=LOG)
    event = waiting.wait_blocking(state, scripted(error), first=(video("queued"), None))
    assert event["event"] == "error"
    assert event["http_status"] == error.status_code
    assert slept == [pytest.approx(1.0, abs=0.05)]


def test_backoff_is_capped_and_never_passes_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    state = waiting.Wait("video_1", poll_interval=10.0, deadline=time.time() + 3600, log=LOG)
    waits = [state.failed(ServerError("down", status_code=503))[1] for _ in range(12)]
    assert max(waits) <= waiting.OUTAGE_BACKOFF_CAP
    assert waits[-1] >= waiting.OUTAGE_BACKOFF_CAP / 2
    state.deadline = time.time() + 5
    event, sleep = state.failed(ServerError("down", status_code=503))
    assert event is None
    assert sleep <= 5
    state.deadline = time.time() - 1
    event, _ = state.failed(ServerError("still down", status_code=503))
    assert event is not None
    assert event["event"] == "timeout"
    assert "still down" in event["message"]


def test_progress_lines_per_status_and_tenth(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="test_waiting")
    state = waiting.Wait("video_1", poll_interval=1.0, deadline=None, log=LOG)
    for status, progress in [("queued", 0), ("in_progress", 11), ("in_progress", 15), ("in_progress", 21)]:
        assert state.step(video(status, progress), None) == (None, 1.0)
    assert [r.getMessage() for r in caplog.records] == [
        "video job video_1: queued",
        "video job video_1: in_progress 11%",
        "video job video_1: in_progress 21%",
    ]


def test_finished_video_of_each_event() -> None:
    done = waiting.job_event(video("completed", 100))
    assert done is not None
    assert waiting.finished_video(done).status == "completed"
    failed: dict[str, Any] = {
        "event": "failed",
        "video_id": "v",
        "code": "moderation_blocked",
        "message": "no",
    }
    with pytest.raises(waiting.VideoJobFailed, match="moderation_blocked"):
        waiting.finished_video(failed)
    with pytest.raises(waiting.VideoJobFailed, match="gave up"):
        waiting.finished_video(waiting.timeout_event("v", None))
