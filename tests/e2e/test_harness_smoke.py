"""Smoke test of the e2e harness: a real deferrable task runs through scheduler, worker and triggerer."""

from __future__ import annotations

import textwrap
import time

import pytest

# Works with any DAGs folder / extra env: reuses the deployment the real e2e tests configure.
pytestmark = [pytest.mark.e2e, pytest.mark.e2e_any_config]

DAG_ID = "e2e_harness_smoke"

# A minimal deferrable operator on the standard TimeDeltaTrigger: it *always* defers (unlike
# TimeDeltaSensor, whose target is run_after + delta and may already be past when a cold worker starts
# the task, so it would succeed without deferring). The trigger waits 10 s (>= 8 s): a trigger firing
# within seconds of deferral can hit the scheduler "state mismatch" race of Airflow 3.3
# (apache/airflow#72716) and fail the task.
SMOKE_DAG = textwrap.dedent(
    f'''
    from datetime import datetime, timedelta

    from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger
    from airflow.sdk import DAG, BaseOperator


    class WaitDeferred(BaseOperator):
        def execute(self, context):
            self.defer(trigger=TimeDeltaTrigger(timedelta(seconds=10)), method_name="execute_complete")

        def execute_complete(self, context, event=None):
            return "resumed"


    with DAG(dag_id="{DAG_ID}", schedule=None, start_date=datetime(2024, 1, 1), catchup=False):
        WaitDeferred(task_id="wait")
    '''
)


def test_health(airflow_deployment):
    health = airflow_deployment.client.get("/api/v2/monitor/health").json()
    for component in ("metadatabase", "scheduler", "dag_processor", "triggerer"):
        assert health[component]["status"] == "healthy", health
    assert airflow_deployment.env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].startswith(
        airflow_deployment.api_url
    )
    assert airflow_deployment.api_url.startswith("http://127.0.0.1:")


def test_deferrable_task_runs_through_triggerer(airflow_deployment):
    # A DAG of its own, added to the running deployment (extra bundle): no dags-folder override needed.
    airflow_deployment.add_dag_file("smoke_dag.py", SMOKE_DAG)
    t0 = time.monotonic()
    run_id = airflow_deployment.trigger_dag(DAG_ID, conf={"smoke": True})

    ti = airflow_deployment.wait_for_task_state(DAG_ID, run_id, "wait", {"deferred"}, timeout=60)
    assert ti["state"] == "deferred"

    state = airflow_deployment.wait_for_run(DAG_ID, run_id, timeout=90)
    tis = airflow_deployment.task_instances(DAG_ID, run_id)
    assert state == "success", (tis, airflow_deployment.log_tails())
    assert [(t["task_id"], t["state"]) for t in tis] == [("wait", "success")]
    assert tis[0]["try_number"] == 1
    assert airflow_deployment.xcom(DAG_ID, run_id, "wait") == "resumed"
    assert "Trigger fired event" in airflow_deployment.logs_text()  # trigger logs are task log files
    print(f"\n[e2e] smoke run took {time.monotonic() - t0:.1f}s")
