"""End to end: video_edit_then_publish on a real Airflow deployment against the local server.

The edit task must defer (the job lasts ~20 s, longer than the few seconds after deferral in
which Airflow 3.3's scheduler can race a firing trigger, apache/airflow#72716), the triggerer
must wait for it, and the run must publish a valid MP4 with its manifest.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import av
import pytest

pytestmark = pytest.mark.e2e

DAG_ID = "video_edit_then_publish"


def test_edit_then_publish_defers_and_publishes(airflow_deployment, e2e_video_server, e2e_output_dir):
    server, api_key = e2e_video_server
    before = server.stats()["jobs_created"]
    airflow_deployment.wait_for_dag(DAG_ID)
    run_id = airflow_deployment.trigger_dag(DAG_ID)

    ti = airflow_deployment.wait_for_task_state(DAG_ID, run_id, "edit", {"deferred"}, timeout=120)
    assert ti["state"] == "deferred"
    # While deferred, the job id is already in XCom: pushed before the task waited.
    video_id = airflow_deployment.xcom(DAG_ID, run_id, "edit", key="video_id")
    assert video_id

    state = airflow_deployment.wait_for_run(DAG_ID, run_id, timeout=240)
    tis = {t["task_id"]: t for t in airflow_deployment.task_instances(DAG_ID, run_id)}
    assert state == "success", (tis, airflow_deployment.log_tails())
    assert tis["edit"]["try_number"] == 1
    assert server.stats()["jobs_created"] == before + 1  # exactly one paid job

    published = Path(airflow_deployment.xcom(DAG_ID, run_id, "publish_video"))
    assert published.is_relative_to(e2e_output_dir)
    manifest = json.loads((published.parent / "manifest.json").read_text())
    assert manifest["video_id"] == video_id
    assert manifest["sha256"] == hashlib.sha256(published.read_bytes()).hexdigest()
    assert (published.parent / f"{video_id}_thumbnail.webp").stat().st_size > 0
    with av.open(str(published)) as container:
        stream = container.streams.video[0]
        assert f"{stream.width}x{stream.height}" == manifest["size"] == "720x1280"
        assert float(container.duration / av.time_base) == pytest.approx(float(manifest["seconds"]), abs=0.3)

    job = airflow_deployment.xcom(DAG_ID, run_id, "edit")
    assert job["id"] == video_id
    assert job["status"] == "completed"
    # The key is in no log line of any process or task, masked or not.
    assert api_key not in airflow_deployment.logs_text()
    assert api_key not in json.dumps(job)
