"""VideoJobTrigger against the bundled local server: serialization, every event, deadlines, on_kill.

Jobs are put straight into the server's store with a chosen start time and duration, so a test
decides whether a job is queued, in progress, completed or failed when the trigger looks. The
trigger's ``asyncio.sleep`` is replaced by a recorder where a test needs the requested waits;
the recorder can move the job's clock forward, so no test waits for wall time to pass.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_video_edit import clients, retries
from airflow_video_edit.errors import NotFoundError
from airflow_video_edit.server import LocalVideosServer
from airflow_video_edit.settings import ClientSettings
from airflow_video_edit.triggers import VideoJobTrigger

KEY = "sk-unit-TRIGGER-7c1e5a9b3d2f"
CONN_ID = "openai_videos_default"
_real_sleep = asyncio.sleep


@pytest.fixture
def server() -> Iterator[LocalVideosServer]:
    with LocalVideosServer(api_key=KEY, job_seconds=1.0, poll_after_ms=0, access_log=False) as srv:
        yield srv


def set_conn(monkeypatch: pytest.MonkeyPatch, url: str, password: str = KEY, **extra: Any) -> None:
    conn = {"conn_type": "openai_videos", "host": url, "password": password, "extra": extra}
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))


@pytest.fixture
def conn(server: LocalVideosServer, monkeypatch: pytest.MonkeyPatch) -> LocalVideosServer:
    set_conn(monkeypatch, server.url)
    return server


def add_job(
    server: LocalVideosServer, *, started_ago: float = 0.0, duration: float = 1000.0, **extra: Any
) -> str:
    """A job in the server's store: started ``started_ago`` s ago, done after ``duration`` s."""
    job = server.store.create(
        "edit",
        model="sora-2",
        prompt="make it blue",
        size="720x1280",
        seconds="4",
        created_at=time.time() - started_ago,
        duration=duration,
        **extra,
    )
    return job.id


def finish(server: LocalVideosServer, video_id: str) -> None:
    """Move the job's clock past its end: the next GET sees it terminal."""
    server.store.jobs[video_id].created_at -= 1e6


def gets(server: LocalVideosServer, status: int = 200) -> int:
    return int(server.stats()["requests"].get("GET /v1/videos/{video_id}", {}).get(str(status), 0))


class Sleeps:
    """Stands in for ``asyncio.sleep`` in the trigger: records waits, optionally acts, returns.

    ``asyncio`` is one module: the patch reaches every caller (the server thread's loop too), so
    only the trigger's own waits are recorded; any other caller really sleeps.
    """

    def __init__(self, on_sleep: Callable[[int], None] | None = None, really: bool = False) -> None:
        self.waits: list[float] = []
        self.on_sleep = on_sleep
        self.really = really

    async def __call__(self, seconds: float, result: Any = None) -> Any:
        if sys._getframe(1).f_globals.get("__name__") != "airflow_video_edit.waiting":
            return await _real_sleep(seconds, result)
        self.waits.append(seconds)
        if self.on_sleep is not None:
            self.on_sleep(len(self.waits))
        if self.really:
            await _real_sleep(seconds)
        else:
            await _real_sleep(0)


def patch_sleep(monkeypatch: pytest.MonkeyPatch, sleeps: Sleeps) -> Sleeps:
    monkeypatch.setattr("airflow_video_edit.waiting.asyncio.sleep", sleeps)
    return sleeps


async def events_of(trigger: VideoJobTrigger) -> list[dict[str, Any]]:
    return [event.payload async for event in trigger.run()]


# --- serialization ---------------------------------------------------------------------------
async def test_serialize_round_trip_holds_ids_and_deadline_only(conn: LocalVideosServer) -> None:
    video_id = add_job(conn, duration=0.0)
    trigger = VideoJobTrigger(video_id=video_id, conn_id=CONN_ID, poll_interval=3, deadline=1.9e9)
    classpath, kwargs = trigger.serialize()
    assert set(kwargs) == {"video_id", "conn_id", "poll_interval", "deadline", "cancel_on_kill"}
    assert kwargs == {
        "video_id": video_id,
        "conn_id": CONN_ID,
        "poll_interval": 3.0,
        "deadline": 1.9e9,
        "cancel_on_kill": True,
    }

    module_name, _, class_name = classpath.rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    assert cls is VideoJobTrigger
    rebuilt = cls(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)

    events = await events_of(rebuilt)
    assert [e["event"] for e in events] == ["completed"]
    for text in (repr(trigger), repr(rebuilt), json.dumps(kwargs), json.dumps(events)):
        assert KEY not in text


# --- every event kind ------------------------------------------------------------------------
async def test_completed_event_carries_the_job(conn: LocalVideosServer) -> None:
    video_id = add_job(conn, started_ago=500.0, duration=100.0)
    events = await events_of(VideoJobTrigger(video_id, CONN_ID, poll_interval=0.01))
    assert len(events) == 1
    event = events[0]
    assert event["event"] == "completed"
    assert event["video_id"] == video_id
    assert event["video"]["id"] == video_id
    assert event["video"]["status"] == "completed"
    assert event["video"]["progress"] == 100
    assert event["video"]["size"] == "720x1280"
    assert event["video"]["seconds"] == "4"


async def test_failed_event_has_code_and_message_of_the_job_error(
    conn: LocalVideosServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    video_id = add_job(
        conn,
        started_ago=5.0,
        duration=10.0,
        fail_code="moderation_blocked",
        fail_message="Your request was blocked by our moderation system.",
    )
    sleeps = patch_sleep(monkeypatch, Sleeps(on_sleep=lambda n: finish(conn, video_id)))
    events = await events_of(VideoJobTrigger(video_id, CONN_ID, poll_interval=0.5))
    assert len(events) == 1
    assert events[0]["event"] == "failed"
    assert events[0]["code"] == "moderation_blocked"
    assert events[0]["message"] == "Your request was blocked by our moderation system."
    assert events[0]["video"]["status"] == "failed"
    # The interval, less the time the check took (the pace is kept from the start of a check).
    assert sleeps.waits == [pytest.approx(0.5, abs=0.1)]  # polled while running, then: failed


async def test_timeout_event_while_in_progress(conn: LocalVideosServer) -> None:
    video_id = add_job(conn, started_ago=500.0, duration=1000.0)
    started = time.monotonic()
    trigger = VideoJobTrigger(video_id, CONN_ID, poll_interval=0.1, deadline=time.time() + 0.35)
    events = await events_of(trigger)
    assert time.monotonic() - started < 5
    assert len(events) == 1
    event = events[0]
    assert event["event"] == "timeout"
    assert event["video_id"] == video_id
    assert video_id in event["message"]
    assert "may still be running" in event["message"]
    assert "in_progress" in event["message"]
    assert gets(conn) >= 2
    assert conn.store.get(video_id) is not None  # a timeout cancels nothing


async def test_error_event_for_an_unknown_id(conn: LocalVideosServer) -> None:
    events = await events_of(VideoJobTrigger("video_doesnotexist", CONN_ID, poll_interval=0.01))
    assert len(events) == 1
    assert events[0]["event"] == "error"
    assert events[0]["http_status"] == 404
    assert events[0]["video_id"] == "video_doesnotexist"
    assert events[0]["message"]


async def test_error_event_for_a_wrong_key(
    server: LocalVideosServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "sk-unit-WRONG-KEY-55aa66bb77cc"
    set_conn(monkeypatch, server.url, password=wrong)
    video_id = add_job(server)
    events = await events_of(VideoJobTrigger(video_id, CONN_ID, poll_interval=0.01))
    assert len(events) == 1
    assert events[0]["event"] == "error"
    assert events[0]["http_status"] == 401
    assert wrong not in json.dumps(events)
    assert KEY not in json.dumps(events)
    assert gets(server, 401) == 1  # not retried


async def test_error_event_for_an_unknown_connection(
    server: LocalVideosServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = await events_of(VideoJobTrigger("video_1", "no_such_connection", poll_interval=0.01))
    assert len(events) == 1
    assert events[0]["event"] == "error"
    assert "no_such_connection" in events[0]["message"]
    assert server.stats()["requests_total"] == 0


def instant_retries(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The retry policy's waits inside one status check, recorded instead of slept."""
    retry_waits: list[float] = []

    async def no_wait(seconds: float) -> None:
        retry_waits.append(seconds)

    shared = clients.shared_async_client

    async def instant(settings: ClientSettings) -> clients.AsyncVideosClient:
        client = await shared(settings)
        client._sleep = no_wait
        return client

    monkeypatch.setattr(clients, "shared_async_client", instant)
    return retry_waits


async def test_an_outage_is_ridden_out_and_logged_once_at_each_end(
    server: LocalVideosServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three status checks fail for good (each spends its 1 retry on two 503s), then the API is back."""
    set_conn(monkeypatch, server.url, max_retries=1, max_retry_seconds=5)
    instant_retries(monkeypatch)
    server.set_faults(["GET /v1/videos/{id} status=503;times=6"])
    video_id = add_job(server, started_ago=100.0, duration=1.0)
    trigger = VideoJobTrigger(video_id, CONN_ID, poll_interval=0.01, deadline=time.time() + 60)
    messages: list[str] = []
    for level in ("info", "warning"):
        monkeypatch.setattr(
            trigger.log, level, lambda msg, *args, **kw: messages.append(msg % args if args else msg)
        )
    events = await events_of(trigger)
    assert [e["event"] for e in events] == ["completed"]
    assert gets(server, 503) == 6
    failing = [m for m in messages if "are failing" in m]
    back = [m for m in messages if "work again" in m]
    assert len(failing) == 1
    assert "status=503" in failing[0]
    assert back == [back[0]]
    assert "(3 failed)" in back[0]


def retry_records(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == retries.log.name and r.levelno == level]


async def test_a_status_check_that_rides_out_two_503s_logs_two_warnings(
    server: LocalVideosServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Within its own retries (4): a WARNING line per retry, no outage; the key in no record."""
    caplog.set_level(logging.DEBUG)
    set_conn(monkeypatch, server.url, max_retry_seconds=5)
    instant_retries(monkeypatch)
    server.set_faults(["GET /v1/videos/{id} status=503;times=2"])
    video_id = add_job(server, started_ago=100.0, duration=1.0)
    trigger = VideoJobTrigger(video_id, CONN_ID, poll_interval=0.01, deadline=time.time() + 60)
    events = await events_of(trigger)
    assert [e["event"] for e in events] == ["completed"]
    assert gets(server, 503) == 2
    lines = retry_records(caplog, logging.WARNING)
    assert [line.split(" failed: ")[0] for line in lines] == [
        f"GET /videos/{video_id}: attempt 1 of 5",
        f"GET /videos/{video_id}: attempt 2 of 5",
    ]
    assert all("status=503" in line and "; retrying in " in line for line in lines)
    assert not any("are failing" in r.getMessage() for r in caplog.records)
    assert all(KEY not in r.getMessage() and KEY not in str(r.args) for r in caplog.records)
    assert KEY not in caplog.text


async def test_no_warning_per_retry_inside_an_outage(
    server: LocalVideosServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The outage of the test above: the first check's retry, unaware of an outage, is a WARNING;
    the checks made during the outage retry at DEBUG only (the outage lines say it)."""
    caplog.set_level(logging.DEBUG, logger=retries.log.name)
    set_conn(monkeypatch, server.url, max_retries=1, max_retry_seconds=5)
    instant_retries(monkeypatch)
    server.set_faults(["GET /v1/videos/{id} status=503;times=6"])
    video_id = add_job(server, started_ago=100.0, duration=1.0)
    trigger = VideoJobTrigger(video_id, CONN_ID, poll_interval=0.01, deadline=time.time() + 60)
    events = await events_of(trigger)
    assert [e["event"] for e in events] == ["completed"]
    assert gets(server, 503) == 6
    loud = retry_records(caplog, logging.WARNING)
    assert len(loud) == 1
    assert loud[0].startswith(f"GET /videos/{video_id}: attempt 1 of 2 failed: ")
    assert len(retry_records(caplog, logging.DEBUG)) == 2
    assert KEY not in caplog.text


async def test_an_outage_past_the_deadline_ends_in_a_timeout(
    server: LocalVideosServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_conn(monkeypatch, server.url, max_retries=1, max_retry_seconds=5)
    instant_retries(monkeypatch)
    server.set_faults(["GET /v1/videos/{id} status=503"])
    video_id = add_job(server)
    events = await events_of(
        VideoJobTrigger(video_id, CONN_ID, poll_interval=0.01, deadline=time.time() + 0.3)
    )
    assert len(events) == 1
    assert events[0]["event"] == "timeout"
    assert "had been failing" in events[0]["message"]
    assert "may still be running" in events[0]["message"]
    assert gets(server, 503) >= 4  # it kept checking until the deadline


async def test_a_rejection_during_a_wait_ends_it_at_once(
    server: LocalVideosServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_conn(monkeypatch, server.url)
    instant_retries(monkeypatch)
    server.set_faults(["GET /v1/videos/{id} status=403"])
    video_id = add_job(server)
    events = await events_of(
        VideoJobTrigger(video_id, CONN_ID, poll_interval=0.01, deadline=time.time() + 60)
    )
    assert [e["event"] for e in events] == ["error"]
    assert events[0]["http_status"] == 403
    assert gets(server, 403) == 1


# --- deadlines --------------------------------------------------------------------------------
async def test_a_recreated_trigger_past_its_deadline_polls_once_and_times_out(
    conn: LocalVideosServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    video_id = add_job(conn, started_ago=500.0, duration=1000.0)
    original = VideoJobTrigger(video_id, CONN_ID, poll_interval=60.0, deadline=time.time() - 1)
    _classpath, kwargs = original.serialize()
    sleeps = patch_sleep(monkeypatch, Sleeps())
    events = await events_of(VideoJobTrigger(**kwargs))
    assert [e["event"] for e in events] == ["timeout"]
    assert sleeps.waits == []  # no poll interval waited
    assert gets(conn) == 1


async def test_a_near_deadline_caps_the_wait(
    conn: LocalVideosServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    video_id = add_job(conn, started_ago=500.0, duration=1000.0)
    sleeps = patch_sleep(monkeypatch, Sleeps(really=True))
    started = time.monotonic()
    trigger = VideoJobTrigger(video_id, CONN_ID, poll_interval=60.0, deadline=time.time() + 0.3)
    events = await events_of(trigger)
    assert [e["event"] for e in events] == ["timeout"]
    assert sleeps.waits
    assert 0 < sleeps.waits[0] <= 0.3
    assert time.monotonic() - started < 10


async def test_a_poll_after_hint_longer_than_the_interval_governs_the_wait(
    conn: LocalVideosServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert conn.app is not None
    conn.app.poll_after = "2500"
    video_id = add_job(conn, started_ago=500.0, duration=1000.0)
    sleeps = patch_sleep(monkeypatch, Sleeps(on_sleep=lambda n: n == 2 and finish(conn, video_id)))
    events = await events_of(VideoJobTrigger(video_id, CONN_ID, poll_interval=0.5))
    assert [e["event"] for e in events] == ["completed"]
    assert sleeps.waits == [pytest.approx(2.5, abs=0.1)] * 2


async def test_a_hint_shorter_than_the_interval_does_not_shorten_it(
    conn: LocalVideosServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert conn.app is not None
    conn.app.poll_after = "100"
    video_id = add_job(conn, started_ago=500.0, duration=1000.0)
    sleeps = patch_sleep(monkeypatch, Sleeps(on_sleep=lambda n: finish(conn, video_id)))
    await events_of(VideoJobTrigger(video_id, CONN_ID, poll_interval=3.0))
    assert sleeps.waits == [pytest.approx(3.0, abs=0.1)]


# --- logging ----------------------------------------------------------------------------------
async def test_logs_each_progress_change_not_every_poll(
    conn: LocalVideosServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    video_id = add_job(conn, started_ago=5000.0, duration=10000.0)  # progress moves every ~100 s

    def on_sleep(n: int) -> None:
        if n == 3:
            conn.store.jobs[video_id].created_at -= 2000  # progress jumps
        if n == 5:
            finish(conn, video_id)

    patch_sleep(monkeypatch, Sleeps(on_sleep=on_sleep))
    trigger = VideoJobTrigger(video_id, CONN_ID, poll_interval=1.0)
    lines: list[str] = []
    monkeypatch.setattr(
        trigger.log, "info", lambda msg, *args, **kw: lines.append(msg % args if args else msg)
    )
    events = await events_of(trigger)
    assert [e["event"] for e in events] == ["completed"]
    assert gets(conn) == 6
    ours = [line for line in lines if video_id in line]
    assert len(ours) == 3, ours
    assert "in_progress" in ours[0]
    assert "in_progress" in ours[1]
    assert ours[0] != ours[1]
    assert ours[2].endswith("completed")


async def test_creeping_progress_logs_once_per_tenth(
    conn: LocalVideosServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Starts at ~15% (queued for the first 15% of the run), then +3% of the run per poll.
    video_id = add_job(conn, started_ago=2000.0, duration=10000.0)

    def on_sleep(n: int) -> None:
        conn.store.jobs[video_id].created_at -= 300
        if n == 12:
            finish(conn, video_id)

    patch_sleep(monkeypatch, Sleeps(on_sleep=on_sleep))
    trigger = VideoJobTrigger(video_id, CONN_ID, poll_interval=1.0)
    lines: list[str] = []
    monkeypatch.setattr(
        trigger.log, "info", lambda msg, *args, **kw: lines.append(msg % args if args else msg)
    )
    await events_of(trigger)
    progress = [int(line.rsplit(" ", 1)[1].rstrip("%")) for line in lines if "in_progress" in line]
    assert gets(conn) == 13
    assert len(progress) < 13 - 1  # not a line per poll
    assert len({p // 10 for p in progress}) == len(progress)  # one line per tenth reached
    assert lines[-1].endswith("completed")


# --- no blocking call on the event loop --------------------------------------------------------
def test_no_blocking_call_in_the_event_loop(
    conn: LocalVideosServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A trigger's run never holds the loop longer than 50 ms (asyncio debug mode).

    One warm-up trigger runs first on the same loop: it pays the once-per-process costs (lazy
    imports on the first connection lookup and first request, and the pooled client's creation,
    see the report). The measured trigger then does what every further trigger of a triggerer
    does: an async connection lookup, then polls until the job is done.
    """
    warm_id = add_job(conn, duration=0.0)
    video_id = add_job(conn, started_ago=0.0, duration=1.0)
    caplog.set_level(logging.WARNING, logger="asyncio")
    loop = asyncio.new_event_loop()  # asyncio.Runner(debug=True) from Python 3.11 on
    try:
        loop.set_debug(True)
        loop.slow_callback_duration = 0.05
        loop.run_until_complete(events_of(VideoJobTrigger(warm_id, CONN_ID, poll_interval=0.1)))
        caplog.clear()
        # A full collection of the test session's heap (hundreds of tests' objects) can take 0.2 s
        # inside any step: that is the collector, not the trigger. Freeze what exists and collect
        # nothing during the measured run, so only the trigger's own work is timed.
        gc.collect()
        gc.freeze()
        gc.disable()
        try:
            events = loop.run_until_complete(events_of(VideoJobTrigger(video_id, CONN_ID, poll_interval=0.1)))
        finally:
            gc.enable()
            gc.unfreeze()
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    assert [e["event"] for e in events] == ["completed"]
    assert gets(conn) >= 4  # the warm-up's one poll, then several of the measured trigger
    slow = [r.getMessage() for r in caplog.records if r.name == "asyncio" and "took" in r.getMessage()]
    assert slow == []


# --- the shared pool --------------------------------------------------------------------------
async def test_two_triggers_share_one_pooled_client(
    conn: LocalVideosServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    used: list[clients.AsyncVideosClient] = []
    shared = clients.shared_async_client

    async def recording(settings: ClientSettings) -> clients.AsyncVideosClient:
        client = await shared(settings)
        used.append(client)
        return client

    monkeypatch.setattr(clients, "shared_async_client", recording)
    first, second = add_job(conn, duration=0.3), add_job(conn, duration=0.3)
    a, b = await asyncio.gather(
        events_of(VideoJobTrigger(first, CONN_ID, poll_interval=0.05)),
        events_of(VideoJobTrigger(second, CONN_ID, poll_interval=0.05)),
    )
    assert [e["event"] for e in a + b] == ["completed", "completed"]
    assert {a[0]["video_id"], b[0]["video_id"]} == {first, second}
    assert len(used) == 2
    assert used[0] is used[1]


# --- on_kill ----------------------------------------------------------------------------------
class FakeComms:
    """The triggerer's supervisor channel: answers GetTaskStates with a fixed state."""

    def __init__(self, states: dict[str, dict[str, Any]]) -> None:
        self.states = states
        self.asked: list[Any] = []

    def send(self, msg: Any) -> Any:
        if type(msg).__name__ == "GetTaskStates":
            self.asked.append(msg)
            return SimpleNamespace(task_states=self.states)
        return None  # e.g. MaskSecret

    async def asend(self, msg: Any) -> Any:
        return self.send(msg)


def fake_ti(map_index: int = -1) -> SimpleNamespace:
    return SimpleNamespace(dag_id="d", task_id="edit", run_id="manual__1", map_index=map_index)


def deletes(server: LocalVideosServer) -> int:
    return sum(server.stats()["requests"].get("DELETE /v1/videos/{video_id}", {}).values())


STILL_RUNNING = "is still running and will finish (and be billed): the Videos API cannot cancel a running job"


async def _kill(
    server: LocalVideosServer,
    monkeypatch: pytest.MonkeyPatch,
    ti: SimpleNamespace | None,
    comms: FakeComms | None,
    *,
    running: bool = False,
    log: list[tuple[str, str]] | None = None,
    **trigger_kwargs: Any,
) -> str:
    from airflow.sdk.execution_time import task_runner

    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", comms, raising=False)
    video_id = (
        add_job(server, started_ago=10.0, duration=1000.0) if running else add_job(server, duration=0.0)
    )
    trigger = VideoJobTrigger(video_id, CONN_ID, poll_interval=1.0, **trigger_kwargs)
    if ti is not None:
        trigger.task_instance = ti  # type: ignore[assignment]
    if log is not None:
        record_log(monkeypatch, trigger, log)
    await trigger.on_kill()
    return video_id


def record_log(
    monkeypatch: pytest.MonkeyPatch, trigger: VideoJobTrigger, lines: list[tuple[str, str]]
) -> None:
    """The trigger's log lines into ``lines`` as (level, text): its logger is structlog's."""
    for level in ("info", "warning"):
        monkeypatch.setattr(
            trigger.log,
            level,
            lambda msg, *args, _level=level, **kw: lines.append((_level, msg % args if args else msg)),
        )


def failed_comms() -> FakeComms:
    return FakeComms({"manual__1": {"edit": "failed"}})


async def test_on_kill_of_a_failed_task_deletes_its_finished_job_once(
    conn: LocalVideosServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    log: list[tuple[str, str]] = []
    comms = failed_comms()
    video_id = await _kill(conn, monkeypatch, fake_ti(), comms, log=log)
    asked = comms.asked[0]
    assert (asked.dag_id, asked.run_ids, asked.task_ids, asked.map_index) == (
        "d",
        ["manual__1"],
        ["edit"],
        None,
    )
    assert conn.stats()["requests"]["GET /v1/videos/{video_id}"] == {"200": 1}  # one look
    assert conn.stats()["requests"]["DELETE /v1/videos/{video_id}"] == {"200": 1}
    assert conn.store.get(video_id) is None
    assert log == [("info", f"deleted finished video job {video_id} (completed)")]
    from airflow_video_edit.hooks import OpenAIVideosHook

    with OpenAIVideosHook(CONN_ID) as hook, pytest.raises(NotFoundError) as excinfo:
        hook.get_video(video_id)
    assert getattr(excinfo.value, "status_code", None) == 404


async def test_on_kill_of_a_failed_task_leaves_a_running_job_and_says_it_will_be_billed(
    conn: LocalVideosServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    log: list[tuple[str, str]] = []
    video_id = await _kill(conn, monkeypatch, fake_ti(), failed_comms(), running=True, log=log)
    assert deletes(conn) == 0  # a DELETE cannot cancel it: none is sent
    assert conn.stats()["requests"]["GET /v1/videos/{video_id}"] == {"200": 1}
    assert conn.store.get(video_id) is not None
    assert log == [("warning", f"video job {video_id} {STILL_RUNNING}")]


async def test_on_kill_sends_one_delete_without_retry_when_it_fails(
    conn: LocalVideosServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """on_kill has about a second (the triggerer cancels it again): no retry, no backoff."""
    conn.set_faults(["DELETE /v1/videos/{id} status=503"])
    caplog.set_level(logging.DEBUG, logger=retries.log.name)
    log: list[tuple[str, str]] = []
    video_id = await _kill(conn, monkeypatch, fake_ti(), failed_comms(), log=log)
    assert conn.stats()["requests"]["DELETE /v1/videos/{video_id}"] == {"503": 1}
    assert conn.store.get(video_id) is not None
    assert [line for line in log if "could not delete" in line[1]] == [log[-1]]
    assert log[-1][1].startswith(f"could not delete finished video job {video_id} (completed)")
    assert not [r for r in caplog.records if r.name == retries.log.name]  # not one retry


async def test_on_kill_requests_have_a_short_timeout(
    conn: LocalVideosServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backend that does not answer: the look gives up after CANCEL_TIMEOUT, once."""
    from airflow_video_edit.cancel import CANCEL_TIMEOUT

    conn.set_faults(["GET /v1/videos/{id} hold=2"])
    began = time.monotonic()
    log: list[tuple[str, str]] = []
    video_id = await _kill(conn, monkeypatch, fake_ti(), failed_comms(), log=log)
    assert time.monotonic() - began < CANCEL_TIMEOUT + 0.5
    assert deletes(conn) == 0  # never seen, and the look failed: status unknown, nothing deleted
    assert log[-1][1].startswith(f"not deleting video job {video_id}: could not tell whether it finished")


async def test_on_kill_goes_by_the_last_seen_status_when_it_cannot_look(
    conn: LocalVideosServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.sdk.execution_time import task_runner

    from airflow_video_edit.models import Video
    from airflow_video_edit.waiting import Wait

    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", failed_comms(), raising=False)
    conn.set_faults(["GET /v1/videos/{id} status=503"])
    log: list[tuple[str, str]] = []
    for status, expected_deletes in (("in_progress", 0), ("completed", 1)):
        video_id = add_job(conn, duration=0.0)
        trigger = VideoJobTrigger(video_id, CONN_ID, poll_interval=1.0)
        trigger.task_instance = fake_ti()  # type: ignore[assignment]
        record_log(monkeypatch, trigger, log)
        trigger._wait = Wait(video_id, poll_interval=1.0, deadline=None, log=trigger.log)
        trigger._wait.last = Video.model_validate({"id": video_id, "status": status, "created_at": 1})
        await trigger.on_kill()
        assert deletes(conn) == expected_deletes
    assert len([text for _, text in log if STILL_RUNNING in text]) == 1
    assert f"deleted finished video job {video_id} (completed)" in [text for _, text in log]


async def test_on_kill_keeps_the_last_status_the_wait_saw(
    conn: LocalVideosServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    video_id = add_job(conn, duration=1000.0)
    trigger = VideoJobTrigger(video_id, CONN_ID, poll_interval=0.01, deadline=time.time() + 0.3)
    events = await events_of(trigger)
    assert events[0]["event"] == "timeout"
    assert trigger._wait is not None
    assert trigger._wait.last is not None
    assert trigger._wait.last.status in ("queued", "in_progress")
    assert "_wait" not in json.dumps(trigger.serialize()[1])


async def test_on_kill_finishes_although_the_triggerer_cancels_it_again_and_again(
    conn: LocalVideosServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The triggerer re-sends its cancel about every second until the trigger ends; a slow state
    read (6 s on a cold triggerer in the e2e drills) must not cut the cancel short."""
    from airflow.sdk.execution_time import task_runner

    class Slow(FakeComms):
        def send(self, msg: Any) -> Any:
            if type(msg).__name__ == "GetTaskStates":
                time.sleep(1.0)
            return super().send(msg)

    monkeypatch.setattr(
        task_runner, "SUPERVISOR_COMMS", Slow({"manual__1": {"edit": "failed"}}), raising=False
    )
    video_id = add_job(conn, duration=0.0)
    trigger = VideoJobTrigger(video_id, CONN_ID, poll_interval=1.0)
    trigger.task_instance = fake_ti()  # type: ignore[assignment]
    log: list[tuple[str, str]] = []
    record_log(monkeypatch, trigger, log)
    kill = asyncio.ensure_future(trigger.on_kill())
    for _ in range(8):  # a cancel every 0.2 s, as the triggerer's every second, only faster
        await _real_sleep(0.2)
        kill.cancel("user action")
    await asyncio.wait_for(kill, 10)
    assert conn.stats()["requests"]["DELETE /v1/videos/{video_id}"] == {"200": 1}
    assert log == [("info", f"deleted finished video job {video_id} (completed)")]


async def test_on_kill_gives_up_after_its_budget(
    conn: LocalVideosServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.sdk.execution_time import task_runner

    from airflow_video_edit import cancel

    class Stuck(FakeComms):
        def send(self, msg: Any) -> Any:
            if type(msg).__name__ == "GetTaskStates":
                time.sleep(1.0)
            return super().send(msg)

    monkeypatch.setattr(cancel, "KILL_BUDGET", 0.3)
    monkeypatch.setattr(
        task_runner, "SUPERVISOR_COMMS", Stuck({"manual__1": {"edit": "failed"}}), raising=False
    )
    video_id = add_job(conn, duration=0.0)
    trigger = VideoJobTrigger(video_id, CONN_ID, poll_interval=1.0)
    trigger.task_instance = fake_ti()  # type: ignore[assignment]
    log: list[tuple[str, str]] = []
    record_log(monkeypatch, trigger, log)
    began = time.monotonic()
    await trigger.on_kill()
    assert time.monotonic() - began < 0.8
    assert log == [("warning", f"gave up the cancel of video job {video_id} after 0.3 s")]
    await _real_sleep(1.2)  # the state read (a thread) ends; nothing is sent after the give-up
    assert conn.stats()["requests_total"] == 0


@pytest.mark.parametrize(
    "state", [None, "scheduled", "queued", "up_for_retry", "restarting", "deferred", "success", "running"]
)
async def test_on_kill_of_a_task_not_marked_failed_sends_nothing(
    conn: LocalVideosServer, monkeypatch: pytest.MonkeyPatch, state: str | None
) -> None:
    """A clear (None, scheduled, queued, up_for_retry, restarting): the new try resumes the job.
    airflow#73454: on_kill also runs when a trigger moves to another triggerer (still deferred);
    a task marked success keeps its result."""
    comms = FakeComms({"manual__1": {"edit": state}})
    video_id = await _kill(conn, monkeypatch, fake_ti(), comms)
    assert comms.asked  # it did ask
    assert conn.stats()["requests_total"] == 0
    assert conn.store.get(video_id) is not None


async def test_cancel_on_kill_false_never_deletes(
    conn: LocalVideosServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    comms = failed_comms()
    log: list[tuple[str, str]] = []
    video_id = await _kill(conn, monkeypatch, fake_ti(), comms, cancel_on_kill=False, log=log)
    assert conn.stats()["requests_total"] == 0
    assert not comms.asked
    assert conn.store.get(video_id) is not None
    assert log == [("info", f"not deleting video job {video_id}: cancel_on_kill is off")]
    trigger = VideoJobTrigger(video_id, CONN_ID, cancel_on_kill=False)
    _, kwargs = trigger.serialize()
    assert kwargs["cancel_on_kill"] is False
    assert VideoJobTrigger(**kwargs).cancel_on_kill is False
    assert KEY not in json.dumps(kwargs)
    assert KEY not in repr(trigger)


async def test_on_kill_of_a_mapped_task_uses_the_mapped_key(
    conn: LocalVideosServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    comms = FakeComms({"manual__1": {"edit_2": "failed", "edit": "deferred", "edit_1": "deferred"}})
    video_id = await _kill(conn, monkeypatch, fake_ti(map_index=2), comms)
    assert comms.asked[0].map_index == 2
    assert deletes(conn) == 1
    assert conn.store.get(video_id) is None

    comms = FakeComms({"manual__1": {"edit_2": "deferred", "edit": "failed"}})
    video_id = await _kill(conn, monkeypatch, fake_ti(map_index=2), comms)
    assert deletes(conn) == 1
    assert conn.store.get(video_id) is not None


@pytest.mark.parametrize(
    "case", ["no comms", "no task instance", "task missing from the reply", "comms raise"]
)
async def test_on_kill_keeps_the_job_when_the_state_is_unknown(
    conn: LocalVideosServer, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    comms: Any = failed_comms()
    ti: SimpleNamespace | None = fake_ti()
    if case == "no comms":
        comms = None
    elif case == "no task instance":
        ti = None
    elif case == "task missing from the reply":
        comms = FakeComms({"manual__1": {"other": "failed"}})
    else:

        class Broken(FakeComms):
            async def asend(self, msg: Any) -> Any:
                if type(msg).__name__ == "GetTaskStates":
                    raise ConnectionError("supervisor went away")
                return None

        comms = Broken({})
    video_id = await _kill(conn, monkeypatch, ti, comms)
    assert conn.stats()["requests_total"] == 0
    assert conn.store.get(video_id) is not None


async def test_cleanup_never_deletes_the_job(
    conn: LocalVideosServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.sdk.execution_time import task_runner

    monkeypatch.setattr(
        task_runner, "SUPERVISOR_COMMS", FakeComms({"manual__1": {"edit": "failed"}}), raising=False
    )
    video_id = add_job(conn)
    trigger = VideoJobTrigger(video_id, CONN_ID, poll_interval=1.0)
    trigger.task_instance = fake_ti()  # type: ignore[assignment]
    result: Awaitable[None] | None = trigger.cleanup()
    if result is not None:
        await result
    assert deletes(conn) == 0
    assert conn.store.get(video_id) is not None
    assert conn.stats()["requests_total"] == 0
