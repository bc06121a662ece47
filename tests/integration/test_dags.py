"""The example DAGs, each run with ``dag.test()`` against its own bundled local server.

Airflow reads its configuration once per interpreter, so the DAGs run in a child interpreter
(``conftest_dags.py``) with a clean environment: a metadata DB migrated once per session, a
temporary output folder, and a connection pointing at an in-process local server (the server
stays in this process, so its job store can be inspected; the runner reports its request and
job counts for each DAG's run alone).
The DAG runs go one after the other in one child interpreter (``dag.test()`` spends
about 20 s starting up the first time in a process); each test then checks one of them.

``video_publish_on_asset`` is scheduled on an Asset: ``dag.test()`` makes a manual run, which has
no triggering asset events, so its task callable is called directly with the asset event that
the ``video_edit_then_publish`` run really produced (read back from that run's metadata DB).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest_dags import DAGS_FOLDER, RESULT_PREFIX
from test_server_support import probe_mp4

from airflow_video_edit.operators.outputs import file_stem
from airflow_video_edit.server import LocalVideosServer

pytestmark = pytest.mark.integration

KEY = "sk-dags-INTEGRATION-0a1b2c3d4e"
RUNNER = str(Path(__file__).with_name("conftest_dags.py"))
SOURCE_CLIP = str(Path(DAGS_FOLDER) / "data" / "source_clip.mp4")
DAG_TIMEOUT = 240
# The price table of the plain runs' connection: every example job is estimated.
PRICES = {"currency": "USD", "models": {"sora-2": {"per_second": 0.10}}}


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


MODULES = (
    "video_edit_then_publish",
    "video_edit_chain",
    "video_edit_mapped",
    "video_generate_edit_extend",
    "video_daily_batch",
)
# The paid jobs each example DAG's run creates: one per edit, create or extension.
JOBS_PER_DAG = {
    "video_edit_then_publish": 1,
    "video_edit_chain": 2,
    "video_edit_mapped": 3,
    "video_generate_edit_extend": 3,
    "video_daily_batch": 2,
}


@dataclass
class DagRuns:
    """The example DAGs' runs: one child process, one server, one output folder."""

    server: LocalVideosServer
    out: Path
    env: dict[str, str]
    results: dict[str, dict[str, Any]]


@dataclass
class Run:
    """One DAG's run as the runner reported it, and the server's jobs it created."""

    result: dict[str, Any]
    jobs: list[Any]
    out: Path
    env: dict[str, str]

    @property
    def stats(self) -> dict[str, Any]:
        return dict(self.result["server_stats"])

    def xcom(self, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        for row in self.result["xcom"]:
            if (row["task_id"], row["key"], row["map_index"]) == (task_id, key, map_index):
                value = row["value"]
                return json.loads(value) if isinstance(value, str) and value[:1] in '{["' else value
        raise AssertionError(f"no XCom {task_id}/{key}[{map_index}]")


def call(env: dict[str, str], *args: str, output: list[str] | None = None) -> list[Any]:
    """Run the DAG runner; its RESULT lines (``output`` gets the whole stdout and stderr)."""
    done = subprocess.run(
        [sys.executable, RUNNER, *args], env=env, capture_output=True, text=True, timeout=DAG_TIMEOUT
    )
    if output is not None:
        output.append(done.stdout + done.stderr)
    why = f"{args}: exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert done.returncode == 0, why
    lines = [
        json.loads(line[len(RESULT_PREFIX) :])
        for line in done.stdout.splitlines()
        if line.startswith(RESULT_PREFIX)
    ]
    assert lines, why
    return lines


@pytest.fixture(scope="module")
def dag_runs(migrated_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DagRuns]:
    """Every example DAG's ``dag.test()``, one after the other in one child interpreter."""
    out = tmp_path_factory.mktemp("out")
    with LocalVideosServer(api_key=KEY, job_seconds=2.0, poll_after_ms=500, access_log=False) as server:
        env = base_env(migrated_home)
        env.update(
            AIRFLOW_CONN_OPENAI_VIDEOS_DEFAULT=json.dumps(
                {
                    "conn_type": "openai_videos",
                    "host": server.url,
                    "password": KEY,
                    "extra": {"prices": PRICES},
                }
            ),
            VIDEO_EDIT_OUTPUT_DIR=str(out),
            VIDEO_EDIT_POLL_INTERVAL="0.5",
            VIDEOS_SERVER_ROOT=server.root_url,
            VIDEOS_SERVER_API_KEY=KEY,
        )
        results = call(env, *MODULES)
        yield DagRuns(server, out, env, {r["module"]: r for r in results})


def run_of(dag_runs: DagRuns, module: str) -> Run:
    result = dag_runs.results[module]
    ids = {row["value"] for row in result["xcom"] if row["key"] == "video_id"}
    jobs = sorted((dag_runs.server.store.jobs[i] for i in ids), key=lambda job: job.seq)
    return Run(result, jobs, dag_runs.out, dag_runs.env)


def test_video_edit_then_publish(dag_runs: DagRuns) -> None:
    run = run_of(dag_runs, "video_edit_then_publish")
    result = run.result
    assert result["state"] == "success"
    assert {task: info["state"] for task, info in result["tasks"].items()} == {
        "edit[-1]": "success",
        "publish_video[-1]": "success",
    }
    stats = run.stats
    assert stats["jobs_created"] == 1
    assert stats["requests"]["POST /v1/videos/edits"] == {"200": 1}
    (job,) = run.jobs
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
    # The 4 s source clip at the connection's 0.10 USD/s for sora-2 (the edit names no model).
    assert (
        manifest["estimated_cost"] == run.xcom("edit", "estimated_cost") == {"currency": "USD", "amount": 0.4}
    )
    width, height, duration = probe_mp4(video)
    assert f"{width}x{height}" == job.size
    assert duration == pytest.approx(float(job.seconds), abs=0.25)
    assert (folder / f"{job.id}_thumbnail.webp").stat().st_size > 0

    (extra,) = result["asset_events"]  # the edited_video Asset got its event
    assert extra["video_id"] == job.id
    assert extra["estimated_cost"] == {"currency": "USD", "amount": 0.4}  # after the deferral, from XCom
    assert extra["size"] == job.size
    assert extra["seconds"] == job.seconds
    assert extra["path"] == str(run.out / "work" / "video_edit_then_publish" / result["run_id"] / video.name)
    assert Path(extra["path"]).read_bytes() == video.read_bytes()


def test_video_edit_chain(dag_runs: DagRuns) -> None:
    run = run_of(dag_runs, "video_edit_chain")
    result = run.result
    assert result["state"] == "success"
    stats = run.stats
    assert stats["jobs_created"] == 2
    assert stats["requests"]["POST /v1/videos/edits"] == {"200": 2}
    first, second = run.jobs
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


def test_video_edit_mapped(dag_runs: DagRuns) -> None:
    run = run_of(dag_runs, "video_edit_mapped")
    result = run.result
    assert result["state"] == "success"
    assert {task: info["state"] for task, info in result["tasks"].items() if task.startswith("edit")} == {
        "edit[0]": "success",
        "edit[1]": "success",
        "edit[2]": "success",
    }
    stats = run.stats
    assert stats["jobs_created"] == 3
    jobs = run.jobs
    assert all(job.source_file is not None for job in jobs)
    returned = {run.xcom("edit", map_index=i)["id"] for i in range(3)}
    assert returned == {job.id for job in jobs}
    folder = run.out / "work" / "video_edit_mapped" / result["run_id"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{job.id}.mp4" for job in jobs)
    for job in jobs:
        width, height, _ = probe_mp4(folder / f"{job.id}.mp4")
        assert f"{width}x{height}" == job.size


def test_video_publish_on_asset_catalogues_the_asset_event(dag_runs: DagRuns, tmp_path: Path) -> None:
    """Its task callable, given the asset event the edit-then-publish run recorded."""
    producer = run_of(dag_runs, "video_edit_then_publish")
    extras = producer.result["asset_events"]
    assert len(extras) == 1
    events_file = tmp_path / "events.json"
    events_file.write_text(json.dumps(extras))
    (published,) = call(producer.env, "--call-catalogue", str(events_file))
    video_id = extras[0]["video_id"]
    folder = producer.out / "published" / "catalogue" / video_id
    assert published == [str(folder / f"{video_id}.mp4")]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["video_id"] == video_id
    assert manifest["source"] == extras[0]["path"]
    assert manifest["size"] == extras[0]["size"]
    assert manifest["sha256"] == hashlib.sha256(Path(extras[0]["path"]).read_bytes()).hexdigest()
    assert (folder / f"{video_id}_thumbnail.webp").is_file()


def test_each_dag_run_took_its_own_jobs_only(dag_runs: DagRuns) -> None:
    counts = {module: dag_runs.results[module]["server_stats"]["jobs_created"] for module in MODULES}
    assert counts == JOBS_PER_DAG
    assert len(dag_runs.server.store.jobs) == 9  # the daily batch deleted its 2 jobs


def test_video_generate_edit_extend(dag_runs: DagRuns) -> None:
    run = run_of(dag_runs, "video_generate_edit_extend")
    result = run.result
    assert result["state"] == "success"
    assert {task: info["state"] for task, info in result["tasks"].items()} == {
        name: "success"
        for name in ("generate[-1]", "edit[-1]", "extend[-1]", "download[-1]", "publish_to_storage[-1]")
    }
    requests = run.stats["requests"]
    assert run.stats["jobs_created"] == 3
    for route in ("POST /v1/videos", "POST /v1/videos/edits", "POST /v1/videos/extensions"):
        assert requests[route] == {"200": 1}, route
    created, edited, extended = run.jobs
    assert edited.source_id == created.id  # by id from XCom: nothing uploaded again
    assert extended.source_id == edited.id
    assert edited.source_file is None
    assert extended.source_file is None
    assert run.xcom("extend")["seconds"] == "8"
    folder = run.out / "published" / "storage" / re.sub(r"[^A-Za-z0-9._-]+", "_", result["run_id"]).strip("_")
    video = folder / f"{extended.id}.mp4"
    assert run.xcom("publish_to_storage") == video.as_uri()
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [f"{extended.id}.mp4", f"{extended.id}_thumbnail.webp", "manifest.json"]
    )
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["video_id"] == extended.id
    assert manifest["seconds"] == "8"
    assert manifest["sha256"] == hashlib.sha256(video.read_bytes()).hexdigest()
    _, _, duration = probe_mp4(video)
    assert duration == pytest.approx(8.0, abs=0.25)


def test_video_daily_batch(dag_runs: DagRuns) -> None:
    result = dag_runs.results["video_daily_batch"]
    run = Run(result, [], dag_runs.out, dag_runs.env)
    assert result["state"] == "success"
    assert {task: info["state"] for task, info in result["tasks"].items()} == {
        name: "success"
        for name in ("find_new_clips[-1]", "edit[0]", "edit[1]", "publish_batch[-1]", "cleanup[-1]")
    }
    assert run.stats["jobs_created"] == 2
    assert run.stats["requests"]["DELETE /v1/videos/{video_id}"] == {"200": 2}
    inbox = dag_runs.out / "inbox"
    assert run.xcom("find_new_clips") == [str(inbox / "harbour.mp4"), str(inbox / "market.mp4")]
    ids = [run.xcom("edit", map_index=i)["id"] for i in range(2)]
    assert sorted(run.xcom("cleanup")) == sorted(ids)
    assert not set(ids) & set(dag_runs.server.store.jobs)  # cleaned up remotely
    batch = json.loads(Path(run.xcom("publish_batch")).read_text())
    assert [entry["video_id"] for entry in batch] == ids
    for entry in batch:
        manifest = json.loads((Path(entry["video"]).parent / "manifest.json").read_text())
        assert manifest["source"] == entry["source"]
        width, height, _ = probe_mp4(Path(entry["video"]))
        assert width > 0
        assert height > 0
    assert json.loads((inbox / ".published.json").read_text()) == [entry["source"] for entry in batch]


# --- through a gateway ----------------------------------------------------------------------------
@dataclass
class GatewayRuns:
    server: LocalVideosServer
    out: Path
    results: dict[str, dict[str, Any]]
    output: str


@pytest.fixture(scope="module")
def gateway_runs(migrated_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayRuns]:
    """Every example DAG against the server in gateway mode (LiteLLM-like ids ~250 characters with
    "/" and "+", ``variant`` ignored, model required, no list or delete), with the previews off as
    a DAG author would set them for such a backend (``VIDEO_EDIT_PREVIEWS=""``)."""
    out = tmp_path_factory.mktemp("out-gateway")
    with LocalVideosServer(
        api_key=KEY, job_seconds=2.0, poll_after_ms=500, access_log=False, gateway_quirks=True
    ) as server:
        env = base_env(migrated_home)
        connection = {
            "conn_type": "openai_videos",
            "host": server.url,
            "password": KEY,
            "extra": {"default_model": "sora-2"},
        }
        env.update(
            AIRFLOW_CONN_OPENAI_VIDEOS_DEFAULT=json.dumps(connection),
            VIDEO_EDIT_OUTPUT_DIR=str(out),
            VIDEO_EDIT_POLL_INTERVAL="0.5",
            VIDEO_EDIT_PREVIEWS="",
            VIDEOS_SERVER_ROOT=server.root_url,
            VIDEOS_SERVER_API_KEY=KEY,
        )
        output: list[str] = []
        results = call(env, *MODULES, output=output)
        yield GatewayRuns(server, out, {r["module"]: r for r in results}, output[0])


def test_example_dags_through_a_gateway(gateway_runs: GatewayRuns) -> None:
    """Each DAG works, or fails clearly where the gateway lacks what it needs; nothing wrong is saved."""
    results = gateway_runs.results
    for module in (
        "video_edit_then_publish",
        "video_edit_chain",
        "video_edit_mapped",
        "video_generate_edit_extend",
    ):
        assert results[module]["state"] == "success", (module, results[module]["tasks"])
        assert all(info["try_number"] == 1 for info in results[module]["tasks"].values()), module
    counts = {module: results[module]["server_stats"]["jobs_created"] for module in MODULES}
    assert counts == JOBS_PER_DAG
    # Ids are the gateway's (long, with "/"): file names stay short and safe, and name the job.
    publish = results["video_edit_then_publish"]
    (video_id,) = {row["value"] for row in publish["xcom"] if row["key"] == "video_id"}
    assert len(video_id) > 200
    assert "/" in video_id
    published = Path(next(row["value"] for row in publish["xcom"] if row["task_id"] == "publish_video"))
    assert published.parent.parent == gateway_runs.out / "published"
    assert published.name == f"{file_stem(video_id)}.mp4"
    assert json.loads((published.parent / "manifest.json").read_text())["video_id"] == video_id
    files = [p for p in gateway_runs.out.rglob("*") if p.is_file() and "inbox" not in p.parts]
    assert all(len(p.name.encode()) < 128 for p in files)
    assert not [p for p in files if p.suffix in (".webp", ".jpg", ".png", ".part")]  # no wrong content
    for path in (p for p in files if p.suffix == ".mp4"):
        width, height, _ = probe_mp4(path)
        assert width > 0
        assert height > 0

    # The daily batch cleans up with DELETE, which this gateway does not route: only that task
    # fails, saying why.
    batch = results["video_daily_batch"]
    assert batch["state"] == "failed"
    states = {task: info["state"] for task, info in batch["tasks"].items()}
    assert states.pop("cleanup[-1]") == "failed"
    assert set(states.values()) == {"success"}
    assert "DELETE /v1/videos/" in gateway_runs.output
    assert "not supported by this gateway. (status=405" in gateway_runs.output
    assert KEY not in gateway_runs.output
