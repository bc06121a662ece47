"""What ``on_kill`` does with a job: one decision for the trigger and the operator.

The Videos API cannot cancel a job: a running one finishes, and is billed, whatever the client
does (a DELETE of a running job is a 409). Deleting a *finished* job only removes its content.
So ``on_kill`` (the trigger's once its task instance is ``failed``, the operator's when it is
killed in the worker) does this, and nothing else:

1. ``cancel_on_kill=False``: nothing.
2. One look at the job (a GET); if that fails, the status the wait last saw.
3. A job still running: one line says it will finish and be billed; no request is sent.
4. A finished job (completed or failed): one DELETE; its outcome is logged.
5. A job whose status cannot be told: logged, nothing is deleted.

Both requests go without retries or backoff and with a short timeout (:func:`quick_settings`):
the triggerer sends its cancel again about every second, which cancels an ``on_kill`` still
running, so a cancel has about a second in all. The steps are written once, as a generator of
requests (:func:`cancel_steps`); :func:`cancel_blocking` and :func:`cancel_async` only send them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from airflow_video_edit import calls
from airflow_video_edit.errors import NotFoundError, VideoAPIError

if TYPE_CHECKING:
    from airflow_video_edit.calls import Call
    from airflow_video_edit.hooks import OpenAIVideosHook
    from airflow_video_edit.models import Video
    from airflow_video_edit.settings import ClientSettings
    from airflow_video_edit.waiting import Log

# Seconds for each request of a cancel (connect, then read): on_kill has about a second.
CANCEL_TIMEOUT = 0.8
STILL_RUNNING = (
    "video job %s is still running and will finish (and be billed): the Videos API cannot cancel a "
    "running job"
)
CANCEL_OFF = "not deleting video job %s: cancel_on_kill is off"
Steps = Generator["Call[Any]", Any, None]


def quick_settings(settings: ClientSettings) -> ClientSettings:
    """``settings`` for one attempt with a short timeout: no retry, no backoff."""
    return replace(settings, max_retries=0, read_timeout=CANCEL_TIMEOUT, connect_timeout=CANCEL_TIMEOUT)


def cancel_steps(video_id: str, last: Video | None, log: Log) -> Steps:
    """The requests of one cancel, as a generator: each ``yield`` is a request; the sender sends
    back its result, or throws in the :class:`VideoAPIError` it failed with. Logs the outcome.

    :param last: the job as the wait last saw it (``None``: never seen), used when the GET fails.
    """
    try:
        video: Video | None = yield calls.retrieve_video(video_id)
    except NotFoundError:
        log.info("video job %s is already gone: nothing to delete", video_id)
        return
    except VideoAPIError as exc:
        if last is None:
            log.warning("not deleting video job %s: could not tell whether it finished (%s)", video_id, exc)
            return
        log.warning("could not look at video job %s (%s): going by its last seen status", video_id, exc)
        video = last
    assert video is not None
    if not video.is_terminal:
        log.warning(STILL_RUNNING, video_id)
        return
    try:
        yield calls.delete_video(video_id)
    except VideoAPIError as exc:
        log.warning("could not delete finished video job %s (%s): %s", video_id, video.status, exc)
    else:
        log.info("deleted finished video job %s (%s)", video_id, video.status)


def cancel_blocking(hook: OpenAIVideosHook, video_id: str, last: Video | None, log: Log) -> None:
    """Run :func:`cancel_steps` in the worker, on a client of its own (``on_kill`` runs in a signal
    handler: the hook's client may be in the middle of a request)."""
    from airflow_video_edit.clients import VideosClient

    with VideosClient(quick_settings(hook.settings)) as client:
        steps = cancel_steps(video_id, last, log)
        reply: Any = None
        failure: VideoAPIError | None = None
        while True:
            try:
                call = steps.send(reply) if failure is None else steps.throw(failure)
            except StopIteration:
                return
            try:
                reply, failure = client.request(call), None
            except VideoAPIError as exc:
                reply, failure = None, exc


async def cancel_async(hook: OpenAIVideosHook, video_id: str, last: Video | None, log: Log) -> None:
    """Run :func:`cancel_steps` in the triggerer, on the pooled client of the quick settings."""
    from airflow_video_edit.clients import shared_async_client

    client = await shared_async_client(quick_settings(await hook.aget_settings()))
    steps = cancel_steps(video_id, last, log)
    reply: Any = None
    failure: VideoAPIError | None = None
    while True:
        try:
            call = steps.send(reply) if failure is None else steps.throw(failure)
        except StopIteration:
            return
        try:
            reply, failure = await client.request(call), None
        except VideoAPIError as exc:
            reply, failure = None, exc
        except asyncio.CancelledError:
            log.warning(
                "the cancel of video job %s was cut short (%s %s unanswered after the triggerer's "
                "time for on_kill)",
                video_id,
                call.method,
                call.path,
            )
            raise
