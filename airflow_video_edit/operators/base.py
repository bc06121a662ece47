"""``VideoJobOperator``: the life cycle of a paid video job, written once for every job kind.

It reads top-down in the order a task runs:

1. ``execute``: check the input (``job_call`` builds the request without sending it), then
   ``execute_resumable`` (Airflow's ``ResumableJobMixin``): a new try first looks in the task
   state store for a job an earlier try submitted, and resumes it instead of paying again.
2. ``submit_job``: the write-ahead submit of :mod:`airflow_video_edit.operators.submit` (an
   intent stored before the POST, the id the moment the reply arrives, a lost reply reconciled
   instead of paid twice); then XCom, before anything waits.
3. ``poll_until_complete``: look once (a job may already be done), then defer to
   :class:`~airflow_video_edit.triggers.VideoJobTrigger`, or wait in the worker; both waits are
   the loop of :mod:`airflow_video_edit.waiting` and end in the same event.
4. ``execute_complete``: one event in, the finished job out: download, Asset event, return.

A job kind is a subclass that says only what it submits (``job_call``) and which of its
arguments are templated (:mod:`airflow_video_edit.operators.jobs`). What the whole family shares
(Hook, XCom, link, lineage, deferral) is :mod:`airflow_video_edit.operators.task`. This module is imported on
every DAG parse: the Hook, httpx and the trigger are imported when a task runs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, ResumableJobMixin

from airflow_video_edit.operators.outputs import asset_extra, check_variants, download_variants, with_outlet
from airflow_video_edit.operators.task import DEFAULT_CONN_ID, VideoTaskMixin, default_deferrable

if TYPE_CHECKING:
    from airflow.sdk import Asset, Context

    from airflow_video_edit.calls import Call
    from airflow_video_edit.costs import Estimate
    from airflow_video_edit.models import Video
    from airflow_video_edit.operators.submit import Submitter, UnconfirmedSubmit
    from airflow_video_edit.waiting import Wait

# The status reported to the mixin for a stored id the backend no longer knows (404).
GONE = "gone"
# ... and for a stored id whose request has changed since (a clear after the prompt was edited).
CHANGED = "request changed"


class VideoJobOperator(VideoTaskMixin, ResumableJobMixin, BaseOperator):
    """Submit one video job, push its id, wait for it, download the result, record an Asset event.

    Subclasses implement :meth:`job_call`. Arguments common to every job kind:

    :param destination: where to download the result (templated): a file (``.../clip.mp4``), a
        folder (an existing directory or a path ending in ``/``), or an ``ObjectStoragePath``.
        Nothing is downloaded when it is unset.
    :param variants: which assets to download: ``video``, ``thumbnail``, ``spritesheet``.
    :param asset: an Asset to record an event on when the result is downloaded; its extra carries
        the video id, size, seconds, model and paths, so a publishing DAG can be scheduled on it.
    :param conn_id: the ``openai_videos`` connection.
    :param poll_interval: seconds between status checks.
    :param timeout: how long to wait for the job (seconds or a timedelta); then the task fails
        and says the remote job may still be running (the next try resumes it).
    :param deferrable: wait in the triggerer, freeing the worker slot (default:
        ``[operators] default_deferrable``).
    :param unconfirmed_submit: when an earlier submit's reply was lost and the job it may have
        created cannot be identified (several matching jobs, a mapped edit, a backend without
        list): ``"fail"`` (default: nothing is paid twice; the error names the candidates) or
        ``"resubmit"`` (submit again, logged).
    :param resubmit_if_gone: when the job an earlier try submitted now answers 404 (deleted,
        expired, forgotten by the backend): ``False`` (default) fails the task, naming the job and
        how to allow a new one; ``True`` submits a new, paid job, with a WARNING line.
    :param max_cost: refuse to submit a job whose estimated cost (the connection extra ``prices``,
        in its currency) exceeds this, or cannot be estimated (templated). Nothing is sent.
    :param dry_run: check the input, the connection, the source, the model (in the price table,
        when there is one) and ``max_cost``; log what would be submitted and its estimate; submit
        nothing. Returns ``{"dry_run": True, "job_kind", "request", "estimated_cost"}``.
    :param cancel_on_kill: delete the job when the task is killed while it waits, if the job has
        finished (default ``True``). The Videos API cannot cancel a running job: it finishes, and
        is billed, and the log says so. Deferred, only "mark failed" deletes (a clear leaves the
        job to the new try); in the worker, any kill (mark failed, clear, timeout). See
        :mod:`airflow_video_edit.cancel`.
    """

    template_fields: Sequence[str] = ("destination", "max_cost")
    template_fields_renderers = {"prompt": "txt"}
    # The task-state-store key under which a try leaves its job for the next one. Never rename
    # it: a try of the new code must find the job an in-flight try of the old code stored.
    external_id_key = "video_id"
    # A word for log lines ("submitted video edit job ...").
    job_kind = "video"
    # What on_kill goes by when it cannot look: the job as last seen, the worker's wait.
    _seen: Video | None = None
    _wait: Wait | None = None

    def __init__(
        self,
        *,
        destination: Any = None,
        variants: Sequence[str] = ("video",),
        asset: Asset | None = None,
        conn_id: str = DEFAULT_CONN_ID,
        poll_interval: float = 10.0,
        timeout: timedelta | float = timedelta(hours=2),
        deferrable: bool | None = None,
        unconfirmed_submit: UnconfirmedSubmit = "fail",
        cancel_on_kill: bool = True,
        resubmit_if_gone: bool = False,
        max_cost: float | str | None = None,
        dry_run: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**with_outlet(kwargs, asset))
        if self.retry_policy is None:  # the user's own (argument or default_args) always wins
            from airflow_video_edit.operators.retry_policy import video_job_retry_policy

            self.retry_policy = video_job_retry_policy()
        self.resubmit_if_gone = bool(resubmit_if_gone)
        if isinstance(max_cost, bool) or (isinstance(max_cost, int | float) and not max_cost >= 0):
            raise ValueError("max_cost: must be a non-negative number")
        self.max_cost = max_cost  # a template is checked when rendered
        self.is_dry_run = bool(dry_run)  # (BaseOperator.dry_run is a method: rendering only)
        self._estimate: Estimate | None = None
        if poll_interval <= 0:
            raise ValueError("poll_interval: must be positive")
        if unconfirmed_submit not in ("fail", "resubmit"):
            raise ValueError("unconfirmed_submit: must be 'fail' or 'resubmit'")
        self.unconfirmed_submit: UnconfirmedSubmit = unconfirmed_submit
        self.cancel_on_kill = cancel_on_kill
        self.destination = destination
        self.variants = check_variants(variants)
        self.asset = asset
        self.conn_id = conn_id
        self.poll_interval = float(poll_interval)
        self.timeout = timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout)
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self._video_id: str | None = None
        self._result: dict[str, Any] | None = None

    def job_call(self) -> Call[Video]:
        """The POST that creates this operator's job, its input checked (nothing is sent)."""
        raise NotImplementedError

    # 1. -----------------------------------------------------------------------------------------
    def execute(self, context: Context) -> Any:
        call = self.job_call()  # a bad prompt or source fails here, before any request: it costs nothing
        estimate = self.estimate_cost(context, call)
        if self.is_dry_run:
            return self.dry_run_result(call, estimate)
        return self.execute_resumable(context)

    def estimate_cost(self, context: Context, call: Call[Video]) -> Estimate:
        """The job's estimated cost (:mod:`airflow_video_edit.costs`), logged and in XCom
        (``estimated_cost``) before anything is submitted."""
        from airflow_video_edit import costs

        settings = self.hook.settings
        source = getattr(self, "video", None)  # an edit's, remix's or extension's source
        estimate = self._estimate = costs.estimate(
            call,
            settings.prices,
            default_model=settings.default_model,
            source_argument=source,
            read=self.hook.get_video,
        )
        self.log.info("estimated cost of this video %s job: %s", self.job_kind, estimate.describe())
        if estimate.value() is not None:
            context["ti"].xcom_push(key="estimated_cost", value=estimate.value())
        return estimate

    def dry_run_result(self, call: Call[Video], estimate: Estimate) -> dict[str, Any]:
        """``dry_run=True``: everything checked (the input and the connection already), nothing sent."""
        from airflow_video_edit import costs
        from airflow_video_edit.errors import InvalidInputError

        prices, job = self.hook.settings.prices, f"video {self.job_kind} job"
        if prices is not None and prices.price(estimate.model) is None:
            raise InvalidInputError(
                f"dry run: model {estimate.model!r} has no price in the connection's extra 'prices' "
                f"(priced: {', '.join(prices.model_names)})",
                param="model",
            )
        costs.check_cap(estimate, self.max_cost, job)
        request = costs.describe_request(call, self.hook.settings.default_model)
        self.log.info(
            "dry run: would submit a %s: %s: estimated %s; nothing was submitted",
            job,
            costs.request_text(request),
            estimate.describe(),
        )
        return {
            "dry_run": True,
            "job_kind": self.job_kind,
            "request": request,
            "estimated_cost": estimate.value(),
        }

    # 2. -----------------------------------------------------------------------------------------
    def submit_job(self, context: Context) -> str:
        from airflow_video_edit.costs import check_cap

        call = self.job_call()
        estimate = self._estimate or self.estimate_cost(context, call)
        check_cap(estimate, self.max_cost, f"video {self.job_kind} job")  # over it: nothing is sent
        video = self.submitter(context).submit(call)
        self.log.info("submitted video %s job %s (%s)", self.job_kind, video.id, video.status)
        if estimate.amount is not None:
            from airflow.sdk.observability.stats import incr

            # Stats counts whole numbers: thousandths of the currency unit.
            cost = round(estimate.amount * 1000)
            incr("video_edit.estimated_cost_submitted_milli", cost, tags={"currency": estimate.currency})
        self._push_job(context, video)
        return video.id

    def submitter(self, context: Context) -> Submitter:
        from airflow_video_edit.operators.submit import Submitter

        ti = context.get("ti")
        return Submitter(
            self.hook,
            context.get("task_state_store") if self.durable else None,
            id_key=self.external_id_key,
            unconfirmed=self.unconfirmed_submit,
            mapped=getattr(ti, "map_index", -1) not in (-1, None),
            log=self.log,
        )

    def get_job_status(self, external_id: Any, context: Context) -> str:
        from airflow_video_edit.errors import NotFoundError, VideoJobGone

        if self.submitter(context).changed_since(self.job_call()):
            self.log.warning(
                "stored video job %s was submitted for another request (the task changed since): "
                "submitting the current one",
                external_id,
            )
            return CHANGED
        try:
            return self.hook.get_video(str(external_id)).status
        except NotFoundError:
            # Deleted, expired or forgotten by the backend: nothing to resume. A new job is a
            # second payment for this task: only where the user allows it.
            if not self.resubmit_if_gone:
                raise VideoJobGone(
                    f"video job {external_id}, which an earlier try of this task submitted, no longer "
                    f"exists (404: deleted, expired or forgotten by the backend). Nothing was "
                    f"submitted: a new job would be paid for again. To submit one, set "
                    f"resubmit_if_gone=True on the operator and clear the task.",
                    code="not_found",
                ) from None
            self.log.warning(
                "stored video job %s no longer exists; resubmit_if_gone=True: submitting a NEW "
                "paid video %s job (estimated cost: %s)",
                external_id,
                self.job_kind,
                self._estimate.describe() if self._estimate is not None else "unknown",
            )
            return GONE

    def is_job_active(self, status: str) -> bool:
        from airflow_video_edit.models import TERMINAL_STATUSES

        return status not in TERMINAL_STATUSES and status not in (GONE, CHANGED)

    def is_job_succeeded(self, status: str) -> bool:
        from airflow_video_edit.models import COMPLETED

        return status == COMPLETED

    # 3. -----------------------------------------------------------------------------------------
    def poll_until_complete(self, external_id: Any, context: Context) -> Any:
        """Wait for the job and return the task's result (the mixin returns it on a resumed try)."""
        from airflow_video_edit.waiting import Wait, job_event, wait_blocking

        video, poll_after = self.hook.poll_video(str(external_id))
        self._push_job(context, video)
        deadline = time.time() + self.timeout
        # A job that is already terminal finishes here: deferring for it would race the
        # scheduler (apache/airflow#72716) for nothing.
        event = job_event(video)
        if event is None and self.deferrable:
            self.defer_to_trigger(video.id, poll_interval=self.poll_interval, deadline=deadline)
        if event is None:
            state = self._wait = Wait(
                video.id, poll_interval=self.poll_interval, deadline=deadline, log=self.log
            )
            event = wait_blocking(state, lambda: self.hook.poll_video(video.id), first=(video, poll_after))
        return self.execute_complete(context, event)

    def get_job_result(self, external_id: Any, context: Context) -> Any:
        """A resumed try whose job had already completed: finish it without waiting."""
        from airflow_video_edit.waiting import job_event

        if self._result is not None:
            return self._result
        video = self.hook.get_video(str(external_id))
        self._push_job(context, video)
        return self.execute_complete(context, job_event(video) or {})

    # 4. -----------------------------------------------------------------------------------------
    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Turn the trigger's (or the worker loop's) one event into the task's result or failure.

        After a timeout or an error the job id stays in the task state store (the job may still
        run, and a retry resumes it); after a failure the mixin submits anew.
        """
        from airflow_video_edit.waiting import finished_video

        self._video_id = event.get("video_id", self._video_id)
        video = finished_video(event)
        self._push_job(context, video)  # XCom ``job``: the finished job, not the submit-time one
        if self.destination is not None:
            outputs = download_variants(self.hook, video.id, self.destination, self.variants, self.log)
            context["ti"].xcom_push(key="outputs", value=outputs)
            self._outputs = outputs  # final paths, for OpenLineage
            if self.asset is not None and outputs:
                extra = asset_extra(video, outputs, self._estimated_cost(context))
                context["outlet_events"][self.asset].extra = extra
        self._forget_job(context)
        self._result = video.model_dump(mode="json")
        return self._result

    def _estimated_cost(self, context: Context) -> dict[str, Any] | None:
        """This try's estimate: made in this process, else (resumed after deferring) its XCom."""
        if self._estimate is not None:
            return self._estimate.value()
        pull = getattr(context["ti"], "xcom_pull", None)
        return pull(task_ids=self.task_id, key="estimated_cost") if pull is not None else None

    def _push_job(self, context: Context, video: Video) -> None:
        """In XCom before anything waits, and again when it finished; remembered for ``on_kill``."""
        if self._seen is not None and self._seen == video:
            return  # pushed already (a resumed try that found it finished)
        self._video_id, self._seen = video.id, video
        self.push_job(context, video)

    def _forget_job(self, context: Context) -> None:
        """Once a job's result is delivered, a later run of the task (a clear) submits anew."""
        store = context.get("task_state_store")
        if store is not None:
            store.delete(self.external_id_key)
        self.submitter(context).forget()

    def on_kill(self) -> None:
        """Killed in the worker (marked failed, cleared, timed out) while its job runs or downloads:
        a finished job is deleted, a running one is left to finish and said so
        (:mod:`airflow_video_edit.cancel`). A deferred task's job is the trigger's."""
        if not self._video_id:
            return
        from airflow_video_edit.cancel import CANCEL_OFF, cancel_blocking

        if not self.cancel_on_kill:
            self.log.info(CANCEL_OFF, self._video_id)
            return
        last = self._wait.last if self._wait is not None and self._wait.last is not None else self._seen
        cancel_blocking(self.hook, self._video_id, last, self.log)
