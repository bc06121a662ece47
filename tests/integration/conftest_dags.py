"""Runs one example DAG with ``dag.test()`` in a clean interpreter; used by ``test_dags.py``.

Not a test module: ``python conftest_dags.py <dag module> [<dag module> ...]`` imports each DAG
file from the DAGs folder, runs its ``dag.test()`` and prints one JSON line (prefixed ``RESULT``)
per DAG with the run's state, every task instance's state, the XComs of the run, the asset events
it produced and the local server's request and job counts for that run alone (the counts are
reset before each DAG through the server's ``/_server`` routes at ``$VIDEOS_SERVER_ROOT``, with
the key ``$VIDEOS_SERVER_API_KEY``).
Running the DAGs one after the other in one interpreter pays Airflow's start-up cost in
``dag.test()`` (about 20 s) once.

``python conftest_dags.py --call-catalogue <events.json>`` instead calls the asset-scheduled
DAG's ``catalogue`` task callable with fake triggering asset events built from the given extras
(``dag.test()`` cannot supply ``triggering_asset_events`` to a manual run).

The environment (AIRFLOW_HOME, the connection, VIDEO_EDIT_OUTPUT_DIR, ...) is set by the caller
before this interpreter starts, so Airflow reads its configuration once, cleanly.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

DAGS_FOLDER = str(Path(__file__).resolve().parents[2] / "dags")
RESULT_PREFIX = "RESULT "


def _find_dag(module: Any) -> Any:
    from airflow.sdk import DAG

    return next(value for value in vars(module).values() if isinstance(value, DAG))


def run_dag(module_name: str) -> dict[str, Any]:
    import httpx

    root = os.environ["VIDEOS_SERVER_ROOT"]
    control = {"Authorization": f"Bearer {os.environ['VIDEOS_SERVER_API_KEY']}"}
    httpx.post(f"{root}/_server/reset-stats", headers=control, timeout=10).raise_for_status()
    dag = _find_dag(importlib.import_module(module_name))
    started = time.monotonic()
    dag_run = dag.test()
    seconds = time.monotonic() - started
    stats = httpx.get(f"{root}/_server/stats", headers=control, timeout=10).json()

    from airflow.models.asset import AssetEvent
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=dag.dag_id, run_id=dag_run.run_id).all()
        xcoms = session.query(XComModel).filter_by(dag_id=dag.dag_id, run_id=dag_run.run_id).all()
        events = session.query(AssetEvent).filter_by(source_dag_id=dag.dag_id, source_run_id=dag_run.run_id)
        return {
            "module": module_name,
            "seconds": seconds,
            "server_stats": stats,
            "dag_id": dag.dag_id,
            "run_id": dag_run.run_id,
            "state": str(dag_run.state),
            "tasks": {
                f"{ti.task_id}[{ti.map_index}]": {"state": str(ti.state), "try_number": ti.try_number}
                for ti in tis
            },
            "xcom": [
                {"task_id": x.task_id, "map_index": x.map_index, "key": x.key, "value": x.value}
                for x in xcoms
            ],
            "asset_events": [event.extra for event in events],
        }


def call_catalogue(extras: list[dict[str, Any]]) -> Any:
    module = importlib.import_module("video_publish_on_asset")
    task = _find_dag(module).get_task("catalogue")
    events = {module.EDITED_VIDEO: [SimpleNamespace(extra=extra) for extra in extras]}
    return task.python_callable(triggering_asset_events=events)


def main(argv: list[str]) -> None:
    if argv[0] == "--call-catalogue":
        sys.path.insert(0, DAGS_FOLDER)
        with open(argv[1]) as handle:
            result: Any = call_catalogue(json.load(handle))
        print(RESULT_PREFIX + json.dumps(result, default=str), flush=True)
        return
    sys.path.insert(0, DAGS_FOLDER)
    for module_name in argv:
        print(RESULT_PREFIX + json.dumps(run_dag(module_name), default=str), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
