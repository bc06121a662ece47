"""N VideoJobTriggers on one event loop, as a triggerer runs them, against the local server.

    python benchmarks/triggers/bench_triggers.py --n 1000 --poll-interval 2 --json-out r.json
    python benchmarks/triggers/bench_triggers.py --n 1000 --poll-interval 2 --naive

Phases:

1. The local Videos server starts in a child process (``subprocess=True``, no access log,
   ``openai-poll-after-ms: 500`` so the trigger's own interval governs).
2. Before that, the N jobs are written into the server's data directory, in the form its
   ``JobStore`` persists them, all with ``created_at`` = the moment the triggers will start
   (see :func:`write_jobs`). So job creation costs this process no CPU, RSS or connection during
   the measurement, and every job finishes exactly ``job_seconds`` after the triggers start.
3. At that moment: baseline RSS, server stats reset, then N triggers start at once, each in its own task
   consuming ``trigger.run()`` like the triggerer's ``run_trigger``. A watchdog task sleeps
   10 ms in a loop and records how late it wakes (event-loop lag). A sampler records VmRSS
   every 0.25 s. The run ends when every trigger yielded its event (or ``--max-seconds``).

Counting:

- TCP connections: ``httpcore.AutoBackend.connect_tcp`` (through which every httpx async
  connection is made) is wrapped to count calls: exact, and it counts only this process's
  trigger traffic (job creation happens in another process).
- Polls: the server's request counter for ``GET /v1/videos/{video_id}`` (reset before the
  triggers start), cross-checked with a client-side count.
- CPU: ``getrusage(RUSAGE_SELF)`` user+sys over the trigger phase (all threads); the server's
  CPU from ``psutil`` on its process.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

API_KEY = "sk-bench"
CONN_ENV = "AIRFLOW_CONN_OPENAI_VIDEOS_DEFAULT"
POLL_ROUTE = "GET /v1/videos/{video_id}"
LIST_ROUTE = "GET /v1/videos"


# ------------------------------------------------------------------------------------------------
# Job creation: the server's persisted form, loaded by the server at start
# ------------------------------------------------------------------------------------------------
def write_jobs(data_dir: Path, n: int, created_at: float, job_seconds: float) -> list[tuple[str, float]]:
    """Write ``n`` jobs as the server's ``JobStore`` persists them (``jobs/<id>.json``).

    All are created at ``created_at`` (a moment after the server is up; before it they read
    ``queued``), so they all finish at ``created_at + job_seconds``. ``rendered: true`` keeps the
    server from rendering a video for each job when it first reports it completed (one PyAV render
    per job, in the server's single render thread), which would load the server, not the trigger.
    """
    from dataclasses import asdict

    from airflow_video_edit.server.records import CREATE, Job, new_id

    jobs_dir = data_dir / "jobs"
    jobs_dir.mkdir(parents=True, exist_ok=True)
    jobs = []
    for seq in range(1, n + 1):
        job = Job(
            id=new_id("video"),
            kind=CREATE,
            model="sora-2",
            prompt=f"benchmark job {seq}",
            size="720x1280",
            seconds="4",
            created_at=created_at,
            duration=job_seconds,
            rendered=True,
            seq=seq,
        )
        (jobs_dir / f"{job.id}.json").write_text(json.dumps(asdict(job)))
        jobs.append((job.id, created_at))
    return jobs


# ------------------------------------------------------------------------------------------------
# Measurement helpers
# ------------------------------------------------------------------------------------------------
def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Counters:
    connects = 0
    client_polls = 0  # client requests: retrieves and (coalesced) list pages
    statuses = 0  # job statuses the triggers' waits received


def count_connections() -> None:
    """Wrap httpcore's async network backend so every TCP connect is counted."""
    from httpcore._backends.auto import AutoBackend

    original = AutoBackend.connect_tcp

    async def connect_tcp(self: Any, *args: Any, **kwargs: Any) -> Any:
        Counters.connects += 1
        return await original(self, *args, **kwargs)

    AutoBackend.connect_tcp = connect_tcp  # type: ignore[method-assign]


def count_polls() -> None:
    """Client-side request count (a cross-check of the server's count) and statuses received."""
    from airflow_video_edit.clients import AsyncVideosClient
    from airflow_video_edit.triggers import VideoJobTrigger

    original = AsyncVideosClient.request

    async def request(self: Any, call: Any) -> Any:
        Counters.client_polls += 1
        return await original(self, call)

    AsyncVideosClient.request = request  # type: ignore[method-assign]
    poll = VideoJobTrigger._poll

    async def counted_poll(self: Any) -> Any:
        result = await poll(self)
        Counters.statuses += 1
        return result

    VideoJobTrigger._poll = counted_poll  # type: ignore[method-assign]


# ------------------------------------------------------------------------------------------------
# The naive baseline: the same trigger, but a new httpx.AsyncClient for every poll
# ------------------------------------------------------------------------------------------------
def naive_trigger_class() -> type:
    from airflow_video_edit.calls import poll_video
    from airflow_video_edit.clients import AsyncVideosClient
    from airflow_video_edit.hooks import OpenAIVideosHook
    from airflow_video_edit.models import Video
    from airflow_video_edit.triggers import VideoJobTrigger

    class NaiveVideoJobTrigger(VideoJobTrigger):
        """``VideoJobTrigger`` with ``AsyncVideosClient(settings)`` (a new httpx.AsyncClient,
        pool and SSL context) created and closed around every poll instead of the shared client."""

        async def _poll(self) -> tuple[Video, float | None]:
            settings = await OpenAIVideosHook(self.conn_id).aget_settings()
            async with AsyncVideosClient(settings) as client:
                return await client.request(poll_video(self.video_id))

    return NaiveVideoJobTrigger


# ------------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------------
async def run_triggers(
    jobs: list[tuple[str, float]], args: argparse.Namespace, server: Any
) -> dict[str, Any]:
    import psutil

    from airflow_video_edit.triggers import VideoJobTrigger

    cls: type = naive_trigger_class() if args.naive else VideoJobTrigger
    n = len(jobs)
    lags: list[float] = []
    rss_samples: list[tuple[float, int, bool]] = []  # (t, rss, plateau: all waiting)
    cpu_samples: list[tuple[float, float, int]] = []  # (t, cpu, statuses) while all wait
    event_at: list[float | None] = [None] * n
    payloads: list[dict[str, Any] | None] = [None] * n
    done = 0
    stop = asyncio.Event()

    async def watchdog() -> None:
        while not stop.is_set():
            before = time.perf_counter()
            await asyncio.sleep(0.010)
            lags.append(time.perf_counter() - before - 0.010)

    async def sampler() -> None:
        while not stop.is_set():
            plateau = Counters.statuses >= n and done == 0
            rss_samples.append((time.time(), rss_kib(), plateau))
            if plateau:
                cpu_samples.append((time.time(), cpu_seconds(), Counters.statuses))
            await asyncio.sleep(0.25)

    async def run_one(i: int, trigger: Any) -> None:
        nonlocal done
        async for event in trigger.run():
            event_at[i] = time.time()
            payloads[i] = event.payload
        done += 1
        if done == n:
            stop.set()

    server_proc = psutil.Process(server.process.pid)
    gc.collect()
    rss_before = rss_kib()
    server.reset_stats()
    Counters.connects = Counters.client_polls = Counters.statuses = 0
    server_cpu0 = sum(server_proc.cpu_times()[:2])
    cpu0 = cpu_seconds()
    t0 = time.time()
    deadline = t0 + 300
    helpers = [asyncio.create_task(watchdog()), asyncio.create_task(sampler())]
    tasks = [
        asyncio.create_task(run_one(i, cls(video_id, poll_interval=args.poll_interval, deadline=deadline)))
        for i, (video_id, _) in enumerate(jobs)
    ]
    started_all = time.time() - t0
    spy = None
    if args.py_spy:
        spy = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "py-spy"),
                "record",
                "-p",
                str(os.getpid()),
                "-r",
                "100",
                "-f",
                "raw",
                "-o",
                args.py_spy,
                "--nonblocking",
                "-d",
                str(int(args.max_seconds)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    timed_out = False
    try:
        await asyncio.wait_for(stop.wait(), timeout=args.max_seconds)
    except asyncio.TimeoutError:
        timed_out = True
    wall = time.time() - t0
    cpu = cpu_seconds() - cpu0
    server_cpu = sum(server_proc.cpu_times()[:2]) - server_cpu0
    stop.set()
    for task in tasks + helpers:
        task.cancel()
    await asyncio.gather(*tasks, *helpers, return_exceptions=True)
    stats = await asyncio.to_thread(server.stats)
    if spy is not None:
        spy.send_signal(2)  # SIGINT: py-spy writes the profile and exits
        await asyncio.to_thread(spy.wait, 30)

    lists = stats["requests"].get(LIST_ROUTE, {})
    requests_total = sum(lists.values()) + sum(stats["requests"].get(POLL_ROUTE, {}).values())
    waited = [min(wall, jobs[i][1] + args.job_seconds - t0) for i in range(n)]  # seconds waiting
    polls = stats["requests"].get(POLL_ROUTE, {})
    polls_ok = polls.get("200", 0)
    polls_total = sum(polls.values())
    finished = [i for i in range(n) if event_at[i] is not None]
    kinds: dict[str, int] = {}
    for payload in payloads:
        if payload is not None:
            kinds[payload["event"]] = kinds.get(payload["event"], 0) + 1
    to_event = [event_at[i] - t0 for i in finished]  # type: ignore[operator]
    late = [event_at[i] - (jobs[i][1] + args.job_seconds) for i in finished]  # type: ignore[operator]
    remaining_job = [jobs[i][1] + args.job_seconds - t0 for i in range(n)]
    plateau = [rss for _, rss, flag in rss_samples if flag]
    rss_plateau = max(plateau) if plateau else None
    return {
        "mode": "naive" if args.naive else "pooled",
        "status_checks": args.status_checks,
        "backend_lists": not args.no_list,
        "n": n,
        "poll_interval": args.poll_interval,
        "job_seconds": args.job_seconds,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus": os.cpu_count(),
        "timed_out": timed_out,
        "max_seconds": args.max_seconds,
        "task_creation_s": round(started_all, 3),
        "events": len(finished),
        "event_kinds": kinds,
        "wall_s": round(wall, 2),
        "time_to_event_max_s": round(max(to_event), 2) if to_event else None,
        "time_to_event_p50_s": round(statistics.median(to_event), 2) if to_event else None,
        "ideal_time_to_event_max_s": round(max(remaining_job), 2),
        "ideal_time_to_event_min_s": round(min(remaining_job), 2),
        "lateness_after_job_end_max_s": round(max(late), 2) if late else None,
        "loop_lag_p50_ms": round(percentile(lags, 0.50) * 1000, 2),
        "loop_lag_p99_ms": round(percentile(lags, 0.99) * 1000, 2),
        "loop_lag_max_ms": round(max(lags) * 1000, 1) if lags else None,
        "tcp_connections": Counters.connects,
        "polls": polls_total,
        "polls_ok": polls_ok,
        "polls_by_status": polls,
        "client_polls": Counters.client_polls,
        "polls_per_s": round(polls_total / wall, 1),
        "list_pages": sum(lists.values()),
        "list_pages_by_status": lists,
        "requests": requests_total,
        "requests_per_s": round(requests_total / wall, 1),
        # requests per second per 100 jobs waiting, averaged over the waits (job-seconds)
        "requests_per_s_per_100_waiting": round(requests_total / sum(waited) * 100, 3),
        "statuses": Counters.statuses,
        "cpu_ms_per_status": round(cpu * 1000 / Counters.statuses, 4) if Counters.statuses else None,
        "cpu_s": round(cpu, 2),
        # The same while every job waits (all started, none finished): the steady state.
        "waiting_cpu_util": round(
            (cpu_samples[-1][1] - cpu_samples[0][1]) / (cpu_samples[-1][0] - cpu_samples[0][0]), 3
        )
        if len(cpu_samples) > 1
        else None,
        "waiting_cpu_ms_per_status": round(
            (cpu_samples[-1][1] - cpu_samples[0][1]) * 1000 / (cpu_samples[-1][2] - cpu_samples[0][2]), 4
        )
        if len(cpu_samples) > 1 and cpu_samples[-1][2] > cpu_samples[0][2]
        else None,
        "waiting_seconds_sampled": round(cpu_samples[-1][0] - cpu_samples[0][0], 1) if cpu_samples else 0,
        "cpu_ms_per_poll": round(cpu * 1000 / polls_total, 3) if polls_total else None,
        "cpu_util": round(cpu / wall, 3),
        "server_cpu_s": round(server_cpu, 2),
        "server_cpu_util": round(server_cpu / wall, 3),
        "rss_before_kib": rss_before,
        "rss_plateau_kib": rss_plateau,
        "plateau_samples": len(plateau),
        "rss_peak_kib": max(rss for _, rss, _ in rss_samples) if rss_samples else None,
        "rss_per_trigger_kib": round((rss_plateau - rss_before) / n, 2) if rss_plateau else None,
        "rss_peak_per_trigger_kib": round((max(r for _, r, _ in rss_samples) - rss_before) / n, 2)
        if rss_samples
        else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--poll-interval", type=float, default=2.0)
    parser.add_argument("--job-seconds", type=float, default=30.0)
    parser.add_argument("--poll-after-ms", type=int, default=500)
    parser.add_argument("--naive", action="store_true", help="a new httpx.AsyncClient per poll")
    parser.add_argument("--max-seconds", type=float, default=150.0, help="cap on the trigger phase")
    parser.add_argument("--json-out")
    parser.add_argument(
        "--shard-size", type=int, help="connections per httpcore pool (64: one pool, as before sharding)"
    )
    parser.add_argument("--pool-size", type=int, help="override the settings' max_connections")
    parser.add_argument("--py-spy", help="record a py-spy profile (raw) of the trigger phase here")
    parser.add_argument(
        "--status-checks",
        default="auto",
        help="the connection extra status_checks: auto (coalesced list pages), list, per-id; "
        "several, comma-separated, run one after the other in this run (e.g. auto,per-id)",
    )
    parser.add_argument(
        "--no-list", action="store_true", help="a backend without list: GET /v1/videos answers 405"
    )
    parser.add_argument(
        "--start-delay",
        type=float,
        default=0.0,
        help="seconds from writing the jobs to starting the "
        "triggers (default: 10 + 2 per 1,000 jobs, time for the server to start and load them)",
    )
    args = parser.parse_args()

    from airflow_video_edit.server import LocalVideosServer
    from airflow_video_edit.server.defaults import KEEP_ALIVE_SECONDS

    count_connections()
    count_polls()
    if args.shard_size:
        from airflow_video_edit.transport import ShardedTransport

        ShardedTransport.SHARD_SIZE = args.shard_size
    if args.pool_size:
        from dataclasses import replace

        from airflow_video_edit import clients

        shared = clients.shared_async_client
        clients.shared_async_client = lambda settings: shared(
            replace(settings, max_connections=args.pool_size)
        )
    import airflow_video_edit.triggers  # noqa: F401 - import cost outside the measurement

    results = []
    for mode in args.status_checks.split(","):
        args.status_checks = mode
        results.append(run_mode(args, LocalVideosServer, KEEP_ALIVE_SECONDS))
    text = json.dumps(results[0] if len(results) == 1 else results, indent=2)
    print(text)
    if args.json_out:
        Path(args.json_out).write_text(text + "\n")


def run_mode(args: argparse.Namespace, server_class: Any, keep_alive: float) -> dict[str, Any]:
    """One measured run with the connection's ``status_checks`` = ``args.status_checks``."""
    data_dir = Path(tempfile.mkdtemp(prefix="bench-triggers-"))
    start_at = time.time() + (args.start_delay or 10.0 + 2 * args.n / 1000)
    jobs = write_jobs(data_dir, args.n, start_at, args.job_seconds)
    server = server_class(
        data_dir=data_dir,
        api_key=API_KEY,
        job_seconds=args.job_seconds,
        poll_after_ms=args.poll_after_ms,
        subprocess=True,
        access_log=False,
        faults=["GET /v1/videos status=405"] if args.no_list else None,
    )
    server.start()  # keeps idle connections 130 s, longer than any poll interval here
    try:
        os.environ[CONN_ENV] = json.dumps(
            {
                "conn_type": "openai_videos",
                "host": server.url,
                "password": API_KEY,
                "extra": {"status_checks": args.status_checks},
            }
        )
        loaded = server.stats()["jobs_stored"]
        if loaded != args.n:
            raise SystemExit(f"the server loaded {loaded} jobs, not {args.n}")
        late = time.time() - start_at
        if late > 0:
            raise SystemExit(f"the server took {late:.1f}s too long to start: raise --start-delay")
        load_before = Path("/proc/loadavg").read_text().split()[:3]
        time.sleep(start_at - time.time())
        result = asyncio.run(run_triggers(jobs, args, server))
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    result["server_keep_alive_s"] = keep_alive
    result["pool_size"] = args.pool_size
    result["shard_size"] = args.shard_size
    result["loadavg_before"] = load_before
    result["loadavg_after"] = Path("/proc/loadavg").read_text().split()[:3]
    return result


if __name__ == "__main__":
    main()
