"""``VideoJobSensor``: wait for a video job submitted elsewhere (another DAG, a script, a UI).

It waits the way the job operators do: deferred, with the same
:class:`~airflow_video_edit.triggers.VideoJobTrigger` and the same events, or in the worker by
poking (``mode="poke"`` or ``"reschedule"``). It succeeds when the job completes and returns the
job as a dict; a failed job fails the task without retries (waiting again cannot change it).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from airflow_video_edit.operators.task import DEFAULT_CONN_ID, VideoTaskMixin, default_deferrable

if TYPE_CHECKING:
    from airflow.sdk import Context


class VideoJobSensor(VideoTaskMixin, BaseSensorOperator):
    """Wait until a video job is completed; return it (XCom: ``video_id`` and ``job`` too).

    :param video_id: the job: an id, ``{"id": ...}`` or an upstream job (templated).
    :param conn_id: the ``openai_videos`` connection.
    :param poke_interval: seconds between status checks (deferred: the trigger's poll interval).
    :param timeout: seconds (or a timedelta) to wait in all; then the sensor times out.
    :param deferrable: wait in the triggerer (default: ``[operators] default_deferrable``).
    """

    template_fields: Sequence[str] = ("video_id",)
    # The job belongs to whoever submitted it: a sensor marked failed never deletes it.
    cancel_on_kill = False

    def __init__(
        self,
        *,
        video_id: Any,
        conn_id: str = DEFAULT_CONN_ID,
        poke_interval: float = 10.0,
        timeout: float = 2 * 3600,
        deferrable: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, timeout=timeout, **kwargs)
        self.video_id = video_id
        self.conn_id = conn_id
        self.deferrable = default_deferrable() if deferrable is None else deferrable

    def _job_id(self) -> str:
        from airflow_video_edit.calls import check_video_id

        return check_video_id(self.video_id, "video_id")

    def link_video_id(self) -> str | None:
        """The "Video job" link points to the job waited for, from the start."""
        try:
            return self._job_id()
        except (TypeError, ValueError):
            return None

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        from airflow_video_edit.waiting import job_event

        video = self.hook.get_video(self._job_id())
        event = job_event(video)
        if event is None:  # a job already finished ends here, without deferring
            self.defer_to_trigger(
                video.id, poll_interval=self.poke_interval, deadline=time.time() + self.timeout
            )
        return self.execute_complete(context, event)

    def poke(self, context: Context) -> PokeReturnValue | bool:
        from airflow_video_edit.waiting import job_event, progress_line

        video = self.hook.get_video(self._job_id())
        self.log.info(progress_line(video))
        event = job_event(video)
        if event is None:
            return False
        return PokeReturnValue(is_done=True, xcom_value=self.execute_complete(context, event))

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout

        from airflow_video_edit.errors import VideoJobFailed
        from airflow_video_edit.waiting import FAILED, TIMEOUT, finished_video

        try:
            video = finished_video(event)
        except VideoJobFailed as exc:
            if event.get("event") == TIMEOUT:
                raise AirflowSensorTimeout(str(exc)) from None
            if event.get("event") == FAILED:
                raise AirflowFailException(str(exc)) from None
            raise
        self.push_job(context, video)
        return video.model_dump(mode="json")
