"""One edit over a list of sources with dynamic task mapping: one job per source, in parallel."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from _video_publishing import CONN_ID, POLL_INTERVAL, SOURCE_CLIP, WORK_DIR
from airflow.sdk import DAG, Param, task

from airflow_video_edit.operators import VideoEditOperator

with DAG(
    dag_id="video_edit_mapped",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["video", "example"],
    doc_md=__doc__,
    params={"copies": Param(3, type="integer", minimum=1, maximum=100, description="edits to run")},
) as dag:

    @task
    def list_sources(params: dict[str, Any] | None = None) -> list[str]:
        """In a real pipeline: the clips that landed in a bucket since the last run."""
        return [SOURCE_CLIP] * int((params or {}).get("copies", 3))

    VideoEditOperator.partial(
        task_id="edit",
        prompt="Stabilise and add subtitles",
        destination=f"{WORK_DIR}/{{{{ dag.dag_id }}}}/{{{{ run_id }}}}/",
        conn_id=CONN_ID,
        poll_interval=POLL_INTERVAL,
    ).expand(video=list_sources())
