"""Runs one example DAG with ``dag.test()`` in a clean interpreter; used by ``test_dags.py``.

Not a test module: ``python conftest_dags.py <dag module>`` imports the DAG file from the DAGs
folder, runs ``dag.test()`` and prints one JSON line (prefixed ``RESULT``) with the run's state,
every task instance's state, the XComs of the run and the asset events it produced.

``python conftest_dags.py --call-catalogue <events.json>`` instead calls the asset-scheduled
DAG's ``catalogue`` task callable with fake triggering asset events built from the given extras
(``dag.test()`` cannot supply ``triggering_asset_events`` to a manual run).

The environment (AIRFLOW_HOME, the connection, VIDEO_EDIT_OUTPUT_DIR, ...) is set by the caller
before this interpreter starts, so Airflow reads its configuration once, cleanly.
"""

from __future__ import annotations

import importlib
import json
import sys
from types import SimpleNamespace
from typing import Any

DAGS_FOLDER = "/work/main/dags"
RESULT_PREFIX = "RESULT "


def _find_dag(module: Any) -> Any:
    from airflow.sdk import DAG

    return next(value for value in vars(module).values() if isinstance(value, DAG))


def run_dag(module_name: str) -> dict[str, Any]:
    sys.path.insert(0, DAGS_FOLDER)
    dag = _find_dag(importlib.import_module(module_name))
    dag_run = dag.test()

    from airflow.models.asset import AssetEvent
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=dag.dag_id, run_id=dag_run.run_id).all()
        xcoms = session.query(XComModel).filter_by(dag_id=dag.dag_id, run_id=dag_run.run_id).all()
        events = session.query(AssetEvent).filter_by(source_dag_id=dag.dag_id, source_run_id=dag_run.run_id)
        return {
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
    sys.path.insert(0, DAGS_FOLDER)
    module = importlib.import_module("video_publish_on_asset")
    task = _find_dag(module).get_task("catalogue")
    events = {module.EDITED_VIDEO: [SimpleNamespace(extra=extra) for extra in extras]}
    return task.python_callable(triggering_asset_events=events)


def main(argv: list[str]) -> None:
    if argv[0] == "--call-catalogue":
        with open(argv[1]) as handle:
            result: Any = call_catalogue(json.load(handle))
    else:
        result = run_dag(argv[0])
    print(RESULT_PREFIX + json.dumps(result, default=str), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
