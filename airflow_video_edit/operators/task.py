"""``VideoTaskMixin``: what every operator of the family and the sensor share, whatever they do
with a job: the connection's Hook, a job's XCom (``video_id``, ``job`` and the "Video job" link),
OpenLineage, and the deferral to :class:`~airflow_video_edit.triggers.VideoJobTrigger`.

Imported on every DAG parse: the Hook, the trigger and the lineage module are imported when a task
runs.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from functools import cached_property
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.sdk import conf

from airflow_video_edit.links import VideoJobLink, link_for

if TYPE_CHECKING:
    from airflow.sdk import BaseOperatorLink, Context

    from airflow_video_edit.hooks import OpenAIVideosHook
    from airflow_video_edit.models import Video

DEFAULT_CONN_ID = "openai_videos_default"


def default_deferrable() -> bool:
    return conf.getboolean("operators", "default_deferrable", fallback=False)


class VideoTaskMixin:
    """What every operator and the sensor of the family share: the connection's Hook, a job's
    XCom (``video_id`` and ``job``), and the deferral to :class:`VideoJobTrigger`."""

    ui_color = "#e8d5f5"
    # "Video job": the job's page (connection extra job_url_template), stored as an XCom.
    operator_extra_links: Collection[BaseOperatorLink] = (VideoJobLink(),)
    conn_id: str
    _linked_id: str | None = None
    _outputs: dict[str, str] | None = None
    # Whether on_kill (the worker's or the trigger's) deletes a finished job: airflow_video_edit.cancel.
    cancel_on_kill: bool = True
    defer: Callable[..., NoReturn]  # BaseOperator's, further along the MRO

    @cached_property
    def hook(self) -> OpenAIVideosHook:
        from airflow_video_edit.hooks import OpenAIVideosHook

        return OpenAIVideosHook(self.conn_id)

    def push_job(self, context: Context, video: Video) -> None:
        """The id (key ``video_id``) and the job as returned, in XCom."""
        ti = context["ti"]
        ti.xcom_push(key="video_id", value=video.id)
        ti.xcom_push(key="job", value=video.model_dump(mode="json"))
        if self._linked_id != video.id:  # the link, at once: it shows while the job waits
            self._linked_id = video.id
            url = link_for(self)
            if url:
                ti.xcom_push(key=VideoJobLink().xcom_key, value=url)

    # OpenLineage (called by its listener, when the provider is installed): airflow_video_edit.lineage.
    def get_openlineage_facets_on_start(self) -> Any:
        from airflow_video_edit.lineage import operator_lineage

        return operator_lineage(self, complete=False)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        from airflow_video_edit.lineage import operator_lineage

        return operator_lineage(self, complete=True)

    def link_video_id(self) -> str | None:
        """The job the "Video job" link points to (None: no link yet)."""
        return self._linked_id or getattr(self, "_video_id", None)

    def defer_to_trigger(self, video_id: str, *, poll_interval: float, deadline: float) -> NoReturn:
        """Wait in the triggerer; the trigger's one event comes back to ``execute_complete``."""
        from airflow_video_edit.triggers import VideoJobTrigger

        trigger = VideoJobTrigger(
            video_id,
            self.conn_id,
            poll_interval=poll_interval,
            deadline=deadline,
            cancel_on_kill=self.cancel_on_kill,
        )
        self.defer(trigger=trigger, method_name="execute_complete")
