"""The trigger: waits, in the triggerer, for one video job (edit, create, remix, extend) to finish.

It serializes identifiers and a wall-clock deadline only (a monotonic clock would not survive
serialization or a triggerer restart), never a credential. It goes through the Hook, which
resolves the connection once, asynchronously, inside the triggerer; all triggers of one
connection in one triggerer process share one pooled ``httpx.AsyncClient`` (see
:func:`airflow_video_edit.clients.shared_async_client`) and one status watcher, which checks
their jobs with shared list pages (:mod:`airflow_video_edit.watcher`); transient failures are
ridden out by the retry policy. The loop and its events are those of :mod:`airflow_video_edit.waiting`, which
the operators' non-deferrable waits use too, so both end in the same ``execute_complete``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import cached_property
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_video_edit.errors import VideoAPIError
from airflow_video_edit.hooks import OpenAIVideosHook
from airflow_video_edit.models import Video
from airflow_video_edit.waiting import Wait, error_event, wait_async
from airflow_video_edit.watcher import Watch


class VideoJobTrigger(BaseTrigger):
    """Poll a video job until it is completed or failed, or until ``deadline``; yield one event.

    :param video_id: the job to wait for.
    :param conn_id: the ``openai_videos`` connection id.
    :param poll_interval: seconds between polls; a longer ``openai-poll-after-ms`` hint wins.
    :param deadline: wall-clock time (epoch seconds) after which a ``timeout`` event is yielded.
    :param cancel_on_kill: when the task instance is marked failed, delete the job if it has
        finished (a running job cannot be cancelled: it finishes, and is billed); see
        :meth:`on_kill`.
    """

    def __init__(
        self,
        video_id: str,
        conn_id: str = OpenAIVideosHook.default_conn_name,
        poll_interval: float = 10.0,
        deadline: float | None = None,
        cancel_on_kill: bool = True,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.video_id = video_id
        self.conn_id = conn_id
        self.poll_interval = float(poll_interval)
        self.deadline = deadline
        self.cancel_on_kill = bool(cancel_on_kill)
        self._wait: Wait | None = None  # the running wait: on_kill reads the status it last saw
        self._watch: Watch | None = None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "video_id": self.video_id,
                "conn_id": self.conn_id,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
                "cancel_on_kill": self.cancel_on_kill,
            },
        )

    @cached_property
    def hook(self) -> OpenAIVideosHook:
        """One Hook per trigger: its connection is looked up once, its client shared per loop."""
        return OpenAIVideosHook(self.conn_id)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        state = self._wait = Wait(
            self.video_id, poll_interval=self.poll_interval, deadline=self.deadline, log=self.log
        )
        try:
            await self.hook.aget_client()  # the connection, looked up once for the whole wait
        except Exception as exc:  # an unknown connection, or one whose fields make no sense
            event = error_event(self.video_id, VideoAPIError(f"connection {self.conn_id!r}: {exc}"))
        else:
            self._watch = await self.hook.awatch_video(self.video_id)
            try:
                event = await wait_async(state, self._poll)
            finally:
                self._watch.close()
        yield TriggerEvent(event)  # type: ignore[no-untyped-call]

    async def _poll(self) -> tuple[Video, float | None]:
        """The job's next status and the ``openai-poll-after-ms`` hint, from the connection's
        status watcher: shared list pages where the backend lists, else a request of its own."""
        if self._watch is None:  # not registered (outside run)
            return await self.hook.apoll_video(self.video_id)
        return await self._watch.status()

    async def on_kill(self) -> None:
        """When a user marked the task failed: delete the job if it has finished; a running job
        cannot be cancelled (the Videos API has no cancel), so it is left to finish, and said so.

        Only ``failed`` deletes. A clear (the state is then ``None``, ``scheduled``, ``queued``,
        ``up_for_retry``, ``restarting``, ...) leaves the job to the new try, which resumes it
        (Airflow 3.3 gives a trigger no try number to tell a new try by). Airflow 3.3 also calls
        ``on_kill`` when a trigger moves to another triggerer (apache/airflow#73454): the task is
        still ``deferred`` then, and waits for the job. "Mark success" keeps the result. A state
        that cannot be read deletes nothing. What a deletion does is
        :func:`airflow_video_edit.cancel.cancel_steps`: one look, one DELETE, no retries. The
        triggerer cancels ``on_kill`` again about every second: the work runs to its end anyway,
        within :data:`~airflow_video_edit.cancel.KILL_BUDGET` seconds.
        """
        from airflow_video_edit.cancel import CANCEL_OFF, outlast_cancels

        if not self.cancel_on_kill:
            self.log.info(CANCEL_OFF, self.video_id)
            return
        await outlast_cancels(self._on_kill(), self.video_id, self.log)

    async def _on_kill(self) -> None:
        from airflow_video_edit.cancel import cancel_async

        state = await self._task_instance_state()
        if state != "failed":
            self.log.info(
                "not deleting video job %s: the task instance is %s, not failed",
                self.video_id,
                state or "of unknown state",
            )
            return
        last = self._wait.last if self._wait is not None else None
        await cancel_async(self.hook, self.video_id, last, self.log)

    async def _task_instance_state(self) -> str | None:
        """The task instance's current state, as the standard provider's ``WorkflowTrigger`` reads
        task states (``RuntimeTaskInstance.get_task_states`` off the event loop); None if unknown.

        The one use of the Task SDK's execution-time API: Airflow 3.3 has no public way for a
        trigger to read its own task instance's state.
        """
        ti = self.task_instance
        if ti is None:
            return None
        map_index = getattr(ti, "map_index", -1)
        try:
            from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance
            from asgiref.sync import sync_to_async

            states = await sync_to_async(RuntimeTaskInstance.get_task_states)(
                dag_id=ti.dag_id,
                run_ids=[ti.run_id],
                task_ids=[ti.task_id],
                map_index=map_index if map_index >= 0 else None,
            )
        except Exception:
            self.log.warning("could not read the state of task %s", ti.task_id, exc_info=True)
            return None
        run_states = states.get(ti.run_id, {})
        key = ti.task_id if map_index < 0 else f"{ti.task_id}_{map_index}"
        if key not in run_states:
            return None
        state = run_states[key]
        return "none" if state is None else str(getattr(state, "value", state))  # None: cleared
