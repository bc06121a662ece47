"""The operators: submit a video job, push its id, wait (deferred or in the worker), download.

``VideoEditOperator`` reads top-down in the order a task runs:

1. ``execute``: check the input, then ``execute_resumable`` (Airflow's ``ResumableJobMixin``):
   a new try first looks in the task state store for a job an earlier try submitted, and resumes
   it instead of paying for a second one.
2. ``submit_job``: one ``POST /videos/edits``; the id goes to the state store and to XCom
   before anything waits.
3. ``poll_until_complete``: look once (a job may already be done), then defer to
   :class:`~airflow_video_edit.triggers.VideoJobTrigger`, or poll in the worker.
4. ``execute_complete``: one event in, the finished job out: download, asset event, return.

This module is imported on every DAG parse: the Hook, httpx and the trigger are imported lazily.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, ResumableJobMixin, conf

if TYPE_CHECKING:
    from airflow.sdk import Asset, Context

    from airflow_video_edit.hooks import OpenAIVideosHook
    from airflow_video_edit.models import Video

DEFAULT_CONN_ID = "openai_videos_default"
VARIANT_SUFFIXES = {"video": ".mp4", "thumbnail": "_thumbnail.webp", "spritesheet": "_spritesheet.webp"}
# The status reported to the mixin for a stored id the backend no longer knows (404).
GONE = "gone"


class VideoJobFailed(Exception):
    """The video job failed, timed out, or could not be followed. Carries the backend's reason."""


class VideoEditOperator(ResumableJobMixin, BaseOperator):
    """Edit a video with a prompt, wait for the job, and optionally download the result.

    :param prompt: how to edit the video (templated; 1 to 32,000 characters).
    :param video: the source: a completed video's id (``"video_..."``, ``{"id": ...}``, or an
        upstream task's returned job), or a file to upload (a local path or an
        ``ObjectStoragePath``). Templated.
    :param model: the model; defaults to the connection's default model, else the backend's.
    :param destination: where to download the result (templated): a file (``.../clip.mp4``), a folder
        (an existing directory or a path ending in ``/``), or an ``ObjectStoragePath``. Nothing
        is downloaded when it is unset.
    :param variants: which assets to download: ``video``, ``thumbnail``, ``spritesheet``.
    :param asset: an Asset to record an event on when the result is downloaded; its extra carries
        the video id, size, seconds and path, so a publishing DAG can be scheduled on it.
    :param conn_id: the ``openai_videos`` connection.
    :param poll_interval: seconds between status checks.
    :param timeout: how long to wait for the job (seconds or a timedelta); then the task fails
        and says the remote job may still be running.
    :param deferrable: wait in the triggerer, freeing the worker slot (default:
        ``[operators] default_deferrable``).

    When a user marks the task failed or clears it while it waits, the remote job is deleted
    (by the operator's ``on_kill`` in the worker, or the trigger's ``on_kill`` when deferred).
    """

    template_fields: Sequence[str] = ("prompt", "video", "model", "destination")
    template_fields_renderers = {"prompt": "txt"}
    ui_color = "#e8d5f5"
    # The task-state-store key under which a try leaves its job for the next one.
    external_id_key = "video_id"

    def __init__(
        self,
        *,
        prompt: str,
        video: Any,
        model: str | None = None,
        destination: Any = None,
        variants: Sequence[str] = ("video",),
        asset: Asset | None = None,
        conn_id: str = DEFAULT_CONN_ID,
        poll_interval: float = 10.0,
        timeout: timedelta | float = timedelta(hours=2),
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        if asset is not None:
            kwargs["outlets"] = [*kwargs.get("outlets", []), asset]
        super().__init__(**kwargs)
        from airflow_video_edit.models import VARIANTS

        unknown = [v for v in variants if v not in VARIANTS]
        if unknown:
            raise ValueError(f"variants: unknown {unknown}; choose from {', '.join(VARIANTS)}")
        if poll_interval <= 0:
            raise ValueError("poll_interval: must be positive")
        self.prompt = prompt
        self.video = video
        self.model = model
        self.destination = destination
        self.variants = tuple(variants)
        self.asset = asset
        self.conn_id = conn_id
        self.poll_interval = float(poll_interval)
        self.timeout = timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout)
        self.deferrable = deferrable
        self._video_id: str | None = None
        self._result: dict[str, Any] | None = None

    @cached_property
    def hook(self) -> OpenAIVideosHook:
        from airflow_video_edit.hooks import OpenAIVideosHook

        return OpenAIVideosHook(self.conn_id)

    # 1. -----------------------------------------------------------------------------------------
    def execute(self, context: Context) -> Any:
        from airflow_video_edit import http

        # Checked before any request: a bad prompt or source costs nothing.
        http.edit_video(self.video, self.prompt, model=self.model)
        return self.execute_resumable(context)

    # 2. -----------------------------------------------------------------------------------------
    def submit_job(self, context: Context) -> str:
        video = self.hook.edit_video(self.video, self.prompt, model=self.model)
        self.log.info("submitted video edit job %s (%s)", video.id, video.status)
        self._push_job(context, video)
        return video.id

    def get_job_status(self, external_id: Any, context: Context) -> str:
        from airflow_video_edit.errors import NotFoundError

        try:
            return self.hook.get_video(str(external_id)).status
        except NotFoundError:
            # Deleted, or forgotten by the backend: nothing to resume, and failing here would
            # fail every later try (and every clear) of the task. Submit anew.
            self.log.warning("stored video job %s no longer exists; submitting a new one", external_id)
            return GONE

    def is_job_active(self, status: str) -> bool:
        from airflow_video_edit.models import TERMINAL_STATUSES

        return status not in TERMINAL_STATUSES and status != GONE

    def is_job_succeeded(self, status: str) -> bool:
        return status == "completed"

    # 3. -----------------------------------------------------------------------------------------
    def poll_until_complete(self, external_id: Any, context: Context) -> Any:
        """Wait for the job and return the task's result (the mixin returns it on a resumed try)."""
        from airflow_video_edit.triggers import job_event

        video = self.hook.get_video(str(external_id))
        self._push_job(context, video)
        deadline = time.time() + self.timeout
        # A job that is already terminal finishes here: deferring for it would race the
        # scheduler (apache/airflow#72716) for nothing.
        event = job_event(video)
        if event is None and self.deferrable:
            from airflow_video_edit.triggers import VideoJobTrigger

            self.defer(
                trigger=VideoJobTrigger(
                    video_id=video.id,
                    conn_id=self.conn_id,
                    poll_interval=self.poll_interval,
                    deadline=deadline,
                ),
                method_name="execute_complete",
            )
        if event is None:
            event = self._poll_in_worker(video, deadline)
        return self.execute_complete(context, event)

    def _poll_in_worker(self, video: Video, deadline: float) -> dict[str, Any]:
        """The non-deferrable wait: the trigger's loop, in the worker, with the same events."""
        from airflow_video_edit.errors import VideoAPIError
        from airflow_video_edit.triggers import error_event, next_step, progress_line, progress_step

        last: Video | None = None
        poll_after: float | None = None
        while True:
            if progress_step(video) != progress_step(last):
                self.log.info(progress_line(video))
            last = video
            event, wait = next_step(
                video, poll_interval=self.poll_interval, poll_after=poll_after, deadline=deadline
            )
            if event is not None:
                return event
            time.sleep(wait)
            try:
                video, poll_after = self.hook.poll_video(video.id)
            except VideoAPIError as exc:
                return error_event(video.id, exc)

    def get_job_result(self, external_id: Any, context: Context) -> Any:
        """A resumed try whose job had already completed: finish it without waiting."""
        from airflow_video_edit.triggers import job_event

        if self._result is not None:
            return self._result
        video = self.hook.get_video(str(external_id))
        self._push_job(context, video)
        return self.execute_complete(context, job_event(video) or {})

    # 4. -----------------------------------------------------------------------------------------
    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Turn the trigger's (or the worker loop's) one event into the task's result or failure."""
        from airflow_video_edit.models import Video

        kind = event.get("event")
        video_id = event.get("video_id", "?")
        self._video_id = video_id
        if kind != "completed":
            # The job id stays in the task state store: after a timeout or an error the job may
            # still run, and a retry resumes it; after a failure the mixin submits anew.
            if kind == "failed":
                raise VideoJobFailed(
                    f"video job {video_id} failed: {event.get('code')}: {event.get('message')}"
                )
            raise VideoJobFailed(event.get("message") or f"video job {video_id}: unexpected event {event!r}")
        video = Video.model_validate(event["video"])
        outputs = self._download(video)
        if outputs:
            context["ti"].xcom_push(key="outputs", value=outputs)
            self._record_asset_event(context, video, outputs)
        self._forget_job(context)
        self._result = video.model_dump(mode="json")
        return self._result

    def _download(self, video: Video) -> dict[str, str]:
        if self.destination is None:
            return {}
        outputs = {}
        for variant in self.variants:
            destination = self._destination(video.id, variant)
            result = self.hook.download_content(video.id, destination, variant=variant)
            self.log.info(
                "downloaded %s of %s to %s (%d bytes)", variant, video.id, result.path, result.bytes
            )
            outputs[variant] = result.path
        return outputs

    def _destination(self, video_id: str, variant: str) -> Any:
        """A folder (existing, or ending in /) gets ``<id>.mp4``; a file's stem names the rest."""
        output: Any = self.destination
        suffix = VARIANT_SUFFIXES[variant]
        is_local = isinstance(output, str | Path)
        text = str(output)
        if text.endswith("/") or (is_local and Path(text).is_dir()) or (not is_local and output.is_dir()):
            folder = Path(text) if is_local else output
            return folder / f"{video_id}{suffix}"
        file = Path(text) if is_local else output
        if variant == "video":
            return file
        return file.parent / f"{file.stem}{suffix}"

    def _record_asset_event(self, context: Context, video: Video, outputs: dict[str, str]) -> None:
        if self.asset is None:
            return
        extra: dict[str, Any] = {
            "video_id": video.id,
            "size": video.size,
            "seconds": video.seconds,
            "model": video.model,
            "path": outputs.get("video") or next(iter(outputs.values())),
            "outputs": outputs,
        }
        context["outlet_events"][self.asset].extra = extra

    def _push_job(self, context: Context, video: Video) -> None:
        """The id (key ``video_id``) and the job as returned, in XCom before anything waits."""
        self._video_id = video.id
        ti = context["ti"]
        ti.xcom_push(key="video_id", value=video.id)
        ti.xcom_push(key="job", value=video.model_dump(mode="json"))

    def _forget_job(self, context: Context) -> None:
        """Once a job's result is delivered, a later run of the task (a clear) submits anew."""
        store = context.get("task_state_store")
        if store is not None:
            store.delete(self.external_id_key)

    def on_kill(self) -> None:
        """A non-deferred wait killed by a user: delete the remote job (a deferred one: the trigger)."""
        if not self._video_id:
            return
        from airflow_video_edit.errors import VideoAPIError

        try:
            self.hook.delete_video(self._video_id)
            self.log.info("cancelled (deleted) video job %s", self._video_id)
        except VideoAPIError as exc:
            self.log.warning("could not cancel video job %s: %s", self._video_id, exc)
