"""The trigger: waits, in the triggerer, for one video job (edit, create, remix, extend) to finish.

It serializes identifiers and a wall-clock deadline only (a monotonic clock would not survive
serialization or a triggerer restart), never a credential: the Hook resolves the connection
asynchronously inside the triggerer. All triggers of one connection in one triggerer process share
one pooled ``httpx.AsyncClient`` (see :func:`airflow_video_edit.http.shared_async_client`), and
transient failures are ridden out by the Hook's retry policy.

The event payloads are built by the ``*_event`` functions below, which the operator's
non-deferrable path uses as well, so both paths end in the same ``execute_complete``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_video_edit.errors import VideoAPIError
from airflow_video_edit.hooks import OpenAIVideosHook
from airflow_video_edit.http import AsyncVideosClient, poll_video
from airflow_video_edit.models import Video

COMPLETED, FAILED, TIMEOUT, ERROR = "completed", "failed", "timeout", "error"


def job_event(video: Video) -> dict[str, Any] | None:
    """The event for a job in a terminal status, or None while it runs."""
    if not video.is_terminal:
        return None
    payload: dict[str, Any] = {
        "event": COMPLETED if video.succeeded else FAILED,
        "video_id": video.id,
        "video": video.model_dump(mode="json"),
    }
    if video.failed:
        payload["code"] = video.error.code if video.error else "unknown_error"
        payload["message"] = video.error.message if video.error else "the backend gave no reason"
    return payload


def timeout_event(video_id: str, last: Video | None) -> dict[str, Any]:
    status = f"{last.status}, {last.progress}%" if last else "unknown"
    return {
        "event": TIMEOUT,
        "video_id": video_id,
        "message": f"gave up waiting for video job {video_id} (last seen: {status}); "
        "the remote job may still be running",
    }


def error_event(video_id: str, exc: VideoAPIError) -> dict[str, Any]:
    """The error text comes from the reply, never from the request: no credential can be in it."""
    return {
        "event": ERROR,
        "video_id": video_id,
        "message": str(exc),
        "code": exc.code,
        "http_status": exc.status_code,
    }


def next_step(
    video: Video, *, poll_interval: float, poll_after: float | None, deadline: float | None
) -> tuple[dict[str, Any] | None, float]:
    """After one poll: the event that ends the wait, or else how long to sleep before the next.

    The server's ``openai-poll-after-ms`` hint lengthens the wait, never shortens it; the wait
    never passes the wall-clock deadline. Shared by the trigger and the operator's worker loop.
    """
    event = job_event(video)
    if event is not None:
        return event, 0.0
    wait = max(poll_interval, poll_after or 0.0)
    if deadline is not None:
        remaining = deadline - time.time()
        if remaining <= 0:
            return timeout_event(video.id, video), 0.0
        wait = min(wait, remaining)
    return None, wait


def progress_step(video: Video | None) -> tuple[str, int] | None:
    """What a log line is written for: a new status, or progress entering a new tenth.

    Backends may report a slightly higher progress on every poll; a line per tenth says as much
    without a line per poll (which floods the triggerer log and costs CPU at scale).
    """
    return None if video is None else (video.status, video.progress // 10)


def progress_line(video: Video) -> str:
    if video.status == "in_progress":
        return f"video job {video.id}: in_progress {video.progress}%"
    return f"video job {video.id}: {video.status}"


class VideoJobTrigger(BaseTrigger):
    """Poll a video job until it is completed or failed, or until ``deadline``; yield one event.

    :param video_id: the job to wait for.
    :param conn_id: the ``openai_videos`` connection id.
    :param poll_interval: seconds between polls; a longer ``openai-poll-after-ms`` hint wins.
    :param deadline: wall-clock time (epoch seconds) after which a ``timeout`` event is yielded.
    """

    def __init__(
        self,
        video_id: str,
        conn_id: str = OpenAIVideosHook.default_conn_name,
        poll_interval: float = 10.0,
        deadline: float | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.video_id = video_id
        self.conn_id = conn_id
        self.poll_interval = float(poll_interval)
        self.deadline = deadline
        self._client: AsyncVideosClient | None = None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "video_id": self.video_id,
                "conn_id": self.conn_id,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        yield TriggerEvent(await self._wait())  # type: ignore[no-untyped-call]

    async def _wait(self) -> dict[str, Any]:
        last: Video | None = None
        while True:
            try:
                video, poll_after = await self._poll()
            except VideoAPIError as exc:  # not retryable, or the retry budget is spent
                return error_event(self.video_id, exc)
            if progress_step(video) != progress_step(last):
                self.log.info(progress_line(video))
            last = video
            event, wait = next_step(
                video, poll_interval=self.poll_interval, poll_after=poll_after, deadline=self.deadline
            )
            if event is not None:
                return event
            await asyncio.sleep(wait)

    async def _poll(self) -> tuple[Video, float | None]:
        """One status request, over the process-wide pooled client (looked up once per run)."""
        if self._client is None:
            try:
                self._client = await OpenAIVideosHook(self.conn_id).aget_client()
            except Exception as exc:  # an unknown connection, or one whose fields make no sense
                raise VideoAPIError(f"connection {self.conn_id!r}: {exc}") from None
        return await self._client.request(poll_video(self.video_id))

    async def on_kill(self) -> None:
        """Cancel (delete) the remote job when a user marked the task failed or cleared it.

        The Videos API deletes only finished jobs (409 for a running one, logged); a backend that
        lets a running job be deleted cancels it. Airflow 3.3 also calls ``on_kill`` when a trigger
        is reassigned to another triggerer (apache/airflow#73454). Deleting then would throw away a
        job a healthy task still waits for (or, after "mark success", its result), so the job is
        deleted only once the task instance is confirmed to have left the deferred state for
        another state than success; when that cannot be confirmed, nothing is deleted.
        """
        state = await self._task_instance_state()
        # deferred: reassigned, still waited for; success: marked done, keep the result.
        if state in (None, "deferred", "success"):
            self.log.warning(
                "not cancelling video job %s: the task instance is %s",
                self.video_id,
                state or "of unknown state",
            )
            return
        try:
            await OpenAIVideosHook(self.conn_id).adelete_video(self.video_id)
        except VideoAPIError as exc:
            self.log.warning("could not cancel video job %s: %s", self.video_id, exc)
        else:
            self.log.info("cancelled (deleted) video job %s: the task instance is %s", self.video_id, state)

    async def _task_instance_state(self) -> str | None:
        """The task instance's current state, asked of the triggerer's supervisor; None if unknown."""
        ti = self.task_instance
        if ti is None:
            return None
        try:
            from airflow.sdk.execution_time import task_runner
            from airflow.sdk.execution_time.comms import GetTaskStates

            comms = getattr(task_runner, "SUPERVISOR_COMMS", None)
            if comms is None:
                return None
            map_index = getattr(ti, "map_index", -1)
            reply = await comms.asend(
                GetTaskStates(
                    dag_id=ti.dag_id,
                    run_ids=[ti.run_id],
                    task_ids=[ti.task_id],
                    map_index=map_index if map_index >= 0 else None,
                )
            )
        except Exception:
            self.log.warning("could not read the state of task %s", ti.task_id, exc_info=True)
            return None
        states = getattr(reply, "task_states", {}).get(ti.run_id, {})
        key = ti.task_id if map_index < 0 else f"{ti.task_id}_{map_index}"
        if key not in states:
            return None
        state = states[key]
        return "none" if state is None else str(getattr(state, "value", state))  # None: cleared
