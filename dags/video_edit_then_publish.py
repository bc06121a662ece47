"""Upload a source clip, edit it, download the video and its thumbnail, publish them.

Runs as it is against the bundled local server (see the README's main command). Publishing
copies the result into ``$VIDEO_EDIT_OUTPUT_DIR/published/<run id>/`` with a JSON manifest.
"""

from __future__ import annotations

from datetime import datetime

from _video_publishing import (
    CONN_ID,
    EDITED_VIDEO,
    POLL_INTERVAL,
    PUBLISH_DIR,
    SOURCE_CLIP,
    WORK_DIR,
    publish,
    safe_name,
    variants,
)
from airflow.sdk import DAG, Param, task

from airflow_video_edit.operators import VideoEditOperator

with DAG(
    dag_id="video_edit_then_publish",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["video", "example"],
    doc_md=__doc__,
    params={
        "source": Param(SOURCE_CLIP, type="string", description="Local path of the clip to edit"),
        "prompt": Param("Add a warm sunset grade and the title 'Launch day'", type="string", minLength=1),
    },
) as dag:
    edit = VideoEditOperator(
        task_id="edit",
        video="{{ params.source }}",
        prompt="{{ params.prompt }}",
        destination=f"{WORK_DIR}/{{{{ dag.dag_id }}}}/{{{{ run_id }}}}/",
        variants=variants("thumbnail"),
        asset=EDITED_VIDEO,
        conn_id=CONN_ID,
        poll_interval=POLL_INTERVAL,
        deferrable=True,
        retries=2,
    )

    @task
    def publish_video(job: dict, params: dict | None = None, run_id: str | None = None, ti=None) -> str:
        outputs = ti.xcom_pull(task_ids="edit", key="outputs")
        path = publish(
            job,
            outputs,
            source=params["source"],
            prompt=params["prompt"],
            folder=PUBLISH_DIR / safe_name(run_id),
            estimated_cost=ti.xcom_pull(task_ids="edit", key="estimated_cost"),
        )
        print(f"published {path}")
        return path

    publish_video(edit.output)
