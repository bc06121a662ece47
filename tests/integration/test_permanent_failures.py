"""Permanent failures spend no task retries; transient ones keep them; a gone job is not paid
again silently.

Each failure comes from a job operator run against the real local server (faults, or a prompt
marker that fails the job with a code), and the retry decision is Airflow's own: the task
runner's ``_handle_current_task_failed``, which evaluates the task's ``retry_policy`` the way a
worker does and answers FAILED or UP_FOR_RETRY for a task that has retries left.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import DAG, ExceptionRetryPolicy, RetryAction, RetryRule
from airflow.sdk.api.datamodels._generated import TaskInstanceState
from airflow.sdk.exceptions import TaskDeferred
from test_server_support import API_KEY, Store
from test_server_support import retry_decision as decision
from test_server_support import task_context as context

from airflow_video_edit.errors import (
    AuthenticationError,
    InvalidRequestError,
    PermanentVideoJobFailure,
    PermissionDeniedError,
    ServerError,
    VideoAPIError,
    VideoJobFailed,
    VideoJobGone,
)
from airflow_video_edit.operators import VideoCreateOperator, VideoEditOperator, VideoJobOperator
from airflow_video_edit.server import LocalVideosServer

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::DeprecationWarning")]
CONN_ID = "openai_videos_permanent"
SOURCE_CLIP = str(Path(__file__).resolve().parents[2] / "dags" / "data" / "source_clip.mp4")


@pytest.fixture
def server(local_server: LocalVideosServer, monkeypatch: pytest.MonkeyPatch) -> LocalVideosServer:
    conn = {"conn_type": "openai_videos", "host": local_server.url, "password": API_KEY}
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
    monkeypatch.setattr("airflow_video_edit.operators.submit.SETTLE_SECONDS", 0.05)
    return local_server


def edit(**kwargs: Any) -> VideoEditOperator:
    kwargs.setdefault("video", SOURCE_CLIP)
    kwargs.setdefault("prompt", "Add a warm sunset grade")
    kwargs.setdefault("deferrable", False)
    return VideoEditOperator(task_id="edit", conn_id=CONN_ID, poll_interval=0.05, retries=3, **kwargs)


def failure(task: VideoJobOperator, store: Store | None = None) -> BaseException:
    with pytest.raises((VideoAPIError, VideoJobFailed)) as info:
        task.execute(context(store))
    return info.value


# --- refused requests: no retry -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "error"),
    [(401, AuthenticationError), (403, PermissionDeniedError), (400, InvalidRequestError)],
)
def test_a_refused_submit_fails_without_retries(
    server: LocalVideosServer, status: int, error: type[Exception]
) -> None:
    server.set_faults([f"POST /v1/videos/edits status={status};times=1"])
    task = edit()
    exc = failure(task)
    assert type(exc) is error
    assert decision(task, exc) == TaskInstanceState.FAILED
    assert server.stats()["jobs_created"] == 0


def test_a_refused_status_check_during_the_wait_fails_without_retries(server: LocalVideosServer) -> None:
    """The submit works, then the key is refused while the job runs (the trigger's or the worker's
    wait ends in an error event): a retry would be refused too."""
    server.store.job_seconds = 5.0
    server.set_faults(["GET /v1/videos/{id} status=401;skip=1"])
    task = edit()
    exc = failure(task)
    assert isinstance(exc, PermanentVideoJobFailure)
    assert "401" in str(exc)
    assert decision(task, exc) == TaskInstanceState.FAILED


# --- failed jobs: permanent or not by their code --------------------------------------------------
@pytest.mark.parametrize("code", ["moderation_blocked", "content_policy_violation", "invalid_prompt"])
def test_a_job_that_failed_for_a_reason_that_will_repeat_spends_no_retries(
    server: LocalVideosServer, code: str
) -> None:
    task = edit(prompt=f"Make it blue [fail-job={code}]")
    exc = failure(task)
    assert isinstance(exc, PermanentVideoJobFailure)
    assert exc.code == code
    assert code in str(exc)
    assert decision(task, exc) == TaskInstanceState.FAILED
    assert server.stats()["jobs_created"] == 1


def test_a_deferred_job_failed_by_moderation_spends_no_retries(server: LocalVideosServer) -> None:
    import asyncio

    task = edit(prompt="Make it blue [fail-job=moderation_blocked]", deferrable=True)
    ctx = context()
    with pytest.raises(TaskDeferred) as deferred:
        task.execute(ctx)

    async def events() -> list[dict[str, Any]]:
        return [event.payload async for event in deferred.value.trigger.run()]

    (event,) = asyncio.run(events())
    with pytest.raises(PermanentVideoJobFailure) as info:
        task.execute_complete(ctx, event)
    assert decision(task, info.value) == TaskInstanceState.FAILED


@pytest.mark.parametrize("code", ["internal_error", "server_error", "timeout"])
def test_a_job_that_failed_transiently_keeps_its_retries(server: LocalVideosServer, code: str) -> None:
    task = edit(prompt=f"Make it blue [fail-job={code}]")
    exc = failure(task)
    assert type(exc) is VideoJobFailed
    assert decision(task, exc) == TaskInstanceState.UP_FOR_RETRY


def test_a_backend_down_at_submit_keeps_the_retries(
    server: LocalVideosServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.set_faults(["POST /v1/videos/edits status=503;retry-after-ms=10", "GET /v1/videos status=503"])
    monkeypatch.setattr("airflow_video_edit.operators.submit.MAX_SUBMIT_ROUNDS", 1)
    task = edit()
    exc = failure(task)
    assert isinstance(exc, ServerError)
    assert decision(task, exc) == TaskInstanceState.UP_FOR_RETRY


# --- the user's policy wins -----------------------------------------------------------------------
def test_a_users_own_retry_policy_is_kept(server: LocalVideosServer) -> None:
    mine = ExceptionRetryPolicy(rules=[RetryRule(exception=AuthenticationError, action=RetryAction.RETRY)])
    task = edit(retry_policy=mine)
    assert task.retry_policy is mine
    server.set_faults(["POST /v1/videos/edits status=401;times=1"])
    assert decision(task, failure(task)) == TaskInstanceState.UP_FOR_RETRY


def test_a_retry_policy_in_default_args_is_kept() -> None:
    mine = ExceptionRetryPolicy(rules=[])
    with DAG("dag_with_policy", default_args={"retry_policy": mine}, schedule=None):
        task = VideoCreateOperator(task_id="create", prompt="A paper boat")
    assert task.retry_policy is mine
    plain = VideoCreateOperator(task_id="plain", prompt="A paper boat", retries=2)
    assert plain.retry_policy is not None
    assert decision(plain, AuthenticationError("bad key", status_code=401)) == TaskInstanceState.FAILED
    assert decision(task, AuthenticationError("bad key", status_code=401)) == TaskInstanceState.UP_FOR_RETRY


# --- a stored job that is gone: not paid again silently -------------------------------------------
def submitted_then_deleted(server: LocalVideosServer) -> tuple[Store, str]:
    """Try 1 submits and dies while the job runs; then the backend forgets the job (404)."""
    server.store.job_seconds = 30.0
    store = Store()
    first = edit()

    def killed(*args: Any) -> None:
        raise RuntimeError("the worker died while the job ran")

    first.poll_until_complete = killed  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        first.execute(context(store))
    gone = store["video_id"]
    server.store.delete(gone)
    server.store.job_seconds = 0.2
    return store, gone


def test_a_gone_job_fails_clearly_and_submits_nothing(server: LocalVideosServer) -> None:
    store, gone = submitted_then_deleted(server)
    posts = dict(server.stats()["requests"]["POST /v1/videos/edits"])
    task = edit()
    exc = failure(task, store)
    assert isinstance(exc, VideoJobGone)
    message = str(exc)
    assert gone in message
    assert "resubmit_if_gone=True" in message
    assert "paid for again" in message
    assert decision(task, exc) == TaskInstanceState.FAILED
    assert server.stats()["jobs_created"] == 1
    assert server.stats()["requests"]["POST /v1/videos/edits"] == posts  # no new POST
    assert store["video_id"] == gone  # kept: allowing it later and clearing submits anew


def test_a_gone_job_is_resubmitted_where_allowed_with_a_warning(
    server: LocalVideosServer, capsys: pytest.CaptureFixture[str]
) -> None:
    store, gone = submitted_then_deleted(server)
    capsys.readouterr()
    result = edit(resubmit_if_gone=True).execute(context(store))
    assert result["status"] == "completed"
    assert result["id"] != gone
    assert server.stats()["jobs_created"] == 2
    lines = capsys.readouterr().out.splitlines()  # the task log (structlog, to stdout here)
    assert any("warning" in line and gone in line and "NEW paid" in line for line in lines), lines
