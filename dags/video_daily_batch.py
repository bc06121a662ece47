"""Every day: edit each new clip of an inbox folder, publish the day's batch, clean up remote jobs.

- ``find_new_clips``: the ``*.mp4`` files in ``$VIDEO_EDIT_OUTPUT_DIR/inbox`` not published yet
  (a ledger beside them remembers what was). For the demo, an inbox that does not exist yet is
  filled with two copies of the bundled clip.
- ``edit``: one mapped ``VideoEditOperator`` per clip (uploads it).
- ``publish_batch``: one step for the whole batch: each clip into
  ``published/daily/<date>/<job id>/`` with its manifest, plus ``batch.json``; the ledger is
  updated only then, so a failed run picks the same clips up again.
- ``cleanup``: ``VideoDeleteOperator`` deletes the day's remote jobs once they are published.

It starts paused (it spends money every day): unpause it in the UI or with
``airflow dags unpause video_daily_batch``.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime

from _video_publishing import CONN_ID, OUTPUT_ROOT, POLL_INTERVAL, PUBLISH_DIR, SOURCE_CLIP, WORK_DIR, publish
from airflow.sdk import DAG, task

from airflow_video_edit.operators import VideoDeleteOperator, VideoEditOperator

INBOX = OUTPUT_ROOT / "inbox"
LEDGER = INBOX / ".published.json"
PROMPT = "Stabilise, add subtitles and a warm grade"

with DAG(
    dag_id="video_daily_batch",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    # It pays for a job per clip every day: it starts paused, and someone unpauses it on purpose.
    is_paused_upon_creation=True,
    tags=["video", "example"],
    doc_md=__doc__,
) as dag:

    @task
    def find_new_clips() -> list[str]:
        if not INBOX.exists():
            INBOX.mkdir(parents=True)
            for name in ("harbour.mp4", "market.mp4"):
                shutil.copyfile(SOURCE_CLIP, INBOX / name)
        done = set(json.loads(LEDGER.read_text())) if LEDGER.exists() else set()
        return sorted(str(path) for path in INBOX.glob("*.mp4") if str(path) not in done)

    clips = find_new_clips()
    edit = VideoEditOperator.partial(
        task_id="edit",
        prompt=PROMPT,
        destination=f"{WORK_DIR}/{{{{ dag.dag_id }}}}/{{{{ ds }}}}/",
        conn_id=CONN_ID,
        poll_interval=POLL_INTERVAL,
    ).expand(video=clips)

    @task
    def publish_batch(sources: list[str], jobs: list[dict], ds: str | None = None, ti=None) -> str:
        batch = []
        for index, (source, job) in enumerate(zip(sources, jobs, strict=True)):
            outputs = ti.xcom_pull(task_ids="edit", key="outputs", map_indexes=index)
            cost = ti.xcom_pull(task_ids="edit", key="estimated_cost", map_indexes=index)
            folder = PUBLISH_DIR / "daily" / str(ds) / job["id"]
            batch.append(
                {
                    "source": source,
                    "video_id": job["id"],
                    "video": publish(
                        job, outputs, source=source, prompt=PROMPT, folder=folder, estimated_cost=cost
                    ),
                }
            )
        summary = PUBLISH_DIR / "daily" / str(ds) / "batch.json"
        summary.write_text(json.dumps(batch, indent=2) + "\n")
        done = set(json.loads(LEDGER.read_text())) if LEDGER.exists() else set()
        LEDGER.write_text(json.dumps(sorted(done | set(sources)), indent=2))
        print(f"published {len(batch)} clips: {summary}")
        return str(summary)

    published = publish_batch(clips, edit.output)
    cleanup = VideoDeleteOperator(task_id="cleanup", video=edit.output, conn_id=CONN_ID)
    published >> cleanup
