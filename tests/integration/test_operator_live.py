"""VideoEditOperator end to end against the local server with faults: the paid-job guarantees.

Each test runs the operator's real code paths (the worker loop, or the deferral, the trigger in an
event loop and ``execute_complete``) against the ``local_server`` fixture, with run-wide fault
rules that the server applies to matching requests. Retry waits come from the server's
``retry-after-ms`` (10 ms), so nothing here waits on backoff.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import TaskDeferred
from test_server_support import API_KEY, Store
from test_server_support import task_context as context

from airflow_video_edit.operators import VideoEditOperator, VideoJobFailed
from airflow_video_edit.server import LocalVideosServer

pytestmark = pytest.mark.integration

CONN_ID = "openai_videos_default"
SOURCE_CLIP = str(Path(__file__).resolve().parents[2] / "dags" / "data" / "source_clip.mp4")


@pytest.fixture
def server(local_server: LocalVideosServer, monkeypatch: pytest.MonkeyPatch) -> LocalVideosServer:
    conn = {"conn_type": "openai_videos", "host": local_server.url, "password": API_KEY}
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
    monkeypatch.setattr("airflow_video_edit.operators.submit.SETTLE_SECONDS", 0.05)  # a local list is current
    return local_server


def operator(**kwargs: Any) -> VideoEditOperator:
    kwargs.setdefault("prompt", "Add a warm sunset grade")
    kwargs.setdefault("video", SOURCE_CLIP)
    return VideoEditOperator(task_id="edit", conn_id=CONN_ID, poll_interval=0.1, **kwargs)


def count(server: LocalVideosServer, route: str) -> dict[str, int]:
    return dict(server.stats()["requests"].get(route, {}))


def deferred_run(op: VideoEditOperator, ctx: dict[str, Any]) -> dict[str, Any]:
    """Defer, run the trigger to its one event, resume with ``execute_complete``."""
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(ctx)

    async def events() -> list[dict[str, Any]]:
        return [event.payload async for event in deferred.value.trigger.run()]

    (event,) = asyncio.run(events())
    return op.execute_complete(ctx, event)


def test_rate_limited_submit_is_retried_and_creates_one_job(server: LocalVideosServer) -> None:
    server.set_faults(["POST /v1/videos/edits status=429;retry-after-ms=10;times=2"])
    result = operator().execute(context(Store()))
    assert result["status"] == "completed"
    assert count(server, "POST /v1/videos/edits") == {"429": 2, "200": 1}
    assert server.stats()["jobs_created"] == 1


def test_an_ambiguous_submit_failure_is_checked_then_resent(server: LocalVideosServer) -> None:
    """A 503 on the job-creating POST may have created a job: the list says none, so it is sent
    again within the try (same Idempotency-Key); one job, no retry of the task spent."""
    server.set_faults(["POST /v1/videos/edits status=503;retry-after-ms=10;times=1"])
    result = operator().execute(context(Store()))
    assert result["status"] == "completed"
    assert count(server, "POST /v1/videos/edits") == {"503": 1, "200": 1}
    assert server.stats()["jobs_created"] == 1


def test_a_lost_submit_reply_is_found_not_paid_again(server: LocalVideosServer) -> None:
    """The server created the job but the reply was lost: the job is found and adopted."""
    server.set_faults(["POST /v1/videos/edits reset;times=1"])
    store = Store()
    result = operator().execute(context(store))
    assert result["status"] == "completed"
    assert server.stats()["jobs_created"] == 1
    assert sum(count(server, "POST /v1/videos/edits").values()) == 1


def test_transient_poll_failures_are_ridden_out_in_the_worker(server: LocalVideosServer) -> None:
    server.set_faults(["GET /v1/videos/{id} status=503;retry-after-ms=10;times=3"])
    result = operator().execute(context(Store()))
    assert result["status"] == "completed"
    assert count(server, "GET /v1/videos/{video_id}")["503"] == 3
    assert server.stats()["jobs_created"] == 1


def test_transient_poll_failures_are_ridden_out_by_the_trigger(server: LocalVideosServer) -> None:
    server.set_faults(["GET /v1/videos/{id} status=502;retry-after-ms=10;skip=1;times=3"])
    result = deferred_run(operator(deferrable=True), context(Store()))
    assert result["status"] == "completed"
    assert count(server, "GET /v1/videos/{video_id}")["502"] == 3
    assert server.stats()["jobs_created"] == 1


@pytest.mark.parametrize("deferrable", [False, True])
def test_an_outage_longer_than_the_retry_budget_is_ridden_out(
    server: LocalVideosServer, monkeypatch: pytest.MonkeyPatch, deferrable: bool
) -> None:
    """Resets past the retry budget of each status check (1 retry): the wait goes on, one job."""
    conn = {
        "conn_type": "openai_videos",
        "host": server.url,
        "password": API_KEY,
        "extra": {"max_retries": 1, "max_retry_seconds": 5},
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
    server.set_faults(["GET /v1/videos/{id} reset;skip=1;times=6"])
    op = operator(deferrable=deferrable)
    ctx = context(Store())
    result = deferred_run(op, ctx) if deferrable else op.execute(ctx)
    assert result["status"] == "completed"
    assert server.stats()["jobs_created"] == 1
    assert count(server, "GET /v1/videos/{video_id}")["0"] == 6  # six replies dropped


def test_a_failed_job_through_the_trigger_then_a_retry_submits_anew(server: LocalVideosServer) -> None:
    store = Store()
    op = operator(prompt="Make it blue [fail-job=content_policy_violation]", deferrable=True)
    with pytest.raises(VideoJobFailed, match="content_policy_violation") as excinfo:
        deferred_run(op, context(store))
    failed_id = store["video_id"]
    assert failed_id in str(excinfo.value)
    assert API_KEY not in str(excinfo.value)

    # The retry: the stored job failed, so the mixin submits a new one (here failing again).
    with pytest.raises(VideoJobFailed):
        deferred_run(operator(prompt=op.prompt, deferrable=True), context(store))
    assert store["video_id"] != failed_id
    assert server.stats()["jobs_created"] == 2


def test_a_deferred_edit_downloads_every_variant(server: LocalVideosServer, tmp_path: Path) -> None:
    ctx = context(Store())
    op = operator(deferrable=True, destination=f"{tmp_path}/", variants=["video", "thumbnail", "spritesheet"])
    result = deferred_run(op, ctx)
    names = sorted(p.name for p in tmp_path.iterdir())
    video_id = result["id"]
    assert names == sorted([f"{video_id}.mp4", f"{video_id}_spritesheet.webp", f"{video_id}_thumbnail.webp"])
    assert count(server, "GET /v1/videos/{video_id}/content") == {"200": 3}
    assert all(API_KEY not in json.dumps(value) for _, value in ctx["ti"].pushed)
