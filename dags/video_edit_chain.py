"""Two edits in a row: the second edits the first one's result, by id from XCom (no re-upload)."""

from __future__ import annotations

from datetime import datetime

from _video_publishing import CONN_ID, POLL_INTERVAL, SOURCE_CLIP, WORK_DIR, variants
from airflow.sdk import DAG

from airflow_video_edit.operators import VideoEditOperator

with DAG(
    dag_id="video_edit_chain",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["video", "example"],
    doc_md=__doc__,
) as dag:
    first = VideoEditOperator(
        task_id="colour_grade",
        video=SOURCE_CLIP,
        prompt="Give it a cool blue colour grade",
        conn_id=CONN_ID,
        poll_interval=POLL_INTERVAL,
    )
    # The upstream task returns the finished job; its "id" is the video to edit next.
    second = VideoEditOperator(
        task_id="add_title",
        video=first.output,
        prompt="Add the title 'Chapter two'",
        destination=f"{WORK_DIR}/{{{{ dag.dag_id }}}}/{{{{ run_id }}}}/",
        variants=variants("thumbnail", "spritesheet"),
        conn_id=CONN_ID,
        poll_interval=POLL_INTERVAL,
    )
