"""Fault drill, end to end: the backend is down for 60 s while a deferred task waits, then comes back.

``video_edit_then_publish`` runs on the real deployment; once its ``edit`` task is deferred (the
triggerer polls the job), the local server goes down for ``OUTAGE_SECONDS``, as a gateway restart
looks from outside:

1. first half: every ``/v1/*`` request is answered 503 (the server's run-time fault rules);
2. second half: the port is closed, every connection is refused (:func:`port_closed`: the
   in-process uvicorn stops listening; its app, with its jobs and stats, is kept).

The job (20 s) completes during the outage. When the port opens again, the trigger must find it
completed: the run succeeds on the edit task's first try, with one job created, and the task's
log tells of the outage once when it starts and once when it ends, not once per failed check.
The only sleeps are the outage's own two halves; everything else waits on the harness.
"""

from __future__ import annotations

import contextlib
import re
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

import airflow_video_edit.server as server_package
from airflow_video_edit.settings import ClientSettings

pytestmark = pytest.mark.e2e

DAG_ID = "video_edit_then_publish"
POLL_ROUTE = "GET /v1/videos/{video_id}"  # a status check, as the server counts it
OUTAGE_SECONDS = 60.0
HALF = OUTAGE_SECONDS / 2


def polls(stats: dict[str, Any]) -> dict[str, int]:
    """Status checks the server answered, by status (``"0"``: dropped before any reply)."""
    return dict(stats["requests"].get(POLL_ROUTE, {}))


def since(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    diff = {status: count - before.get(status, 0) for status, count in after.items()}
    return {status: count for status, count in diff.items() if count}


def sleep_until(deadline: float) -> None:
    """The outage's own duration (the point of the drill), not a synchronisation."""
    time.sleep(max(0.0, deadline - time.monotonic()))


@contextlib.contextmanager
def port_closed(server: Any) -> Iterator[Any]:
    """Close the in-process server's port (connections refused), then listen again on the same port.

    The app is kept across: its jobs (whose status is a function of time) and its stats carry on,
    as behind a gateway that restarts. ``stop()`` would close the app's job store (and delete its
    media), so the app is detached first; ``start()`` is given it back instead of a new one.
    Yields the app (its methods work while the port is closed; the server's do not).
    """
    app, port = server.app, server.port
    assert app is not None, "needs the in-process LocalVideosServer"
    server.app = None
    server.stop()  # uvicorn's graceful exit: the listening socket and idle connections are closed
    try:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((server.host, port), timeout=5).close()
        yield app
    finally:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(server_package, "create_app", lambda **_: app)
            server.start()  # the same host:port: fixed by the first start
        assert (server.app, server.port) == (app, port), "the server came back with another app or port"


def test_backend_down_60s_while_deferred_then_back(airflow_deployment, e2e_video_server):
    server, api_key = e2e_video_server
    jobs_before = server.stats()["jobs_created"]
    triggered = time.monotonic()
    run_id = airflow_deployment.trigger_dag(DAG_ID)
    airflow_deployment.wait_for_task_state(DAG_ID, run_id, "edit", {"deferred"}, timeout=120)
    video_id = airflow_deployment.xcom(DAG_ID, run_id, "edit", key="video_id")
    created_at = airflow_deployment.xcom(DAG_ID, run_id, "edit", key="job")["created_at"]

    # ---- the outage: 503s, then the port closed
    begun_at, begun = time.time(), time.monotonic()
    server.set_faults(["* /v1/* status=503"])
    try:
        # Taken after the rule is in place: only a check already in flight can still answer 200.
        before = polls(server.stats())
        sleep_until(begun + HALF)
        with port_closed(server) as app:
            app.set_faults([])  # nothing reaches the app now; it must answer again once back
            sleep_until(begun + OUTAGE_SECONDS)
            window = since(polls(app.stats()), before)  # all the server saw of the outage
    finally:
        server.set_faults([])
    outage = time.monotonic() - begun
    back_at = time.time()

    state = airflow_deployment.wait_for_run(DAG_ID, run_id, timeout=300)
    finished = time.monotonic()
    tis = {t["task_id"]: t for t in airflow_deployment.task_instances(DAG_ID, run_id)}
    assert state == "success", (tis, airflow_deployment.log_tails())

    # The outage covered the trigger's polling: checks failed during it, none got through.
    failed = {status: count for status, count in window.items() if status != "200"}
    assert failed.get("503", 0) > 0, window
    assert set(failed) == {"503"}, window
    assert window.get("200", 0) <= 1, window  # at most the one check in flight as the rule came in
    # And the job completed during the outage (created_at is whole seconds, rounded down).
    assert begun_at < created_at + server.job_seconds, "the job was done before the outage began"
    assert created_at + server.job_seconds + 1 <= back_at, "the job was not done when the backend came back"

    assert tis["edit"]["try_number"] == 1  # ridden out within the first try
    assert server.stats()["jobs_created"] == jobs_before + 1  # exactly one paid job
    job = airflow_deployment.xcom(DAG_ID, run_id, "edit")
    assert (job["id"], job["status"]) == (video_id, "completed")

    # One line when the outage starts, one when it ends: not a line per failed check.
    log = airflow_deployment.task_log(DAG_ID, run_id, "edit", try_number=1)
    assert log.count(f"status checks of video job {video_id} are failing") == 1, log
    ends = re.findall(
        rf"status checks of video job {re.escape(video_id)} work again after (\d+) s \((\d+) failed\)", log
    )
    assert len(ends) == 1, log
    assert log.count(f"status checks of video job {video_id} work again") == 1, log
    reported_seconds, failed_checks = (int(x) for x in ends[0])
    # Nor a warning per failed request: at most the retries of the first failing check (made
    # before the wait knows of an outage), and the outage's start line.
    warnings = [line for line in log.splitlines() if "[warning]" in line and video_id in line]
    assert len(warnings) <= ClientSettings().max_retries + 1, warnings
    # The trigger's outage runs from its first check that failed for good (that check's own
    # retries take up to ~15 s) to its first check that got through again.
    assert HALF <= reported_seconds <= finished - begun + 1, (reported_seconds, outage)
    assert failed_checks >= 2, ends
    # The closed port was polled too: each failed check made all its attempts (the retry budget,
    # a few seconds), more than the server saw; the rest were refused.
    refused = failed_checks * (ClientSettings().max_retries + 1) - failed["503"]
    assert refused > 0, (failed_checks, window)

    # The key is in no log line of any process or task, masked or not.
    assert api_key not in airflow_deployment.logs_text()
    print(
        f"\n[e2e] outage drill: outage {outage:.1f}s (503s {HALF:.0f}s, then port closed); "
        f"run {finished - triggered:.1f}s from trigger, {finished - begun - outage:.1f}s after the backend "
        f"came back; polls seen by the server during the outage {window}, refused {refused}; trigger: "
        f"{failed_checks} failed checks over {reported_seconds}s, {len(warnings)} warning lines; "
        f"edit try {tis['edit']['try_number']}; jobs created {server.stats()['jobs_created'] - jobs_before}"
    )
