"""What on_kill does with a job, in the worker (``VideoJobOperator.on_kill``) and as one set of
steps (:mod:`airflow_video_edit.cancel`): a running job is left to finish (the Videos API cannot
cancel it) and said so, a finished one gets one short DELETE without retries, ``cancel_on_kill``
turns it off. The trigger's side (which task states delete) is in ``test_triggers.py``.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from airflow.sdk.exceptions import TaskDeferred

from airflow_video_edit import cancel
from airflow_video_edit.models import Video
from airflow_video_edit.operators import VideoEditOperator
from airflow_video_edit.server import LocalVideosServer
from airflow_video_edit.settings import ClientSettings
from airflow_video_edit.triggers import VideoJobTrigger

from .task_fakes import CONN_ID, KEY, SOURCE_CLIP, make_context
from .task_fakes import local_server as local_server  # the "server" fixture: a real local server

STILL_RUNNING = "is still running and will finish (and be billed): the Videos API cannot cancel a running job"


def operator(**kwargs: Any) -> VideoEditOperator:
    kwargs.setdefault("task_id", "edit")
    kwargs.setdefault("prompt", "Add a warm sunset grade")
    kwargs.setdefault("video", SOURCE_CLIP)
    kwargs.setdefault("poll_interval", 0.1)
    kwargs.setdefault("deferrable", False)
    return VideoEditOperator(conn_id=CONN_ID, **kwargs)


def add_job(server: LocalVideosServer, *, running: bool) -> str:
    job = server.store.create(
        "edit",
        model="sora-2",
        prompt="make it blue",
        size="720x1280",
        seconds="4",
        created_at=time.time() - (1.0 if running else 100.0),
        duration=1000.0 if running else 0.0,
    )
    return job.id


def requests(server: LocalVideosServer, route: str) -> dict[str, int]:
    return dict(server.stats()["requests"].get(route, {}))


class Lines:
    """A ``log`` that keeps (level, text)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def info(self, msg: Any, *args: Any, **kw: Any) -> None:
        self.lines.append(("info", msg % args if args else msg))

    def warning(self, msg: Any, *args: Any, **kw: Any) -> None:
        self.lines.append(("warning", msg % args if args else msg))


def killed(op: VideoEditOperator, monkeypatch: pytest.MonkeyPatch, video_id: str) -> Lines:
    """``op`` killed in the worker while it waited for ``video_id``: its log lines."""
    log = Lines()
    monkeypatch.setattr(op, "_video_id", video_id)
    for level in ("info", "warning"):
        monkeypatch.setattr(op.log, level, getattr(log, level))
    op.on_kill()
    return log


# --- the operator, killed in the worker ------------------------------------------------------
def test_a_killed_operator_leaves_a_running_job_and_says_it_will_be_billed(
    server: LocalVideosServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    counted: list[str] = []
    monkeypatch.setattr("airflow.sdk.observability.stats.incr", lambda stat, *a, **kw: counted.append(stat))
    video_id = add_job(server, running=True)
    log = killed(operator(), monkeypatch, video_id)
    assert requests(server, "DELETE /v1/videos/{video_id}") == {}
    assert server.store.get(video_id) is not None
    assert log.lines == [("warning", f"video job {video_id} {STILL_RUNNING}")]
    assert counted == ["video_edit.cancels_skipped"]


def test_a_killed_operator_deletes_a_finished_job_once(
    server: LocalVideosServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    video_id = add_job(server, running=False)
    log = killed(operator(), monkeypatch, video_id)
    assert requests(server, "DELETE /v1/videos/{video_id}") == {"200": 1}
    assert server.store.get(video_id) is None
    assert log.lines == [("info", f"deleted finished video job {video_id} (completed)")]


def test_a_killed_operator_sends_one_delete_without_retry_when_it_fails(
    server: LocalVideosServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.set_faults(["DELETE /v1/videos/{id} status=503"])
    video_id = add_job(server, running=False)
    began = time.monotonic()
    log = killed(operator(), monkeypatch, video_id)
    assert time.monotonic() - began < 1.0  # no backoff
    assert requests(server, "DELETE /v1/videos/{video_id}") == {"503": 1}
    assert log.lines[-1][0] == "warning"
    assert log.lines[-1][1].startswith(f"could not delete finished video job {video_id} (completed)")


def test_a_killed_operator_that_cannot_look_goes_by_the_status_its_wait_last_saw(
    server: LocalVideosServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.set_faults(["GET /v1/videos/{id} status=503"])
    video_id = add_job(server, running=False)
    op = operator()
    op._seen = Video.model_validate({"id": video_id, "status": "in_progress", "created_at": 1})
    log = killed(op, monkeypatch, video_id)
    assert requests(server, "GET /v1/videos/{video_id}") == {"503": 1}  # one look, no retry
    assert requests(server, "DELETE /v1/videos/{video_id}") == {}
    assert log.lines[-1] == ("warning", f"video job {video_id} {STILL_RUNNING}")


def test_cancel_on_kill_false_never_deletes_in_the_worker(
    server: LocalVideosServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    video_id = add_job(server, running=False)
    log = killed(operator(cancel_on_kill=False), monkeypatch, video_id)
    assert server.stats()["requests_total"] == 0
    assert server.store.get(video_id) is not None
    assert log.lines == [("info", f"not deleting video job {video_id}: cancel_on_kill is off")]


def test_a_kill_before_any_job_sends_nothing(
    server: LocalVideosServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    operator().on_kill()
    assert server.stats()["requests_total"] == 0


def test_a_killed_wait_in_the_worker_knows_the_last_status(server: LocalVideosServer) -> None:
    """The worker's wait keeps its state on the operator: on_kill's fallback."""
    op = operator()
    op.execute(make_context())
    assert op._wait is not None
    assert op._wait.last is not None
    assert op._wait.last.status == "completed"


@pytest.mark.parametrize("flag", [True, False])
def test_the_flag_reaches_the_trigger_and_its_kwargs_hold_no_credential(
    server: LocalVideosServer, flag: bool
) -> None:
    with pytest.raises(TaskDeferred) as deferred:
        operator(deferrable=True, cancel_on_kill=flag, timeout=600).execute(make_context())
    trigger = deferred.value.trigger
    assert isinstance(trigger, VideoJobTrigger)
    _, kwargs = trigger.serialize()
    assert kwargs["cancel_on_kill"] is flag
    assert set(kwargs) == {"video_id", "conn_id", "poll_interval", "deadline", "cancel_on_kill"}
    assert KEY not in repr(kwargs)


# --- the steps ---------------------------------------------------------------------------------
def test_quick_settings_make_one_short_attempt() -> None:
    settings = ClientSettings(api_key=KEY, max_retries=4, read_timeout=60.0, connect_timeout=10.0)
    quick = cancel.quick_settings(settings)
    assert (quick.max_retries, quick.read_timeout, quick.connect_timeout) == (
        0,
        cancel.CANCEL_TIMEOUT,
        cancel.CANCEL_TIMEOUT,
    )
    assert quick.api_key == KEY
    assert quick.base_url == settings.base_url
    assert KEY not in repr(quick)


def test_a_job_already_gone_is_not_deleted(
    server: LocalVideosServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = killed(operator(), monkeypatch, "video_" + "0" * 32)
    assert requests(server, "DELETE /v1/videos/{video_id}") == {}
    assert log.lines == [("info", f"video job video_{'0' * 32} is already gone: nothing to delete")]
