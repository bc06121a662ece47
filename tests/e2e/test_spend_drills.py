"""Spend drills, end to end: what a lost reply, a killed worker, "mark failed" and "clear" cost.

Each drill runs on the real deployment (api-server, scheduler with the LocalExecutor,
dag-processor, triggerer) against the in-process local server, and counts the paid jobs with
the server's own ``jobs_created``:

(a) the reply to the edit POST is lost (the server created the job, then reset the connection):
    the write-ahead submit lists the jobs, adopts the one match, within the first try: 1 job;
(b) the task process is SIGKILLed after the backend created the job and before the reply
    arrived (the reply is held 30 s): Airflow retries, the next try finds the intent without an
    id, lists, adopts the job: 1 job;
(c) a deferred task marked failed (the REST API, as a user does) while its job runs: the job is
    left to finish (and be billed), the log says so, nothing is deleted; marked failed once its
    job has finished: the finished job is deleted;
(d) a deferred task cleared: the new try resumes the same job, which is never deleted: 1 job.

(a) and (d) run the example ``video_edit_then_publish``; (b) and (c) need other retry and poll
settings and run small DAGs of their own (``add_dag_file``): the example's edit task retries
after Airflow's default 300 s, and polls every 2 s (its trigger would fire before a job could be
seen finished while still waited for).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

pytestmark = pytest.mark.e2e

T = TypeVar("T")
EXAMPLE = "video_edit_then_publish"
RETRY_DAG = "spend_drill_retry"
SLOW_POLL_DAG = "spend_drill_slow_poll"
SOURCE_CLIP = Path(__file__).resolve().parents[2] / "dags" / "data" / "source_clip.mp4"
POST_EDIT = "POST /v1/videos/edits"
DELETE = "DELETE /v1/videos/{video_id}"
STILL_RUNNING = "is still running and will finish (and be billed): the Videos API cannot cancel a running job"

DRILL_DAGS = textwrap.dedent(
    f'''
    """Spend drills: an edit that retries within seconds, and an edit whose trigger polls rarely."""
    from datetime import datetime, timedelta

    from airflow.sdk import DAG, Param

    from airflow_video_edit.operators import VideoEditOperator

    PARAMS = {{"prompt": Param("spend drill", type="string")}}

    with DAG(dag_id="{RETRY_DAG}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False,
             params=PARAMS):
        VideoEditOperator(
            task_id="edit",
            video={str(SOURCE_CLIP)!r},
            prompt="{{{{ params.prompt }}}}",
            poll_interval=2,
            deferrable=True,
            retries=2,
            retry_delay=timedelta(seconds=1),
        )

    with DAG(dag_id="{SLOW_POLL_DAG}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False,
             params=PARAMS):
        # The trigger looks once, then sleeps 10 minutes: the job (20 s) finishes unseen.
        VideoEditOperator(
            task_id="edit",
            video={str(SOURCE_CLIP)!r},
            prompt="{{{{ params.prompt }}}}",
            poll_interval=600,
            deferrable=True,
        )
    '''
)


@pytest.fixture(scope="module")
def drill_dags(airflow_deployment: Any) -> Any:
    airflow_deployment.add_dag_file("spend_drill_dags.py", DRILL_DAGS)
    return airflow_deployment


def wait_until(what: str, check: Callable[[], T | None], timeout: float, every: float = 0.2) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(every)


def jobs(server: Any) -> int:
    return int(server.stats()["jobs_created"])


def requests(server: Any, route: str) -> int:
    return sum(server.stats()["requests"].get(route, {}).values())


def prompt(drill: str) -> str:
    """A prompt no other run sends: reconciliation matches by prompt, among others."""
    return f"spend drill {drill} {uuid.uuid4().hex[:8]}: add a warm sunset grade"


# --- processes --------------------------------------------------------------------------------
def _parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])  # the command may hold spaces and ')'


def _descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            pid = _parent(pid)
        except (OSError, ValueError, IndexError):
            return False
    return False


def task_process(deployment: Any, ti_id: str) -> int | None:
    """The task runner of one task instance: a child of the scheduler (LocalExecutor worker ->
    supervisor -> task process) whose title the task runner set to ``airflow worker -- <ti id>``
    (its supervisor's title is ``airflow worker -- LocalExecutor: <task>``)."""
    scheduler = deployment.procs["scheduler"].pid
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if title == f"airflow worker -- {ti_id}" and _descends_from(int(entry.name), scheduler):
            return int(entry.name)
    return None


# --- REST, as a user does ---------------------------------------------------------------------
def mark_failed(deployment: Any, dag_id: str, run_id: str, task_id: str) -> None:
    r = deployment.client.patch(
        f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}", json={"new_state": "failed"}
    )
    assert r.status_code == 200, r.text


def clear(deployment: Any, dag_id: str, run_id: str, task_id: str) -> None:
    r = deployment.client.post(
        f"/api/v2/dags/{dag_id}/clearTaskInstances",
        json={
            "dry_run": False,
            "dag_run_id": run_id,
            "task_ids": [task_id],
            "only_failed": False,
            "reset_dag_runs": True,
        },
    )
    assert r.status_code == 200, r.text


def log_line(deployment: Any, text: str, timeout: float = 45.0) -> str:
    """The first line of any process or task log (the triggerer's included) that holds ``text``:
    its level and text (task and trigger logs are JSON lines)."""

    def find() -> str | None:
        lines = [line for line in deployment.logs_text().splitlines() if text in line]
        if not lines:
            return None
        with contextlib.suppress(ValueError, KeyError):
            record = json.loads(lines[0])
            return f"[{record['level']}] {record['event']}"
        return lines[0]

    return wait_until(f"a log line with {text!r}", find, timeout, every=1.0)


def report(drill: str, **facts: Any) -> None:
    print(f"\n[e2e] spend drill {drill}: " + ", ".join(f"{k} {v}" for k, v in facts.items()))


# --- (a) --------------------------------------------------------------------------------------
def test_a_lost_submit_reply_is_reconciled_within_the_try(airflow_deployment, e2e_video_server):
    server, api_key = e2e_video_server
    before, began = jobs(server), time.monotonic()
    server.set_faults([f"{POST_EDIT} reset;times=1"])
    try:
        run_id = airflow_deployment.trigger_dag(EXAMPLE, conf={"prompt": prompt("a")})
        state = airflow_deployment.wait_for_run(EXAMPLE, run_id, timeout=240)
    finally:
        server.set_faults([])
    tis = {t["task_id"]: t for t in airflow_deployment.task_instances(EXAMPLE, run_id)}
    assert state == "success", (tis, airflow_deployment.log_tails())
    assert jobs(server) == before + 1  # the job the lost reply was for, and no other
    assert tis["edit"]["try_number"] == 1  # reconciled within the try, no retry spent
    video_id = airflow_deployment.xcom(EXAMPLE, run_id, "edit", key="video_id")
    log = airflow_deployment.task_log(EXAMPLE, run_id, "edit", try_number=1)
    assert "the submit failed after the request may have reached the backend" in log, log
    assert f"adopting video job {video_id}" in log, log
    assert api_key not in airflow_deployment.logs_text()
    report(
        "a (reply lost)",
        jobs=jobs(server) - before,
        run=state,
        tries=1,
        seconds=f"{time.monotonic() - began:.0f}",
    )


# --- (b) --------------------------------------------------------------------------------------
def test_b_a_worker_killed_after_the_backend_created_the_job_costs_one_job(drill_dags, e2e_video_server):
    deployment = drill_dags
    server, api_key = e2e_video_server
    before, began = jobs(server), time.monotonic()
    server.set_faults([f"{POST_EDIT} hold=30;times=1"])  # created, then the reply held back 30 s
    try:
        run_id = deployment.trigger_dag(RETRY_DAG, conf={"prompt": prompt("b")})
        wait_until("the backend created the job", lambda: jobs(server) == before + 1, timeout=120)
        ti = deployment.task_instance(RETRY_DAG, run_id, "edit")
        assert (ti["state"], ti["try_number"]) == ("running", 1), ti
        pid = wait_until("the task process", lambda: task_process(deployment, ti["id"]), timeout=10)
        os.kill(pid, signal.SIGKILL)  # no reply, no id stored: only the intent
        killed_at = time.monotonic()
        state = deployment.wait_for_run(RETRY_DAG, run_id, timeout=240)
    finally:
        server.set_faults([])
    ti = deployment.task_instance(RETRY_DAG, run_id, "edit")
    assert state == "success", (ti, deployment.log_tails())
    assert ti["try_number"] == 2, ti
    assert jobs(server) == before + 1  # the retry adopted the job the killed try paid for
    video_id = deployment.xcom(RETRY_DAG, run_id, "edit", key="video_id")
    log = deployment.task_log(RETRY_DAG, run_id, "edit", try_number=2)
    assert "an earlier try sent this request" in log, log
    assert f"adopting video job {video_id}, which that request created (the one match)" in log, log
    assert api_key not in deployment.logs_text()
    report(
        "b (worker SIGKILLed)",
        jobs=jobs(server) - before,
        run=state,
        tries=ti["try_number"],
        seconds=f"{time.monotonic() - began:.0f}",
        after_kill=f"{time.monotonic() - killed_at:.0f}s",
    )


# --- (c) --------------------------------------------------------------------------------------
def deferred_job(deployment: Any, dag_id: str, drill: str) -> tuple[str, str]:
    run_id = deployment.trigger_dag(dag_id, conf={"prompt": prompt(drill)})
    deployment.wait_for_task_state(dag_id, run_id, "edit", {"deferred"}, timeout=120)
    video_id = str(deployment.xcom(dag_id, run_id, "edit", key="video_id"))
    # The trigger runs (a task marked failed before the triggerer picked its trigger up has no
    # on_kill to run): its first look writes the job's status line.
    log_line(deployment, f"video job {video_id}: ")
    return run_id, video_id


def test_c_marked_failed_while_the_job_runs_leaves_it_running(drill_dags, e2e_video_server):
    deployment = drill_dags
    server, _ = e2e_video_server
    before, deletes, began = jobs(server), requests(server, DELETE), time.monotonic()
    run_id, video_id = deferred_job(deployment, SLOW_POLL_DAG, "c1")
    # A longer job than the server's 20 s: a cold triggerer reads the task state in ~6 s.
    job = server.store.get(video_id)
    job.duration = 120.0
    assert time.time() < job.completed_at - 60
    mark_failed(deployment, SLOW_POLL_DAG, run_id, "edit")
    line = log_line(deployment, f"video job {video_id} {STILL_RUNNING}")
    assert requests(server, DELETE) == deletes  # nothing was sent to delete it
    assert video_id in server.store.jobs  # it runs on, and will be billed
    assert deployment.task_instance(SLOW_POLL_DAG, run_id, "edit")["state"] == "failed"
    assert deployment.wait_for_run(SLOW_POLL_DAG, run_id, timeout=60) == "failed"
    assert jobs(server) == before + 1
    report(
        "c1 (marked failed, job running)",
        jobs=jobs(server) - before,
        run="failed",
        tries=1,
        seconds=f"{time.monotonic() - began:.0f}",
        deletes=requests(server, DELETE) - deletes,
        line=repr(line),
    )


def test_c_marked_failed_once_the_job_finished_deletes_it(drill_dags, e2e_video_server):
    deployment = drill_dags
    server, _ = e2e_video_server
    before, deletes, began = jobs(server), requests(server, DELETE), time.monotonic()
    run_id, video_id = deferred_job(deployment, SLOW_POLL_DAG, "c2")
    job = server.store.get(video_id)
    # The trigger looked once (in progress) and sleeps; the job finishes meanwhile.
    wait_until("the job finished", lambda: time.time() > job.completed_at + 1, timeout=60)
    assert deployment.task_instance(SLOW_POLL_DAG, run_id, "edit")["state"] == "deferred"
    mark_failed(deployment, SLOW_POLL_DAG, run_id, "edit")
    line = log_line(deployment, f"deleted finished video job {video_id} (completed)")
    assert video_id not in server.store.jobs
    assert requests(server, DELETE) == deletes + 1  # one DELETE
    assert deployment.wait_for_run(SLOW_POLL_DAG, run_id, timeout=60) == "failed"
    assert jobs(server) == before + 1
    report(
        "c2 (marked failed, job finished)",
        jobs=jobs(server) - before,
        run="failed",
        tries=1,
        seconds=f"{time.monotonic() - began:.0f}",
        deletes=requests(server, DELETE) - deletes,
        line=repr(line),
    )


# --- (d) --------------------------------------------------------------------------------------
def test_d_a_cleared_deferred_task_resumes_the_same_job(airflow_deployment, e2e_video_server):
    server, _ = e2e_video_server
    before, deletes, began = jobs(server), requests(server, DELETE), time.monotonic()
    run_id, video_id = deferred_job(airflow_deployment, EXAMPLE, "d")
    clear(airflow_deployment, EXAMPLE, run_id, "edit")
    line = log_line(airflow_deployment, f"not deleting video job {video_id}: the task instance is")
    state = airflow_deployment.wait_for_run(EXAMPLE, run_id, timeout=240)
    tis = {t["task_id"]: t for t in airflow_deployment.task_instances(EXAMPLE, run_id)}
    assert state == "success", (tis, airflow_deployment.log_tails())
    assert tis["edit"]["try_number"] == 2
    assert jobs(server) == before + 1  # the new try resumed the job: not one more paid
    assert airflow_deployment.xcom(EXAMPLE, run_id, "edit", key="video_id") == video_id
    assert airflow_deployment.xcom(EXAMPLE, run_id, "edit")["id"] == video_id
    assert requests(server, DELETE) == deletes  # never deleted
    assert video_id in server.store.jobs
    report(
        "d (cleared while deferred)",
        jobs=jobs(server) - before,
        run=state,
        tries=tis["edit"]["try_number"],
        seconds=f"{time.monotonic() - began:.0f}",
        deletes=requests(server, DELETE) - deletes,
        line=repr(line),
    )
