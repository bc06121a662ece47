"""The OpenLineage events a real deployment emits for ``video_edit_then_publish``'s deferred
edit task (Airflow's OpenLineage listener, file transport: ``e2e_openlineage_events``)."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("airflow.providers.openlineage", reason="the openlineage extra is not installed")

pytestmark = pytest.mark.e2e

DAG_ID = "video_edit_then_publish"
SOURCE_CLIP = str(Path(__file__).resolve().parents[2] / "dags" / "data" / "source_clip.mp4")


def events_of(path: Path, job_name: str, run_id: str) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    found = []
    for line in path.read_text().splitlines():
        event = json.loads(line)
        parent = event.get("run", {}).get("facets", {}).get("airflow", {}).get("dagRun", {})
        if event.get("job", {}).get("name") == job_name and parent.get("run_id", run_id) == run_id:
            found.append(event)
    return found


def test_the_deferred_edit_emits_its_source_files_and_job(
    airflow_deployment: Any, e2e_openlineage_events: Path, e2e_video_server: Any
) -> None:
    server, api_key = e2e_video_server
    run_id = airflow_deployment.trigger_dag(DAG_ID)
    assert airflow_deployment.wait_for_run(DAG_ID, run_id, timeout=240) == "success"
    video_id = airflow_deployment.xcom(DAG_ID, run_id, "edit", key="video_id")
    outputs = airflow_deployment.xcom(DAG_ID, run_id, "edit", key="outputs")
    deadline = time.monotonic() + 60
    while True:  # the listener emits from the worker, a moment after the task's state is set
        events = events_of(e2e_openlineage_events, f"{DAG_ID}.edit", run_id)
        complete = [e for e in events if e["eventType"] == "COMPLETE"]
        if complete or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    assert complete, [e["eventType"] for e in events]
    (event,) = complete
    assert [(d["namespace"], d["name"]) for d in event["inputs"]] == [("file", SOURCE_CLIP)]
    assert sorted(d["name"] for d in event["outputs"]) == sorted(outputs.values())
    assert all(Path(d["name"]).is_file() and ".part" not in d["name"] for d in event["outputs"])
    facet = event["run"]["facets"]["videoJob"]
    assert facet["videoId"] == video_id
    assert facet["jobKind"] == "edit"
    assert facet["status"] == "completed"
    assert facet["model"] == "sora-2"
    dag_prompt = "Add a warm sunset grade and the title 'Launch day'"
    assert facet["promptSha256"] == hashlib.sha256(dag_prompt.encode()).hexdigest()
    assert event["run"]["facets"]["externalQuery"] == {
        **event["run"]["facets"]["externalQuery"],
        "externalQueryId": video_id,
        "source": server.url,
    }
    text = e2e_openlineage_events.read_text()
    assert api_key not in text
    assert dag_prompt not in text  # hashed only
    starts = [e for e in events if e["eventType"] == "START"]
    assert starts
    assert all(s["inputs"] for s in starts)
