"""Spend safety: a submit whose reply is lost, late, broken or refused never pays for a second
job, against the real local server (its job counter is the measure), with task retries played
as Airflow plays them: the next try runs with the same task state store.

The submit row of the fault matrix, and the reconciliation cases: one match (adopted), none
(sent again), two candidates or a backend without list (``unconfirmed_submit`` decides), a
changed request after a clear (submitted, not resumed), and a backend that honours keys.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_server_support import API_KEY, Store
from test_server_support import task_context as context

from airflow_video_edit.errors import VideoAPIError
from airflow_video_edit.operators import VideoCreateOperator, VideoEditOperator
from airflow_video_edit.operators.submit import INTENT_KEY, UnconfirmedSubmitError
from airflow_video_edit.server import LocalVideosServer

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::DeprecationWarning")]
CONN_ID = "openai_videos_spend"
SOURCE_CLIP = str(Path(__file__).resolve().parents[2] / "dags" / "data" / "source_clip.mp4")
TASK_TRIES = 3


def connect(monkeypatch: pytest.MonkeyPatch, server: LocalVideosServer, **extra: Any) -> None:
    conn = {"conn_type": "openai_videos", "host": server.url, "password": API_KEY, "extra": extra}
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))


@pytest.fixture
def server(local_server: LocalVideosServer, monkeypatch: pytest.MonkeyPatch) -> LocalVideosServer:
    connect(monkeypatch, local_server, read_timeout=1.0)
    monkeypatch.setattr("airflow_video_edit.operators.submit.SETTLE_SECONDS", 0.05)
    return local_server


def edit(**kwargs: Any) -> VideoEditOperator:
    kwargs.setdefault("video", SOURCE_CLIP)
    kwargs.setdefault("prompt", "Add a warm sunset grade")
    return VideoEditOperator(task_id="edit", conn_id=CONN_ID, poll_interval=0.05, deferrable=False, **kwargs)


def run_with_retries(make: Any, store: Store, tries: int = TASK_TRIES, **ctx: Any) -> tuple[Any, int]:
    """Like Airflow: run the task; a failed try is retried with the same state store."""
    for attempt in range(1, tries + 1):
        try:
            return make().execute(context(store, **ctx)), attempt
        except VideoAPIError:
            if attempt == tries:
                raise
    raise AssertionError("unreachable")


# --- the submit row of the fault matrix ----------------------------------------------------------
@pytest.mark.parametrize(
    "fault",
    [
        "reset;times=1",  # the job was created, the reply lost
        "hold=2;times=1",  # the job was created, the reply came after the client's 1 s read timeout
        "malformed-json;times=1",  # the job was created, its id in a broken body
        "status=500;times=2",  # refused twice before any work
        "status=503;retry-after-ms=10;times=2",
    ],
)
def test_submit_faults_cost_one_job_and_no_run(server: LocalVideosServer, fault: str) -> None:
    server.set_faults([f"POST /v1/videos/edits {fault}"])
    store = Store()
    result, tries = run_with_retries(edit, store)
    assert result["status"] == "completed"
    assert tries == 1  # ridden out within the try
    assert server.stats()["jobs_created"] == 1
    assert store == {}  # a finished job leaves nothing for a later run


def test_a_worker_that_died_after_the_post_is_followed_by_a_try_that_adopts_the_job(
    server: LocalVideosServer,
) -> None:
    """Try 1's reply is lost and it dies before it can look (here: every list fails); try 2
    finds the intent without an id, lists, adopts the one match: still one job."""
    server.set_faults(["POST /v1/videos/edits reset;times=1", "GET /v1/videos status=500;times=5"])
    store = Store()
    with pytest.raises(VideoAPIError):
        edit().execute(context(store))
    assert server.stats()["jobs_created"] == 1
    assert store[INTENT_KEY]["video_id"] is None  # the intent, written before the POST
    result = edit().execute(context(store))
    assert result["status"] == "completed"
    assert server.stats()["jobs_created"] == 1
    assert sum(server.stats()["requests"]["POST /v1/videos/edits"].values()) == 1


def test_two_candidates_fail_safe_and_name_them(
    server: LocalVideosServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another task sent the same prompt (and an edit's source is not in a Video): which job is
    ours cannot be told, so nothing is paid again unless the user says so."""
    from airflow_video_edit.hooks import OpenAIVideosHook

    with OpenAIVideosHook(CONN_ID) as hook:
        other = hook.edit_video(SOURCE_CLIP, "Add a warm sunset grade")
    server.set_faults(["POST /v1/videos/edits reset;times=1"])
    store = Store()
    with pytest.raises(UnconfirmedSubmitError, match="several jobs match") as info:
        edit().execute(context(store))
    assert other.id in str(info.value)
    assert "unconfirmed_submit='resubmit'" in str(info.value)
    assert server.stats()["jobs_created"] == 2  # the other task's and ours: none paid twice
    # The user chose to pay again: the request goes out once more with the same Idempotency-Key,
    # which this server honours (the connection did not say so): it answers with our lost job.
    result = edit(unconfirmed_submit="resubmit").execute(context(store))
    assert result["status"] == "completed"
    assert result["id"] != other.id
    assert server.stats()["jobs_created"] == 2


def test_a_mapped_edit_never_adopts_a_lookalike(server: LocalVideosServer) -> None:
    server.set_faults(["POST /v1/videos/edits reset;times=1"])
    with pytest.raises(UnconfirmedSubmitError, match="sibling mapped task"):
        edit().execute(context(Store(), map_index=3))
    assert server.stats()["jobs_created"] == 1


def test_a_create_with_a_distinct_request_is_adopted(server: LocalVideosServer) -> None:
    server.set_faults(["POST /v1/videos reset;times=1"])
    make = lambda: VideoCreateOperator(  # noqa: E731
        task_id="create",
        prompt="A paper boat",
        size="1280x720",
        seconds=8,
        conn_id=CONN_ID,
        poll_interval=0.05,
    )
    result, _ = run_with_retries(make, Store())
    assert (result["size"], result["seconds"]) == ("1280x720", "8")
    assert server.stats()["jobs_created"] == 1


def test_a_backend_that_honours_keys_replays_the_job(
    server: LocalVideosServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``idempotency_keys`` the hook retries the lost POST with the same key: the server
    answers with the job it created (no list needed)."""
    connect(monkeypatch, server, read_timeout=1.0, idempotency_keys=True)
    server.set_faults(["POST /v1/videos/edits reset;times=1", "GET /v1/videos status=500"])
    result = edit().execute(context(Store()))
    assert result["status"] == "completed"
    assert server.stats()["jobs_created"] == 1
    assert server.stats()["requests"]["POST /v1/videos/edits"] == {"0": 1, "200": 1}
    assert "GET /v1/videos" not in server.stats()["requests"]  # no reconciliation by list


def test_without_list_an_unconfirmed_submit_fails_safe() -> None:
    """A gateway: no list, so a lost reply cannot be checked; with keys it is safe again."""
    with LocalVideosServer(api_key=API_KEY, job_seconds=0.3, gateway_quirks=True) as gw:
        mp = pytest.MonkeyPatch()
        try:
            connect(mp, gw, default_model="sora-2")
            mp.setattr("airflow_video_edit.operators.submit.SETTLE_SECONDS", 0.0)
            gw.set_faults(["POST /v1/videos/edits reset;times=1"])
            with pytest.raises(UnconfirmedSubmitError, match="cannot list jobs"):
                edit().execute(context(Store()))
            assert gw.stats()["jobs_created"] == 1
            connect(mp, gw, default_model="sora-2", idempotency_keys=True)
            gw.set_faults(["POST /v1/videos/edits reset;times=1"])
            assert edit().execute(context(Store()))["status"] == "completed"
            assert gw.stats()["jobs_created"] == 2  # the first test's job, and one for this
        finally:
            mp.undo()


@pytest.mark.parametrize("status", ["status=401", "status=403", "status=400"])
def test_a_refused_submit_leaves_no_intent(server: LocalVideosServer, status: str) -> None:
    server.set_faults([f"POST /v1/videos/edits {status};times=1"])
    store = Store()
    with pytest.raises(VideoAPIError):
        edit().execute(context(store))
    assert store == {}
    assert server.stats()["jobs_created"] == 0


# --- resume after a clear -------------------------------------------------------------------------
def test_a_clear_after_the_prompt_changed_submits_the_new_request(server: LocalVideosServer) -> None:
    server.store.job_seconds = 30.0  # still running when the task is cleared
    store = Store()
    first = edit()

    def killed(*args: Any) -> None:
        raise RuntimeError("the worker died while the job ran")

    first.poll_until_complete = killed  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        first.execute(context(store))
    running = store["video_id"]
    server.store.job_seconds = 0.2
    resumed = edit()
    resumed.poll_until_complete = lambda video_id, ctx: video_id  # type: ignore[method-assign]
    resumed.get_job_result = lambda video_id, ctx: video_id  # type: ignore[method-assign]
    assert resumed.execute(context(store)) == running  # same request: resumed, not paid again
    assert server.stats()["jobs_created"] == 1
    changed = edit(prompt="A cold blue grade instead")
    result = changed.execute(context(store))
    assert result["id"] != running
    assert result["prompt"] == "A cold blue grade instead"
    assert server.stats()["jobs_created"] == 2


def test_metrics_count_submits_and_adoptions(
    server: LocalVideosServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    counted: list[tuple[str, dict[str, Any] | None]] = []
    monkeypatch.setattr(
        "airflow.sdk.observability.stats.incr", lambda stat, *a, tags=None, **kw: counted.append((stat, tags))
    )
    edit().execute(context(Store()))
    server.set_faults(["POST /v1/videos/edits reset;times=1"])
    edit(prompt="Another grade").execute(context(Store()))
    ours = [(stat, tags) for stat, tags in counted if stat.startswith("video_edit.")]
    assert ours == [
        ("video_edit.jobs_submitted", {"route": "videos/edits"}),
        ("video_edit.jobs_adopted", {"route": "videos/edits"}),
    ]
