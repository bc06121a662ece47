"""Generate a clip from a prompt, edit it, extend it, download it, publish it to object storage.

Every step after the first takes the previous job by id from XCom (``other.output``: the job
the upstream task returned), so nothing is uploaded again. Publishing writes into an
``ObjectStoragePath`` folder (``file://`` here; ``s3://``, ``gs://``, ... the same way) with a
JSON manifest. Runs as it is against the bundled local server.
"""

from __future__ import annotations

from datetime import datetime

from _video_publishing import CONN_ID, POLL_INTERVAL, PUBLISH_DIR, WORK_DIR, publish, safe_name, variants
from airflow.sdk import DAG, ObjectStoragePath, task

from airflow_video_edit.operators import (
    VideoCreateOperator,
    VideoDownloadOperator,
    VideoEditOperator,
    VideoExtendOperator,
)

PROMPT = "A paper boat drifting down a rain-soaked street"

with DAG(
    dag_id="video_generate_edit_extend",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["video", "example"],
    doc_md=__doc__,
) as dag:
    generate = VideoCreateOperator(
        task_id="generate",
        prompt=PROMPT,
        size="720x1280",
        seconds=4,
        conn_id=CONN_ID,
        poll_interval=POLL_INTERVAL,
    )
    edit = VideoEditOperator(
        task_id="edit",
        video=generate.output,
        prompt="Give it a warm evening grade",
        conn_id=CONN_ID,
        poll_interval=POLL_INTERVAL,
    )
    extend = VideoExtendOperator(
        task_id="extend",
        video=edit.output,
        prompt="The boat reaches a puddle full of reflections",
        seconds=4,  # a 4 s segment: 8 s in all
        conn_id=CONN_ID,
        poll_interval=POLL_INTERVAL,
    )
    download = VideoDownloadOperator(
        task_id="download",
        video=extend.output,
        destination=ObjectStoragePath((WORK_DIR / "video_generate_edit_extend").as_uri() + "/"),
        variants=variants("thumbnail"),
        conn_id=CONN_ID,
    )

    @task
    def publish_to_storage(job: dict, outputs: dict, run_id: str | None = None) -> str:
        folder = ObjectStoragePath((PUBLISH_DIR / "storage").as_uri()) / safe_name(run_id or "run")
        path = publish(job, outputs, source=job["id"], prompt=PROMPT, folder=folder)
        print(f"published {path}")
        return path

    publish_to_storage(extend.output, download.output)
