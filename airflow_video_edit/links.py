"""The "Video job" extra link of the operators: the job's page on its backend.

The URL comes from the connection extra ``job_url_template`` (``{video_id}`` is replaced by the
URL-quoted id): a provider's portal, or the bundled local server's own job page
(``<server>/jobs/{video_id}``, :attr:`airflow_video_edit.server.LocalVideosServer.job_url_template`).
Without a template there is no link (the UI shows none).

In Airflow 3 a link is computed in the worker and stored as an XCom under :attr:`xcom_key`; the
UI reads that XCom. Airflow pushes it when the task process ends (so also at deferral), and the
operators push it themselves as soon as the job id is known, so it shows while the job waits in
the worker too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

    from airflow_video_edit.settings import ClientSettings

LINK_NAME = "Video job"


def job_url(settings: ClientSettings, video_id: str | None) -> str | None:
    """The job page of ``video_id`` by the connection's ``job_url_template``; None: no link."""
    if not video_id or not settings.job_url_template:
        return None
    return settings.job_url_template.replace("{video_id}", quote(video_id, safe=""))


class VideoJobLink(BaseOperatorLink):
    """ "Video job": the page of the task's job (connection extra ``job_url_template``)."""

    name = LINK_NAME

    @property
    def xcom_key(self) -> str:
        return "video_job_link"  # stable across a rename of this class

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        """Called in the worker at the end of the task process (finished or deferred)."""
        url = link_for(operator)
        return url or ""


def link_for(operator: Any) -> str | None:
    """The link of an operator of the family (its ``link_video_id()`` and its Hook's settings)."""
    video_id = operator.link_video_id()
    if not video_id:
        return None
    return job_url(operator.hook.settings, video_id)
