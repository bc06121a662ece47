"""The example DAGs, each run with ``dag.test()`` against its own bundled local server.

Airflow reads its configuration once per interpreter, so each DAG runs in a child interpreter
(``conftest_dags.py``) with a clean environment: its own copy of a metadata DB migrated once per
session, its own output folder, and a connection pointing at its own in-process local server
(the server stays in this process, so its job store and request counts can be inspected).
The three DAG runs start together and run in parallel; each test then checks one of them.

``video_publish_on_asset`` is scheduled on an Asset: ``dag.test()`` makes a manual run, which has
no triggering asset events, so its task callable is called directly with the asset event that
the ``video_edit_then_publish`` run really produced (read back from that run's metadata DB).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest_dags import DAGS_FOLDER, RESULT_PREFIX
from test_server_support import probe_mp4

from airflow_video_edit.server import LocalVideosServer

pytestmark = pytest.mark.integration

KEY = "sk-dags-INTEGRATION-0a1b2c3d4e"
RUNNER = str(Path(__file__).with_name("conftest_dags.py"))
SOURCE_CLIP = str(Path(DAGS_FOLDER) / "data" / "source_clip.mp4")
DAG_TIMEOUT = 240


@pytest.fixture(scope="session")
def migrated_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An AIRFLOW_HOME whose metadata DB is migrated (once; each run gets a copy)."""
    home = tmp_path_factory.mktemp("airflow-home")
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env=base_env(home),
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert (home / "airflow.db").is_file()
    return home


def base_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "VIDEO_EDIT_"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=DAGS_FOLDER,
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__UNIT_TEST_MODE="False",
    )
    return env


@dataclass
class DagRun:
    """One example DAG's run: its child process, server, output folder and environment."""

    module: str
    server: LocalVideosServer
    out: Path
    env: dict[str, str]
    process: subprocess.Popen[str] | None = None
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0

    @property
    def result(self) -> dict[str, Any]:
        lines = [line for line in self.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
        assert self.process is not None
        why = f"{self.module}: exit {self.process.returncode}\n{self.stdout[-3000:]}\n{self.stderr[-3000:]}"
        assert self.process.returncode == 0, why
        assert lines, why
        return dict(json.loads(lines[-1][len(RESULT_PREFIX) :]))

    def xcom(self, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        for row in self.result["xcom"]:
            if (row["task_id"], row["key"], row["map_index"]) == (task_id, key, map_index):
                value = row["value"]
                return json.loads(value) if isinstance(value, str) and value[:1] in '{["' else value
        raise AssertionError(f"no XCom {task_id}/{key}[{map_index}]")


def call(env: dict[str, str], *args: str) -> Any:
    done = subprocess.run(
        [sys.executable, RUNNER, *args], env=env, capture_output=True, text=True, timeout=DAG_TIMEOUT
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    why = f"{args}: exit {done.returncode}\n{done.stderr[-3000:]}"
    assert done.returncode == 0, why
    assert lines, why
    return json.loads(lines[-1][len(RESULT_PREFIX) :])


@pytest.fixture(scope="module")
def runs(migrated_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, DagRun]]:
    """Start every example DAG's ``dag.test()`` at once; wait for all; keep the servers up."""
    modules = ["video_edit_then_publish", "video_edit_chain", "video_edit_mapped"]
    started: dict[str, DagRun] = {}
    try:
        for module in modules:
            server = LocalVideosServer(
                api_key=KEY, job_seconds=2.0, poll_after_ms=500, access_log=False
            ).start()
            root = tmp_path_factory.mktemp(module)
            home, out = root / "home", root / "out"
            home.mkdir()
            shutil.copy(migrated_home / "airflow.db", home / "airflow.db")
            env = base_env(home)
            env.update(
                AIRFLOW_CONN_OPENAI_VIDEOS_DEFAULT=json.dumps(
                    {"conn_type": "openai_videos", "host": server.url, "password": KEY}
                ),
                VIDEO_EDIT_OUTPUT_DIR=str(out),
                VIDEO_EDIT_POLL_INTERVAL="0.5",
            )
            run = started[module] = DagRun(module, server, out, env)
            run.seconds = time.monotonic()
            run.process = subprocess.Popen(
                [sys.executable, RUNNER, module],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        for run in started.values():
            assert run.process is not None
            run.stdout, run.stderr = run.process.communicate(timeout=DAG_TIMEOUT)
            run.seconds = time.monotonic() - run.seconds
        yield started
    finally:
        for run in started.values():
            if run.process is not None and run.process.poll() is None:
                run.process.kill()
                run.process.wait()
            run.server.stop()


def only_jobs(server: LocalVideosServer) -> list[Any]:
    return sorted(server.store.jobs.values(), key=lambda job: job.seq)


def test_video_edit_then_publish(runs: dict[str, DagRun]) -> None:
    run = runs["video_edit_then_publish"]
    result = run.result
    assert result["state"] == "success"
    assert {task: info["state"] for task, info in result["tasks"].items()} == {
        "edit[-1]": "success",
        "publish_video[-1]": "success",
    }
    stats = run.server.stats()
    assert stats["jobs_created"] == 1
    assert stats["requests"]["POST /v1/videos/edits"] == {"200": 1}
    (job,) = only_jobs(run.server)
    assert job.source_file is not None  # the clip was uploaded

    edited = run.xcom("edit")
    assert edited["id"] == job.id
    assert edited["status"] == "completed"
    folder = run.out / "published" / re.sub(r"[^A-Za-z0-9._-]+", "_", result["run_id"]).strip("_")
    video = folder / f"{job.id}.mp4"
    assert Path(run.xcom("publish_video")) == video
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [f"{job.id}.mp4", f"{job.id}_thumbnail.webp", "manifest.json"]
    )
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["source"] == SOURCE_CLIP
    assert manifest["prompt"] == "Add a warm sunset grade and the title 'Launch day'"
    assert manifest["video_id"] == job.id
    assert manifest["size"] == edited["size"] == job.size
    assert manifest["seconds"] == edited["seconds"] == job.seconds
    assert manifest["sha256"] == hashlib.sha256(video.read_bytes()).hexdigest()
    assert manifest["bytes"] == video.stat().st_size
    width, height, duration = probe_mp4(video)
    assert f"{width}x{height}" == job.size
    assert duration == pytest.approx(float(job.seconds), abs=0.25)
    assert (folder / f"{job.id}_thumbnail.webp").stat().st_size > 0

    (extra,) = result["asset_events"]  # the edited_video Asset got its event
    assert extra["video_id"] == job.id
    assert extra["size"] == job.size
    assert extra["seconds"] == job.seconds
    assert extra["path"] == str(run.out / "work" / "video_edit_then_publish" / result["run_id"] / video.name)
    assert Path(extra["path"]).read_bytes() == video.read_bytes()


def test_video_edit_chain(runs: dict[str, DagRun]) -> None:
    run = runs["video_edit_chain"]
    result = run.result
    assert result["state"] == "success"
    stats = run.server.stats()
    assert stats["jobs_created"] == 2
    assert stats["requests"]["POST /v1/videos/edits"] == {"200": 2}
    first, second = only_jobs(run.server)
    assert first.source_file is not None  # an upload
    assert first.source_id is None
    assert second.source_id == first.id  # the second edits the first's result by id
    assert second.source_file is None
    assert run.xcom("colour_grade")["id"] == first.id
    assert run.xcom("add_title")["id"] == second.id
    folder = run.out / "work" / "video_edit_chain" / result["run_id"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [f"{second.id}.mp4", f"{second.id}_thumbnail.webp", f"{second.id}_spritesheet.webp"]
    )
    width, height, _ = probe_mp4(folder / f"{second.id}.mp4")
    assert f"{width}x{height}" == second.size


def test_video_edit_mapped(runs: dict[str, DagRun]) -> None:
    run = runs["video_edit_mapped"]
    result = run.result
    assert result["state"] == "success"
    assert {task: info["state"] for task, info in result["tasks"].items() if task.startswith("edit")} == {
        "edit[0]": "success",
        "edit[1]": "success",
        "edit[2]": "success",
    }
    stats = run.server.stats()
    assert stats["jobs_created"] == 3
    jobs = only_jobs(run.server)
    assert all(job.source_file is not None for job in jobs)
    returned = {run.xcom("edit", map_index=i)["id"] for i in range(3)}
    assert returned == {job.id for job in jobs}
    folder = run.out / "work" / "video_edit_mapped" / result["run_id"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{job.id}.mp4" for job in jobs)
    for job in jobs:
        width, height, _ = probe_mp4(folder / f"{job.id}.mp4")
        assert f"{width}x{height}" == job.size


def test_video_publish_on_asset_catalogues_the_asset_event(runs: dict[str, DagRun], tmp_path: Path) -> None:
    """Its task callable, given the asset event the edit-then-publish run recorded."""
    producer = runs["video_edit_then_publish"]
    extras = producer.result["asset_events"]
    assert len(extras) == 1
    events_file = tmp_path / "events.json"
    events_file.write_text(json.dumps(extras))
    published = call(producer.env, "--call-catalogue", str(events_file))
    video_id = extras[0]["video_id"]
    folder = producer.out / "published" / "catalogue" / video_id
    assert published == [str(folder / f"{video_id}.mp4")]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["video_id"] == video_id
    assert manifest["source"] == extras[0]["path"]
    assert manifest["size"] == extras[0]["size"]
    assert manifest["sha256"] == hashlib.sha256(Path(extras[0]["path"]).read_bytes()).hexdigest()
    assert (folder / f"{video_id}_thumbnail.webp").is_file()


def test_the_dag_runs_stay_within_budget(runs: dict[str, DagRun]) -> None:
    for run in runs.values():
        assert run.seconds < DAG_TIMEOUT
