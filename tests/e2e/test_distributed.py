"""The provider on a distributed Airflow: PostgreSQL, the CeleryExecutor with two workers, two triggerers.

The ``distributed_deployment`` fixture (``tests/e2e/conftest.py``) runs api-server, scheduler,
dag-processor, two Celery workers (``worker-1``, ``worker-2``, concurrency 2) and two triggerers
(``triggerer-1``, ``triggerer-2``, capacity 12) on a PostgreSQL and a Redis of their own; the
connection to the local Videos server is stored in the database. Each drill counts the paid jobs
with the server's ``jobs_created``, and reads from the triggerers' own per-task log files
(``attempt=N.log.trigger.<triggerer job id>.log``) where each trigger ran and how many events it
fired:

1. ``video_edit_mapped`` with 20 mapped edits: all succeed, 20 jobs, triggers on both triggerers;
2. a Celery worker SIGKILLed between submit and defer (the reply to the first status check held):
   the retry, on either worker, resumes the same job: 1 job;
3. a triggerer SIGKILLed while it holds deferred triggers: the other takes them over, one event
   per task, nothing deleted;
4. a triggerer SIGSTOPped past ``triggerer_health_check_threshold``, then SIGCONTed: its triggers
   move, Airflow 3.3 runs ``on_kill`` on the old copies (apache/airflow#73454), which delete
   nothing (the task is still deferred); one event per task;
5. the API key is in no table of the database (Fernet tokens decrypted with the deployment's key:
   trigger kwargs, next_kwargs, ...; XCom, rendered fields, the audit log) but the connection's
   own encrypted password, and in no log file.

Run: ``.venv/bin/pytest -m e2e_distributed tests/e2e`` (needs Debian's postgresql and
redis-server, installed by the harness with apt as root where missing).
"""

from __future__ import annotations

import re
import signal
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.e2e_distributed]

T = TypeVar("T")
MAPPED = "video_edit_mapped"
RETRY_DAG = "distributed_drill_retry"
FANOUT_DAG = "distributed_drill_fanout"
FANOUT = 6
SOURCE_CLIP = Path(__file__).resolve().parents[2] / "dags" / "data" / "source_clip.mp4"
POST_EDIT = "POST /v1/videos/edits"
STATUS = "GET /v1/videos/{video_id}"
DELETE = "DELETE /v1/videos/{video_id}"
ON_KILL_KEPT = "not deleting video job {}: the task instance is deferred, not failed"
FERNET_TOKEN = re.compile(r"gAAAAA[A-Za-z0-9_\-]+=*")

DRILL_DAGS = textwrap.dedent(
    f'''
    """Distributed drills: an edit that retries within seconds; edits fanned out over triggerers."""
    from datetime import datetime, timedelta

    from airflow.sdk import DAG, Param, task

    from airflow_video_edit.operators import VideoEditOperator

    PARAMS = {{"prompt": Param("distributed drill", type="string")}}

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

    with DAG(dag_id="{FANOUT_DAG}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False,
             params=PARAMS):

        @task
        def sources():
            return [{str(SOURCE_CLIP)!r}] * {FANOUT}

        VideoEditOperator.partial(
            task_id="edit",
            prompt="{{{{ params.prompt }}}}",
            poll_interval=2,
            deferrable=True,
        ).expand(video=sources())
    '''
)


# --- helpers ----------------------------------------------------------------------------------
def wait_until(what: str, check: Callable[[], T | None], timeout: float, every: float = 0.5) -> T:
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
    return f"distributed drill {drill} {uuid.uuid4().hex[:8]}: add a warm sunset grade"


DRILL_REPORT = Path(__file__).resolve().parents[2] / "out" / "e2e" / "distributed-drills.txt"


def report(drill: str, **facts: Any) -> None:
    """What a drill measured: printed (``-s``) and appended to ``out/e2e/distributed-drills.txt``."""
    line = f"[e2e] distributed drill {drill}: " + ", ".join(f"{k} {v}" for k, v in facts.items())
    print("\n" + line)
    DRILL_REPORT.parent.mkdir(parents=True, exist_ok=True)
    with DRILL_REPORT.open("a") as out:
        out.write(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {line}\n")


def edits(dep: Any, dag_id: str, run_id: str) -> dict[int, dict[str, Any]]:
    return {t["map_index"]: t for t in dep.task_instances(dag_id, run_id) if t["task_id"] == "edit"}


def placement(logs: dict[tuple[str, int, int], dict[str, dict[str, int]]]) -> dict[int, dict[str, Any]]:
    """map index -> {triggerer name: {"starts", "events"}} (the first try's triggers)."""
    return {m: where for (_, m, tries), where in logs.items() if tries == 1}


def events(where: dict[str, dict[str, int]]) -> int:
    return sum(v["events"] for v in where.values())


def on(where: dict[str, dict[str, int]], triggerer: str) -> bool:
    return where.get(triggerer, {}).get("starts", 0) > 0


def new_jobs(server: Any, known: set[str]) -> list[Any]:
    return [job for video_id, job in list(server.store.jobs.items()) if video_id not in known]


@pytest.fixture(scope="module")
def dep(distributed_deployment: Any) -> Any:
    distributed_deployment.add_dag_file("distributed_drill_dags.py", DRILL_DAGS, timeout=120)
    return distributed_deployment


def fan_out(dep: Any, server: Any, drill: str, job_seconds: float) -> tuple[str, dict[int, str], int]:
    """Run the fan-out DAG until its FANOUT triggers all run; its jobs last ``job_seconds``.

    Returns the run id, each map index's video id and the DELETE count before."""
    known, deletes = set(server.store.jobs), requests(server, DELETE)
    run_id = dep.trigger_dag(FANOUT_DAG, conf={"prompt": prompt(drill)})

    def longer() -> bool:  # each job as it is created (20 s by default) lasts job_seconds
        for job in new_jobs(server, known):
            job.duration = job_seconds
        return len(new_jobs(server, known)) >= FANOUT

    wait_until("the fan-out's jobs created", longer, timeout=300, every=0.2)
    for job in new_jobs(server, known):
        job.duration = job_seconds

    def all_started() -> dict[int, Any] | None:
        found = placement(dep.trigger_logs(FANOUT_DAG, run_id))
        started = {m: w for m, w in found.items() if any(v["starts"] for v in w.values())}
        return started if len(started) == FANOUT else None

    wait_until("every fan-out trigger running", all_started, timeout=300)
    tis = edits(dep, FANOUT_DAG, run_id)
    assert {t["state"] for t in tis.values()} == {"deferred"}, tis
    video_ids = {m: str(dep.xcom(FANOUT_DAG, run_id, "edit", key="video_id", map_index=m)) for m in tis}
    return run_id, video_ids, deletes


def busiest(where_by_task: dict[int, dict[str, Any]], triggerers: tuple[str, ...]) -> str:
    return max(triggerers, key=lambda name: sum(on(w, name) for w in where_by_task.values()))


# --- 1. -----------------------------------------------------------------------------------------
def test_mapped_20_edits_spread_over_both_triggerers(dep, e2e_video_server):
    server, _ = e2e_video_server
    before, deletes, began = jobs(server), requests(server, DELETE), time.monotonic()
    run_id = dep.trigger_dag(MAPPED, conf={"copies": 20})
    state = dep.wait_for_run(MAPPED, run_id, timeout=900)
    tis = edits(dep, MAPPED, run_id)
    assert state == "success", ({m: t["state"] for m, t in tis.items()}, dep.log_tails())
    assert sorted(tis) == list(range(20))
    assert {(t["state"], t["try_number"]) for t in tis.values()} == {("success", 1)}
    assert jobs(server) == before + 20  # one paid job per edit, not one more
    video_ids = {str(dep.xcom(MAPPED, run_id, "edit", key="video_id", map_index=m)) for m in tis}
    assert len(video_ids) == 20
    assert requests(server, DELETE) == deletes
    where = placement(dep.trigger_logs(MAPPED, run_id))
    assert sorted(where) == list(range(20)), where
    assert all(events(w) >= 1 for w in where.values()), where  # each trigger fired
    resumed = {m: dep.resumes(MAPPED, run_id, "edit", m) for m in tis}
    assert resumed == dict.fromkeys(range(20), 1)  # each task got one event
    # Fired on two triggerers: a healthy trigger moved when heartbeats lagged (reported, not failed).
    twice = sorted(m for m, w in where.items() if events(w) > 1)
    count = {name: sum(on(w, name) for w in where.values()) for name in dep.TRIGGERERS}
    assert all(count.values()), f"triggers ran on one triggerer only: {count}"
    workers = sorted({t["hostname"] for t in tis.values()})
    assert set(workers) <= set(dep.WORKERS), workers
    report(
        "1 (20 mapped edits)",
        jobs=jobs(server) - before,
        run=state,
        tries=1,
        events_to_tasks=sum(resumed.values()),
        trigger_firings=sum(events(w) for w in where.values()),
        fired_twice=twice,
        triggers=count,
        workers=workers,
        deletes=requests(server, DELETE) - deletes,
        seconds=f"{time.monotonic() - began:.0f}",
    )


# --- 2. -----------------------------------------------------------------------------------------
def test_worker_killed_between_submit_and_defer_resumes_the_job(dep, e2e_video_server):
    server, api_key = e2e_video_server
    before, began, known = jobs(server), time.monotonic(), set(server.store.jobs)
    # The job is created and its id stored; the first status check is answered 120 s late.
    server.set_faults([f"{STATUS} hold=120;times=1"])
    rule = server.app.faults.rules[0]
    try:
        run_id = dep.trigger_dag(RETRY_DAG, conf={"prompt": prompt("2")})
        wait_until("the first status check held", lambda: rule.applied == 1, timeout=300, every=0.2)
        assert jobs(server) == before + 1
        # 90 s, not 20: still running when the retry comes (after the 30 s heartbeat timeout),
        # so that the retry reconnects and defers rather than finds it done.
        (job,) = new_jobs(server, known)
        job.duration = 90.0
        ti = dep.task_instance(RETRY_DAG, run_id, "edit")
        assert (ti["state"], ti["try_number"]) == ("running", 1), ti
        killed = ti["hostname"]
        assert killed in dep.WORKERS, ti
        dep.kill(killed)  # the Celery worker with its pool, the task supervisor and the task
        killed_at = time.monotonic()
        dep.restart(killed)  # the retry may land on either worker
        state = dep.wait_for_run(RETRY_DAG, run_id, timeout=400)
    finally:
        server.set_faults([])
    ti = dep.task_instance(RETRY_DAG, run_id, "edit")
    assert state == "success", (ti, dep.log_tails())
    assert ti["try_number"] == 2, ti
    assert jobs(server) == before + 1  # the retry resumed the job the killed try submitted
    video_id = str(dep.xcom(RETRY_DAG, run_id, "edit", key="video_id"))
    log = dep.task_log(RETRY_DAG, run_id, "edit", try_number=2)
    assert video_id == job.id
    assert "Reconnecting to existing job" in log, log
    assert video_id in log, log
    assert "submitted video edit job" not in log, log
    where = dep.trigger_logs(RETRY_DAG, run_id)
    assert sum(events(w) for w in where.values()) == 1, where
    assert dep.resumes(RETRY_DAG, run_id, "edit", try_number=2) == 1
    assert dep.resumes(RETRY_DAG, run_id, "edit", try_number=1) == 0  # killed before it deferred
    assert api_key not in dep.logs_text()
    report(
        "2 (Celery worker SIGKILLed between submit and defer)",
        jobs=jobs(server) - before,
        run=state,
        tries=ti["try_number"],
        killed=killed,
        retry_on=ti["hostname"],
        triggers={k[2]: list(v) for k, v in where.items()},
        seconds=f"{time.monotonic() - began:.0f}",
        after_kill=f"{time.monotonic() - killed_at:.0f}s",
    )


# --- 3. -----------------------------------------------------------------------------------------
def test_triggerer_killed_its_triggers_move_to_the_other(dep, e2e_video_server):
    server, _ = e2e_video_server
    before, began = jobs(server), time.monotonic()
    run_id, video_ids, deletes = fan_out(dep, server, "3", job_seconds=60)
    first = placement(dep.trigger_logs(FANOUT_DAG, run_id))
    killed = busiest(first, dep.TRIGGERERS)
    other = next(name for name in dep.TRIGGERERS if name != killed)
    held = sorted(m for m, w in first.items() if on(w, killed))
    assert held, first
    dep.kill(killed)
    killed_at = time.monotonic()
    state = dep.wait_for_run(FANOUT_DAG, run_id, timeout=400)
    tis = edits(dep, FANOUT_DAG, run_id)
    assert state == "success", ({m: t["state"] for m, t in tis.items()}, dep.log_tails())
    assert {(t["state"], t["try_number"]) for t in tis.values()} == {("success", 1)}
    where = placement(dep.trigger_logs(FANOUT_DAG, run_id))
    for m in held:  # taken over, and fired there (the killed one fired nothing)
        assert on(where[m], other), (m, where[m])
        assert where[m][killed]["events"] == 0, (m, where[m])
    # Every trigger fired; a trigger moved again while both triggerers lived (heartbeats lagging on
    # busy cores) may fire on both: the task still takes one event (resumed, below).
    assert all(events(w) >= 1 for w in where.values()), where
    resumed = {m: dep.resumes(FANOUT_DAG, run_id, "edit", m) for m in tis}
    assert resumed == dict.fromkeys(range(FANOUT), 1)  # one event for each task
    assert jobs(server) == before + FANOUT
    assert requests(server, DELETE) == deletes  # no on_kill deleted a job
    assert all(v in server.store.jobs for v in video_ids.values())
    dep.restart(killed)
    wait_until(f"{killed} back", lambda: killed in dep.alive_triggerers().values(), timeout=180)
    report(
        "3 (triggerer SIGKILLed)",
        jobs=jobs(server) - before,
        run=state,
        tries=1,
        killed=killed,
        moved=f"{len(held)} of {FANOUT} to {other}",
        events_to_tasks=sum(resumed.values()),
        trigger_firings={m: events(w) for m, w in where.items()},
        deletes=requests(server, DELETE) - deletes,
        seconds=f"{time.monotonic() - began:.0f}",
        after_kill=f"{time.monotonic() - killed_at:.0f}s",
    )


# --- 4. -----------------------------------------------------------------------------------------
def test_triggerer_stopped_past_the_threshold_then_continued(dep, e2e_video_server):
    server, _ = e2e_video_server
    before, began = jobs(server), time.monotonic()
    # Jobs outlast the stop: the stopped copies wake to jobs still running, and fire nothing.
    run_id, video_ids, deletes = fan_out(dep, server, "4", job_seconds=120)
    first = placement(dep.trigger_logs(FANOUT_DAG, run_id))
    stopped = busiest(first, dep.TRIGGERERS)
    other = next(name for name in dep.TRIGGERERS if name != stopped)
    held = sorted(m for m, w in first.items() if on(w, stopped))
    assert held, first
    dep.signal(stopped, signal.SIGSTOP)
    stopped_at = time.monotonic()
    try:

        def moved() -> bool:
            where = placement(dep.trigger_logs(FANOUT_DAG, run_id))
            return all(on(where[m], other) for m in held)

        wait_until(f"{stopped}'s triggers running on {other}", moved, timeout=240)
    finally:
        dep.signal(stopped, signal.SIGCONT)
    stopped_for = time.monotonic() - stopped_at

    def old_copies_killed() -> bool:
        logs = dep.trigger_logs(FANOUT_DAG, run_id)
        texts = {m: _trigger_log_text(dep, FANOUT_DAG, run_id, m, stopped) for m in held}
        return bool(logs) and all(ON_KILL_KEPT.format(video_ids[m]) in texts[m] for m in held)

    wait_until(f"on_kill of {stopped}'s old copies", old_copies_killed, timeout=120)
    state = dep.wait_for_run(FANOUT_DAG, run_id, timeout=400)
    tis = edits(dep, FANOUT_DAG, run_id)
    assert state == "success", ({m: t["state"] for m, t in tis.items()}, dep.log_tails())
    assert {(t["state"], t["try_number"]) for t in tis.values()} == {("success", 1)}
    where = placement(dep.trigger_logs(FANOUT_DAG, run_id))
    for m in held:
        assert where[m][stopped]["events"] == 0, (m, where[m])  # the old copy fired nothing
        assert where[m][other]["events"] == 1, (m, where[m])
    # Every trigger fired; a trigger moved again while both triggerers lived (heartbeats lagging on
    # busy cores) may fire on both: the task still takes one event (resumed, below).
    assert all(events(w) >= 1 for w in where.values()), where
    resumed = {m: dep.resumes(FANOUT_DAG, run_id, "edit", m) for m in tis}
    assert resumed == dict.fromkeys(range(FANOUT), 1)  # one event for each task
    assert jobs(server) == before + FANOUT
    assert requests(server, DELETE) == deletes  # on_kill ran, and deleted nothing
    assert all(v in server.store.jobs for v in video_ids.values())
    report(
        "4 (triggerer SIGSTOPped, then SIGCONTed)",
        jobs=jobs(server) - before,
        run=state,
        tries=1,
        stopped=f"{stopped} for {stopped_for:.0f}s",
        moved=f"{len(held)} of {FANOUT} to {other}",
        on_kill_kept=len(held),
        events_to_tasks=sum(resumed.values()),
        trigger_firings={m: events(w) for m, w in where.items()},
        deletes=requests(server, DELETE) - deletes,
        seconds=f"{time.monotonic() - began:.0f}",
    )


def _trigger_log_text(dep: Any, dag_id: str, run_id: str, map_index: int, triggerer: str) -> str:
    ids = [i for i, name in dep.triggerer_names().items() if name == triggerer]
    folder = dep.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / "task_id=edit"
    folder = folder / f"map_index={map_index}"
    return "".join(
        path.read_text(errors="replace")
        for i in ids
        for path in folder.glob(f"attempt=1.log.trigger.{i}.log")
    )


# --- 5. -----------------------------------------------------------------------------------------
def scan_database(dep: Any, api_key: str) -> dict[str, int]:
    """Every table's data (``pg_dump --data-only``): the key in plain text nowhere, and in no
    Fernet token decrypted with the deployment's key but the connection's password. Trigger
    kwargs (plain JSON or a Fernet token, as Airflow stored them) and next_kwargs read one by one.
    Returns what was seen."""
    from cryptography.fernet import Fernet, InvalidToken

    fernet = Fernet(dep.env["AIRFLOW__CORE__FERNET_KEY"].encode())
    pg = dep.services.postgres
    dump = pg.dump()
    assert api_key not in dump
    seen = {
        "tables": 0,
        "rows": 0,
        "tokens": 0,
        "connection tokens": 0,
        "trigger kwargs": 0,
        "next_kwargs": 0,
    }
    undecryptable: list[str] = []
    table = None
    for line in dump.splitlines():
        if line.startswith("COPY public."):
            table = line.split()[1].removeprefix("public.")
            seen["tables"] += 1
            continue
        if table is None or line == "\\.":
            table = None
            continue
        seen["rows"] += 1
        for token in FERNET_TOKEN.findall(line):
            try:
                plain = fernet.decrypt(token.encode()).decode(errors="replace")
            except InvalidToken:
                undecryptable.append(f"{table}: {token[:40]}...")
                continue
            seen["tokens"] += 1
            if table == "connection":
                seen["connection tokens"] += 1
                assert plain == api_key  # the one place it is, encrypted: the key opens it
                continue
            assert api_key not in plain, f"the API key in table {table}: {plain[:200]}"
    assert not undecryptable, undecryptable  # a token the key cannot open could hide the key
    for kwargs in pg.psql("SELECT kwargs FROM trigger").splitlines():
        text = kwargs if kwargs.startswith("{") else fernet.decrypt(kwargs.encode()).decode()
        assert "video_id" in text, text
        assert api_key not in text
        seen["trigger kwargs"] += 1
    for next_kwargs in pg.psql(
        "SELECT next_kwargs FROM task_instance WHERE next_kwargs IS NOT NULL"
    ).splitlines():
        assert api_key not in next_kwargs
        seen["next_kwargs"] += 1
    return seen


def test_the_api_key_is_in_no_table_and_no_log(dep, e2e_video_server):
    _, api_key = e2e_video_server
    key_rows = dep.services.postgres.psql(
        "SELECT count(*) FROM connection WHERE conn_id = 'openai_videos_default'"
    )
    assert key_rows.strip() == "1"
    assert not any(k.startswith("AIRFLOW_CONN_") for k in dep.env)  # the key is in the database only
    run_id = dep.trigger_dag(RETRY_DAG, conf={"prompt": prompt("5")})
    dep.wait_for_task_state(RETRY_DAG, run_id, "edit", {"deferred"}, timeout=300)
    wait_until(
        "the trigger running",
        lambda: any(on(w, n) for w in dep.trigger_logs(RETRY_DAG, run_id).values() for n in dep.TRIGGERERS),
        timeout=120,
    )
    deferred = scan_database(dep, api_key)  # trigger kwargs and next_kwargs exist now
    assert deferred["trigger kwargs"] >= 1, deferred  # the deferred task's trigger, read
    assert deferred["connection tokens"] == 1, deferred  # the password, encrypted: decryption works
    assert dep.wait_for_run(RETRY_DAG, run_id, timeout=300) == "success"
    after = scan_database(dep, api_key)  # XCom, rendered fields, the audit log, ... of every drill
    files = [p for p in dep.home.rglob("*") if p.is_file()]
    holding = [str(p) for p in files if api_key.encode() in p.read_bytes() and p.suffix != ".db"]
    assert not holding, holding
    logs = [p for p in files if ".log" in p.name]
    assert logs
    assert api_key not in dep.logs_text()
    report(
        "5 (API key in no table, no log)",
        deferred_scan=deferred,
        final_scan=after,
        files_scanned=len(files),
        log_files=len(logs),
    )
