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

Both requests go without retries or backoff and with a short timeout (:func:`quick_settings`).
The triggerer sends its cancel again about every second until the trigger has ended, and each
one cancels an ``on_kill`` still running; reading the task instance's state alone can take
longer (the triggerer's first call of its in-process Execution API took 6 s in the e2e drills).
So the trigger's ``on_kill`` runs its work in a task of its own that those repeated cancels do
not reach (:func:`outlast_cancels`), bounded by :data:`KILL_BUDGET`. The steps are written once,
as a generator of requests (:func:`cancel_steps`); :func:`cancel_blocking` and
:func:`cancel_async` only send them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator
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

# Seconds for each request of a cancel (connect, then read).
CANCEL_TIMEOUT = 0.8
# Seconds for all of a trigger's on_kill, the task state read included; below the triggerer's
# [triggerer] on_kill_timeout (30 s by default).
KILL_BUDGET = 15.0
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
        _count_skipped()
        return
    try:
        yield calls.delete_video(video_id)
    except VideoAPIError as exc:
        log.warning("could not delete finished video job %s (%s): %s", video_id, video.status, exc)
    else:
        log.info("deleted finished video job %s (%s)", video_id, video.status)


def _count_skipped() -> None:
    """Metric ``video_edit.cancels_skipped``: a kill that left a running (billed) job to finish."""
    from airflow.sdk.observability.stats import incr

    incr("video_edit.cancels_skipped")


def _next_step(steps: Steps, reply: Any, failure: VideoAPIError | None) -> Call[Any] | None:
    """The next request of ``steps`` given the last one's reply (or failure); ``None`` at the end."""
    try:
        return steps.send(reply) if failure is None else steps.throw(failure)
    except StopIteration:
        return None


def cancel_blocking(hook: OpenAIVideosHook, video_id: str, last: Video | None, log: Log) -> None:
    """Run :func:`cancel_steps` in the worker, on a client of its own (``on_kill`` runs in a signal
    handler: the hook's client may be in the middle of a request)."""
    from airflow_video_edit.clients import VideosClient

    with VideosClient(quick_settings(hook.settings)) as client:
        steps = cancel_steps(video_id, last, log)
        reply: Any = None
        failure: VideoAPIError | None = None
        while (call := _next_step(steps, reply, failure)) is not None:
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
    while (call := _next_step(steps, reply, failure)) is not None:
        try:
            reply, failure = await client.request(call), None
        except VideoAPIError as exc:
            reply, failure = None, exc
        except asyncio.CancelledError:
            log.warning(
                "the cancel of video job %s was cut short (%s /%s unanswered)",
                video_id,
                call.method,
                call.path,
            )
            raise


# on_kill work that outlived the on_kill that started it (on Python 3.11, a second cancel ends
# the triggerer's wait_for around on_kill): referenced here until done, or the loop may drop it.
_outliving: set[asyncio.Future[None]] = set()


async def outlast_cancels(work: Coroutine[Any, Any, None], video_id: str, log: Log) -> None:
    """Run ``work`` to its end, however often the triggerer cancels the caller meanwhile, for at
    most :data:`KILL_BUDGET` seconds (then ``work`` is cancelled, and that is logged)."""
    task = asyncio.ensure_future(work)
    _outliving.add(task)
    task.add_done_callback(_outliving.discard)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + KILL_BUDGET
    while not task.done():
        remaining = deadline - loop.time()
        if remaining <= 0:
            task.cancel()
            log.warning("gave up the cancel of video job %s after %g s", video_id, KILL_BUDGET)
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), remaining)
        except asyncio.CancelledError:
            # The triggerer's cancel, sent again: the work goes on (bounded). Python >= 3.11
            # counts cancellations; this one is handled, so it is uncounted.
            current = asyncio.current_task()
            if current is not None and hasattr(current, "uncancel"):
                current.uncancel()
            continue
        except asyncio.TimeoutError:  # (on Python 3.10 not the builtin TimeoutError)
            continue
    if not task.cancelled():
        task.result()
