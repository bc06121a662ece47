"""VideoEditOperator against the bundled local server, with a fake task context (no Airflow deployment).

The context holds a fake ``ti`` recording ``xcom_push``, a dict-backed ``task_state_store`` (what
survives from one try to the next) and ``outlet_events``. A "new try" is a new operator instance
with a fresh ``ti`` (XCom is reset between tries) and the same task state store.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import Asset
from airflow.sdk.exceptions import TaskDeferred

from airflow_video_edit.errors import NotFoundError, VideoAPIError
from airflow_video_edit.operators import VideoEditOperator, VideoJobFailed
from airflow_video_edit.server import LocalVideosServer
from airflow_video_edit.triggers import VideoJobTrigger
from airflow_video_edit.waiting import error_event, job_event, timeout_event

from .task_fakes import (
    CONN_ID,
    KEY,
    SOURCE_CLIP,
    FakeStore,
    FakeTI,
    jobs_created,
    make_context,
    probe,
    run_trigger,
    set_conn,
)
from .task_fakes import local_server as local_server  # the "server" fixture: a real local server


def operator(**kwargs: Any) -> VideoEditOperator:
    kwargs.setdefault("task_id", "edit")
    kwargs.setdefault("prompt", "Add a warm sunset grade")
    kwargs.setdefault("video", SOURCE_CLIP)
    kwargs.setdefault("poll_interval", 0.1)
    kwargs.setdefault("deferrable", False)
    return VideoEditOperator(conn_id=CONN_ID, **kwargs)


# --- construction -----------------------------------------------------------------------------
def test_templated_fields() -> None:
    assert set(VideoEditOperator.template_fields) == {"prompt", "video", "model", "destination", "max_cost"}


@pytest.mark.parametrize(("setting", "expected"), [("true", "True"), ("false", "False")])
def test_default_deferrable_follows_the_config(tmp_path: Path, setting: str, expected: str) -> None:
    """The default is read when the module is imported, so each value needs a fresh interpreter."""
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": setting,
    }
    code = (
        "from airflow_video_edit.operators import VideoEditOperator as O\n"
        "print('DEFERRABLE', O(task_id='t', prompt='p', video='video_1').deferrable)\n"
        "print('EXPLICIT', O(task_id='u', prompt='p', video='video_1', deferrable=False).deferrable)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert f"DEFERRABLE {expected}" in out
    assert "EXPLICIT False" in out


# --- input validation -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"prompt": "   "}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"video": "/nonexistent/clip.mp4"}, "video"),
        ({"video": "video 123"}, "video"),
        ({"video": {"id": ""}}, "video"),
    ],
)
@pytest.mark.parametrize("retry", [False, True], ids=["first try", "retry with a stored job"])
def test_bad_input_fails_before_any_request(
    server: LocalVideosServer, kwargs: Any, argument: str, retry: bool
) -> None:
    store = FakeStore()
    if retry:
        store.set("video_id", "video_from_an_earlier_try")
    context = make_context(store)
    with pytest.raises(ValueError, match=rf"^{argument}:"):
        operator(**kwargs).execute(context)
    assert server.stats()["requests_total"] == 0
    assert context["ti"].pushed == []
    assert store.data == ({"video_id": "video_from_an_earlier_try"} if retry else {})


# --- deferrable -------------------------------------------------------------------------------
def test_deferrable_submits_once_pushes_xcom_stores_the_id_and_defers(server: LocalVideosServer) -> None:
    context = make_context()
    op = operator(deferrable=True, timeout=600, poll_interval=0.2)
    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    video_id = context["task_state_store"].get("video_id")
    assert video_id
    assert jobs_created(server) == 1
    assert server.stats()["requests"]["POST /v1/videos/edits"] == {"200": 1}
    ti: FakeTI = context["ti"]
    assert set(ti.values("video_id")) == {video_id}
    assert ti.values("job")
    assert ti.values("job")[-1]["id"] == video_id

    trigger = deferred.value.trigger
    assert isinstance(trigger, VideoJobTrigger)
    assert deferred.value.method_name == "execute_complete"
    _, kwargs = trigger.serialize()
    assert kwargs["video_id"] == video_id
    assert kwargs["conn_id"] == CONN_ID
    assert kwargs["poll_interval"] == 0.2
    assert before + 600 <= kwargs["deadline"] <= time.time() + 600
    assert deferred.value.timeout is None  # the deadline lives in the trigger (airflow#61467)

    # The triggerer runs the trigger; a resumed worker calls execute_complete with its event.
    event = run_trigger(VideoJobTrigger(**kwargs))
    assert event["event"] == "completed"
    resumed = make_context(context["task_state_store"])
    result = operator(deferrable=True).execute_complete(resumed, event)
    assert result["id"] == video_id
    assert result["status"] == "completed"
    assert context["task_state_store"].data == {}  # delivered: a cleared task submits anew
    assert jobs_created(server) == 1


def test_a_job_already_terminal_before_deferring_finishes_without_deferring(
    server: LocalVideosServer,
) -> None:
    server.store.job_seconds = 0.0  # the job is done by the time the operator looks
    context = make_context()
    result = operator(deferrable=True).execute(context)
    assert result["status"] == "completed"
    assert jobs_created(server) == 1
    assert context["task_state_store"].data == {}


# --- non-deferrable ---------------------------------------------------------------------------
def test_polls_in_the_worker_and_downloads_into_a_folder(server: LocalVideosServer, tmp_path: Path) -> None:
    asset = Asset(name="edited", uri="file:///tmp/edited")
    folder = tmp_path / "out"
    folder.mkdir()
    context = make_context()
    op = operator(destination=str(folder), variants=["video", "thumbnail"], asset=asset)
    result = op.execute(context)
    json.dumps(result)
    video_id = result["id"]
    assert result["status"] == "completed"
    assert server.stats()["requests"]["GET /v1/videos/{video_id}"]["200"] >= 2  # it polled
    video, thumb = folder / f"{video_id}.mp4", folder / f"{video_id}_thumbnail.webp"
    outputs = context["ti"].values("outputs")[-1]
    assert outputs == {"video": str(video), "thumbnail": str(thumb)}
    width, height, duration = probe(str(video))
    assert f"{width}x{height}" == result["size"]
    assert duration == pytest.approx(float(result["seconds"]), abs=0.25)
    assert thumb.stat().st_size > 0
    extra = context["outlet_events"][asset].extra
    assert extra["video_id"] == video_id
    assert extra["size"] == result["size"]
    assert extra["seconds"] == result["seconds"]
    assert extra["path"] == str(video)
    assert context["task_state_store"].data == {}


def test_downloads_to_a_file_destination(server: LocalVideosServer, tmp_path: Path) -> None:
    target = tmp_path / "final" / "clip.mp4"
    context = make_context()
    result = operator(destination=str(target), variants=["video", "thumbnail", "spritesheet"]).execute(
        context
    )
    assert context["ti"].values("outputs")[-1] == {
        "video": str(target),
        "thumbnail": str(tmp_path / "final" / "clip_thumbnail.webp"),
        "spritesheet": str(tmp_path / "final" / "clip_spritesheet.webp"),
    }
    width, height, _ = probe(str(target))
    assert f"{width}x{height}" == result["size"]
    assert sorted(p.name for p in target.parent.iterdir()) == [
        "clip.mp4",
        "clip_spritesheet.webp",
        "clip_thumbnail.webp",
    ]


def test_a_folder_path_ending_in_a_slash_is_created(server: LocalVideosServer, tmp_path: Path) -> None:
    context = make_context()
    result = operator(destination=f"{tmp_path}/new/").execute(context)
    assert (tmp_path / "new" / f"{result['id']}.mp4").is_file()


# --- execute_complete, every event ------------------------------------------------------------
def test_execute_complete_completed_returns_the_job(server: LocalVideosServer) -> None:
    video_id = server.store.create(
        "edit", model="sora-2", prompt="p", size="720x1280", seconds="4", duration=0.0
    ).id
    from airflow_video_edit.hooks import OpenAIVideosHook

    with OpenAIVideosHook(CONN_ID) as hook:
        event = job_event(hook.get_video(video_id))
    assert event is not None
    store = FakeStore()
    store.set("video_id", video_id)
    context = make_context(store)
    result = operator().execute_complete(context, event)
    assert result["id"] == video_id
    assert result["status"] == "completed"
    assert store.data == {}


def test_execute_complete_failed_raises_with_the_backend_reason(server: LocalVideosServer) -> None:
    event = {
        "event": "failed",
        "video_id": "video_abc",
        "video": {"id": "video_abc", "status": "failed"},
        "code": "moderation_blocked",
        "message": "Your request was blocked.",
    }
    store = FakeStore()
    store.set("video_id", "video_abc")
    with pytest.raises(VideoJobFailed, match="moderation_blocked: Your request was blocked") as excinfo:
        operator().execute_complete(make_context(store), event)
    assert "video_abc" in str(excinfo.value)
    assert store.data == {"video_id": "video_abc"}  # the mixin resubmits on the next try


def test_execute_complete_timeout_raises_and_says_the_job_may_still_run(server: LocalVideosServer) -> None:
    with pytest.raises(VideoJobFailed, match="may still be running") as excinfo:
        operator().execute_complete(make_context(), timeout_event("video_slow", None))
    assert "video_slow" in str(excinfo.value)


def test_execute_complete_error_raises(server: LocalVideosServer) -> None:
    event = error_event("video_gone", NotFoundError("No video found with id 'video_gone'", status_code=404))
    with pytest.raises(VideoJobFailed, match="No video found") as excinfo:
        operator().execute_complete(make_context(), event)
    assert "404" in str(excinfo.value)


def test_a_failed_job_fails_the_task_with_the_backend_code(server: LocalVideosServer) -> None:
    with pytest.raises(VideoJobFailed, match="content_policy") as excinfo:
        operator(prompt="Make it blue [fail-job=content_policy]").execute(make_context())
    assert "failed" in str(excinfo.value)


# --- no second paid job -----------------------------------------------------------------------
def test_a_try_that_died_after_deferring_is_resumed_not_resubmitted(server: LocalVideosServer) -> None:
    store = FakeStore()
    first = make_context(store)
    with pytest.raises(TaskDeferred):
        operator(deferrable=True).execute(first)  # ... and the try dies while deferred
    video_id = store.get("video_id")

    second = make_context(store)  # a new try: XCom reset, same task state store
    with pytest.raises(TaskDeferred) as deferred:
        operator(deferrable=True).execute(second)
    assert deferred.value.trigger.video_id == video_id
    assert second["ti"].values("video_id") == [video_id]
    assert jobs_created(server) == 1

    third = make_context(store)  # and a try that waits in the worker
    result = operator(deferrable=False).execute(third)
    assert result["id"] == video_id
    assert jobs_created(server) == 1
    assert third["ti"].values("video_id")[0] == video_id
    assert store.data == {}


def test_a_try_killed_between_submit_and_wait_is_resumed(
    server: LocalVideosServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FakeStore()
    op = operator()

    def killed(*args: Any, **kwargs: Any) -> Any:
        raise SystemExit("worker killed")

    monkeypatch.setattr(op, "poll_until_complete", killed)
    with pytest.raises(SystemExit):
        op.execute(make_context(store))
    video_id = store.get("video_id")
    assert video_id
    assert jobs_created(server) == 1

    retry = make_context(store)
    result = operator().execute(retry)
    assert result["id"] == video_id
    assert retry["ti"].values("video_id")[0] == video_id
    assert jobs_created(server) == 1


def test_a_retry_after_the_job_completed_returns_it_without_resubmitting(server: LocalVideosServer) -> None:
    store = FakeStore()
    with pytest.raises(TaskDeferred):
        operator(deferrable=True).execute(make_context(store))
    video_id = store.get("video_id")
    server.store.jobs[video_id].created_at -= 1e6  # finished while no try was running

    retry = make_context(store)
    result = operator(deferrable=True).execute(retry)
    assert result["id"] == video_id
    assert result["status"] == "completed"
    assert retry["ti"].values("video_id") == [video_id]
    assert jobs_created(server) == 1
    assert store.data == {}


def test_a_retry_after_a_timeout_reattaches_to_the_still_running_job(server: LocalVideosServer) -> None:
    server.store.job_seconds = 1000.0
    store = FakeStore()
    with pytest.raises(VideoJobFailed, match="may still be running"):
        operator(timeout=0.3).execute(make_context(store))
    video_id = store.get("video_id")
    with pytest.raises(TaskDeferred) as deferred:
        operator(deferrable=True).execute(make_context(store))
    assert deferred.value.trigger.video_id == video_id
    assert jobs_created(server) == 1


def test_after_delivery_a_cleared_task_submits_anew(server: LocalVideosServer) -> None:
    store = FakeStore()
    first = operator().execute(make_context(store))
    assert store.data == {}
    second = operator().execute(make_context(store))
    assert second["id"] != first["id"]
    assert jobs_created(server) == 2


def test_after_a_failed_job_the_retry_submits_a_new_one(server: LocalVideosServer) -> None:
    store = FakeStore()
    with pytest.raises(TaskDeferred):
        operator(deferrable=True).execute(make_context(store))
    failed_id = store.get("video_id")
    job = server.store.jobs[failed_id]
    job.fail_code, job.fail_message = "internal_error", "boom"
    job.created_at -= 1e6
    run = make_context(store)
    with pytest.raises(VideoJobFailed, match="internal_error: boom"):
        operator(deferrable=True).execute_complete(run, run_trigger(VideoJobTrigger(failed_id, CONN_ID, 0.1)))

    retry = make_context(store)
    result = operator().execute(retry)
    assert result["id"] != failed_id
    assert result["status"] == "completed"
    assert jobs_created(server) == 2


# --- the API key ------------------------------------------------------------------------------
def test_the_api_key_never_leaks(server: LocalVideosServer, tmp_path: Path) -> None:
    store = FakeStore()
    texts: list[str] = []

    op = operator(
        prompt="Grade {{ params.look }}", destination=f"{tmp_path}/{{{{ params.look }}}}/", deferrable=True
    )
    context = make_context(store)
    context["params"] = {"look": "teal"}
    op.render_template_fields(context)  # type: ignore[arg-type]
    assert op.prompt == "Grade teal"
    texts += [repr(getattr(op, field)) for field in op.template_fields]
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    texts.append(json.dumps(deferred.value.trigger.serialize()))
    event = run_trigger(deferred.value.trigger)
    texts.append(json.dumps(event))
    result = operator(destination=f"{tmp_path}/teal/").execute_complete(context, event)
    texts.append(json.dumps(result))
    texts += [json.dumps(value) for _, value in context["ti"].pushed]

    for failing in (
        lambda: operator(prompt="x [fail-job=bad_things]").execute(make_context()),
        lambda: operator().execute_complete(make_context(), timeout_event("video_x", None)),
    ):
        with pytest.raises(VideoJobFailed) as excinfo:
            failing()
        texts.append(str(excinfo.value))
    assert all(KEY not in text for text in texts)


def test_a_wrong_key_in_the_error_text_is_masked(
    server: LocalVideosServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "sk-unit-WRONG-operator-1122334455"
    set_conn(monkeypatch, server.url, password=wrong)
    context = make_context()
    with pytest.raises(VideoAPIError) as excinfo:
        operator().execute(context)
    assert excinfo.value.status_code == 401
    assert wrong not in str(excinfo.value)
    assert wrong not in repr(excinfo.value.args)
    assert jobs_created(server) == 0
    assert context["task_state_store"].data == {}


def test_a_stored_job_that_no_longer_exists_is_replaced_only_where_allowed(server: LocalVideosServer) -> None:
    """A 404 for the stored id (the job was deleted, or the backend forgot it) is no job to resume;
    a new one is a second payment: the try fails, naming the job, unless ``resubmit_if_gone``."""
    from airflow_video_edit.errors import VideoJobGone

    store = FakeStore()
    with pytest.raises(TaskDeferred):
        operator(deferrable=True).execute(make_context(store))
    gone = store.get("video_id")
    server.store.delete(gone)

    with pytest.raises(VideoJobGone, match="resubmit_if_gone=True") as excinfo:
        operator().execute(make_context(store))
    assert gone in str(excinfo.value)
    assert jobs_created(server) == 1

    result = operator(resubmit_if_gone=True).execute(make_context(store))
    assert result["id"] != gone
    assert result["status"] == "completed"
    assert jobs_created(server) == 2
    assert store.data == {}


def test_a_failed_download_is_retried_without_a_second_job(server: LocalVideosServer, tmp_path: Path) -> None:
    """The id leaves the store only once the result is delivered: a retry finds the job completed
    and downloads again, it does not pay for a new job."""
    server.set_faults(["GET /v1/videos/{id}/content status=404;times=1"])
    store = FakeStore()
    with pytest.raises(NotFoundError):
        operator(destination=f"{tmp_path}/").execute(make_context(store))
    video_id = store.get("video_id")
    assert video_id

    retry = make_context(store)
    result = operator(destination=f"{tmp_path}/").execute(retry)
    assert result["id"] == video_id
    assert (tmp_path / f"{video_id}.mp4").is_file()
    assert jobs_created(server) == 1
    assert store.data == {}
