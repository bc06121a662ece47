"""Publishing pipeline scheduled on the edited-video Asset: runs whenever an edit lands.

The Asset event's extra carries the video id, size, seconds and path (set by VideoEditOperator).
"""

from __future__ import annotations

from datetime import datetime

from _video_publishing import EDITED_VIDEO, PUBLISH_DIR, safe_name
from airflow.sdk import DAG, task

with DAG(
    dag_id="video_publish_on_asset",
    schedule=[EDITED_VIDEO],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["video", "example"],
    doc_md=__doc__,
) as dag:

    @task
    def catalogue(triggering_asset_events=None) -> list[str]:
        """Add every newly edited video to the catalogue folder (a stand-in for a CMS)."""
        from _video_publishing import publish

        published = []
        for event in triggering_asset_events[EDITED_VIDEO]:
            extra = event.extra
            job = {"id": extra["video_id"], "size": extra["size"], "seconds": extra["seconds"]}
            job["estimated_cost"] = extra.get("estimated_cost")
            folder = PUBLISH_DIR / "catalogue" / safe_name(extra["video_id"])
            published.append(publish(job, extra["outputs"], source=extra["path"], prompt="", folder=folder))
        return published

    catalogue()
