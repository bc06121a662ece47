"""The write-ahead submit: one task's request never pays for a second job.

A submit creates a paid job, and its reply can be lost (a reset, a timeout, a 5xx, a malformed
body) after the job was created, or the worker can die between the POST and storing the id. So:

1. Before the POST, an **intent** goes to the task state store (shared by all tries): a fresh
   key, the time, and a fingerprint of the request (kind, model, size, seconds, prompt digest,
   source id or file digest). The POST carries the key as ``Idempotency-Key``.
2. The moment the reply arrives the job's id is stored, in the intent and under the mixin's key,
   before anything else (XCom after).
3. A submit that failed ambiguously, or a later try that finds an intent without an id, first
   finds out whether the job exists:
   - a backend that honours idempotency keys (connection extra ``idempotency_keys``) answers the
     same key with the job it created: the request is simply sent again;
   - otherwise the recent jobs are listed (newest first, created at or after the intent minus
     a clock skew, after a short settling delay): **exactly one** match is adopted; **none** means
     the job was not created, and the request is sent again (same key);
   - **several** matches, a match that cannot be told apart (a mapped edit or extension: a Video
     does not name its source, so a sibling's job looks the same), or a backend without list:
     ``unconfirmed_submit`` decides: ``"fail"`` (the default: a clear error naming the
     candidates) or ``"resubmit"`` (pay again, logged).
4. A resumed id whose request has changed since (a clear after the prompt was edited) is not
   resumed: the new request is submitted.

Metrics (Airflow's ``Stats``, tag ``route``): ``video_edit.jobs_submitted`` (a job-creating POST
answered), ``video_edit.jobs_adopted`` (a lost submit's job found and taken),
``video_edit.submits_unconfirmed`` (stopped: could not tell; or resubmitted on the user's word).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote

from airflow_video_edit import calls
from airflow_video_edit.errors import (
    APIStatusError,
    MalformedResponseError,
    RequestTimeoutError,
    ServerError,
    TransportError,
    VideoAPIError,
)

if TYPE_CHECKING:
    from airflow_video_edit.calls import Call
    from airflow_video_edit.hooks import OpenAIVideosHook
    from airflow_video_edit.models import Video
    from airflow_video_edit.waiting import Log

UnconfirmedSubmit = Literal["fail", "resubmit"]
INTENT_KEY = "video_submit_intent"
# created_at is in whole seconds, and two clocks are involved.
CLOCK_SKEW_SECONDS = 2.0
# A list may lag a create by a moment.
SETTLE_SECONDS = 2.0
LIST_PAGE_CAP = 10
# Ambiguous failures of one submit before the task gives up (each one reconciled first).
MAX_SUBMIT_ROUNDS = 3
_CHUNK = 1024 * 1024


class UnconfirmedSubmitError(VideoAPIError):
    """An earlier submit may have created a job that cannot be identified: paying again is the
    user's decision (``unconfirmed_submit="resubmit"``)."""


@dataclass(frozen=True)
class Intent:
    """What the task state store keeps about one submit (JSON)."""

    key: str
    at: float
    fingerprint: dict[str, Any]
    video_id: str | None = None

    @classmethod
    def new(cls, fingerprint: dict[str, Any]) -> Intent:
        return cls(key=f"airflow-video-edit-{uuid.uuid4()}", at=time.time(), fingerprint=fingerprint)

    @classmethod
    def load(cls, value: Any) -> Intent | None:
        if not isinstance(value, dict) or not {"key", "at", "fingerprint"} <= value.keys():
            return None
        return cls(value["key"], float(value["at"]), dict(value["fingerprint"]), value.get("video_id"))


# --- the fingerprint ------------------------------------------------------------------------------
def fingerprint(call: Call[Any], default_model: str | None) -> dict[str, Any]:
    """What identifies a request: route, model, size, seconds, prompt digest, source."""
    call = call.with_default_model(default_model)
    fields: dict[str, Any] = dict(call.json or call.form or {})
    prompt = str(fields.get("prompt", ""))
    source = fields.get("video")
    route, source_id = call.path, source.get("id") if isinstance(source, dict) else None
    if call.path.endswith("/remix"):  # videos/<quoted id>/remix
        route, source_id = "remix", unquote(call.path.split("/")[1])
    print_ = {
        "route": route,
        "model": fields.get("model"),
        "size": fields.get("size"),
        "seconds": None if fields.get("seconds") is None else str(fields["seconds"]),
        "prompt_sha256": hashlib.sha256(prompt.encode()).hexdigest(),
        "source_id": source_id,
    }
    if call.upload is not None:
        name, upload = call.upload
        digest = hashlib.sha256()
        with upload.open() as handle:
            while block := handle.read(_CHUNK):
                digest.update(block)
        print_[f"{name}_sha256"] = digest.hexdigest()
    return print_


def _matches(video: Video, printed: dict[str, Any], since: float) -> bool:
    if video.created_at is not None and video.created_at < since:
        return False
    prompt = video.prompt
    if prompt is not None and hashlib.sha256(prompt.encode()).hexdigest() != printed["prompt_sha256"]:
        return False
    if printed["route"] == "remix" and video.remixed_from_video_id != printed["source_id"]:
        return False
    checks = ["model", "size"] + ([] if printed["route"] == "videos/extensions" else ["seconds"])
    return all(printed[name] is None or getattr(video, name) == printed[name] for name in checks)


def _indistinct(printed: dict[str, Any], mapped: bool) -> bool:
    """A sibling's job looks the same: a mapped edit or extension (a Video names no source)."""
    return mapped and printed["route"] in ("videos/edits", "videos/extensions")


# --- finding a job an unconfirmed submit may have created -----------------------------------------
@dataclass
class Found:
    """What the list says about one intent: the matches, or that the backend cannot list."""

    matches: list[Video]
    listed: bool = True


def find(hook: OpenAIVideosHook, intent: Intent, log: Log, *, settle: float) -> Found:
    """The recent jobs that match the intent (after ``settle`` seconds: a list may lag)."""
    if settle > 0:
        time.sleep(settle)
    since = intent.at - CLOCK_SKEW_SECONDS
    matches: list[Video] = []
    after: str | None = None
    try:
        for _ in range(LIST_PAGE_CAP):
            page = hook.send(calls.list_videos(after=after, limit=100, order="desc"))
            matches += [video for video in page.data if _matches(video, intent.fingerprint, since)]
            oldest = page.data[-1].created_at if page.data else None
            if not page.has_more or not page.data or (oldest is not None and oldest < since):
                return Found(matches)
            after = page.last_id or page.data[-1].id
    except APIStatusError as exc:
        if exc.status_code in (400, 404, 405, 501):
            log.warning("the backend cannot list jobs (%s): an unconfirmed submit cannot be checked", exc)
            return Found([], listed=False)
        raise
    log.warning("more than %d pages of jobs since the submit: stopped looking", LIST_PAGE_CAP)
    return Found(matches)


def _ambiguous(exc: Exception) -> bool:
    """A failure after which the job may well exist."""
    if isinstance(exc, TransportError):
        return not exc.surely_not_sent
    return isinstance(exc, ServerError | RequestTimeoutError | MalformedResponseError)


# --- the submit -----------------------------------------------------------------------------------
class Submitter:
    """One task's submit, its intent in ``store`` (``None``: not durable, within-try checks only)."""

    def __init__(
        self,
        hook: OpenAIVideosHook,
        store: Any,
        *,
        id_key: str,
        unconfirmed: UnconfirmedSubmit,
        mapped: bool,
        log: Log,
        settle: float | None = None,
    ) -> None:
        self.hook, self.store, self.id_key = hook, store, id_key
        self.unconfirmed, self.mapped, self.log = unconfirmed, mapped, log
        self.settle = SETTLE_SECONDS if settle is None else settle
        self.keys_honoured = hook.settings.retry_job_creation

    def stored_intent(self) -> Intent | None:
        return Intent.load(self.store.get(INTENT_KEY)) if self.store is not None else None

    def changed_since(self, call: Call[Any]) -> bool:
        """Whether the stored intent is for another request than ``call`` (e.g. a new prompt)."""
        intent = self.stored_intent()
        current = fingerprint(call, self.hook.settings.default_model) if intent is not None else None
        return intent is not None and intent.fingerprint != current

    def _count(self, metric: str, printed: dict[str, Any]) -> None:
        from airflow.sdk.observability.stats import incr

        incr(f"video_edit.{metric}", tags={"route": printed["route"]})

    def submit(self, call: Call[Any]) -> Video:
        printed = fingerprint(call, self.hook.settings.default_model)
        intent = self.stored_intent()
        if intent is not None and (intent.video_id is not None or intent.fingerprint != printed):
            intent = None  # that submit was confirmed, or was for another request
        if intent is not None:
            self.log.warning(
                "an earlier try sent this request (%s) and never stored the job's id: "
                "checking whether it created a job before submitting",
                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(intent.at)),
            )
            adopted = self._adopt(intent)
            if adopted is not None:
                self._count("jobs_adopted", printed)
                return self._confirm(intent, adopted)
        else:
            intent = Intent.new(printed)
            self._save(intent)
        keyed = replace(call, idempotency_key=intent.key)
        for round_ in range(1, MAX_SUBMIT_ROUNDS + 1):
            try:
                video = self.hook.send(keyed)
            except Exception as exc:
                if not _ambiguous(exc):
                    self.forget()  # refused outright (4xx, never sent): it created no job
                    raise
                if round_ == MAX_SUBMIT_ROUNDS:
                    raise
                self.log.warning(
                    "the submit failed after the request may have reached the backend (%s): "
                    "checking whether it created a job",
                    exc,
                )
                adopted = self._adopt(intent)
                if adopted is not None:
                    self._count("jobs_adopted", printed)
                    return self._confirm(intent, adopted)
            else:
                self._count("jobs_submitted", printed)
                return self._confirm(intent, video)
        raise AssertionError("unreachable")  # pragma: no cover

    def _adopt(self, intent: Intent) -> Video | None:
        """The job ``intent``'s request created, or ``None`` when it surely created none (or the
        backend will answer the same key with it); raises when that cannot be told."""
        if self.keys_honoured:
            self.log.info("the backend honours idempotency keys: sending the same request again")
            return None
        found = find(self.hook, intent, self.log, settle=self.settle)
        if found.listed and not found.matches:
            self.log.info("no job matches the request: it was not created; submitting it again")
            return None
        if found.listed and len(found.matches) == 1 and not _indistinct(intent.fingerprint, self.mapped):
            video = found.matches[0]
            self.log.warning("adopting video job %s, which that request created (the one match)", video.id)
            return video
        ids = ", ".join(video.id for video in found.matches) or "none (the backend cannot list jobs)"
        why = (
            "the backend cannot list jobs"
            if not found.listed
            else "several jobs match"
            if len(found.matches) > 1
            else "a sibling mapped task's edit would look the same"
        )
        self._count("submits_unconfirmed", intent.fingerprint)
        if self.unconfirmed == "resubmit":
            self.log.warning(
                "cannot tell whether the earlier submit created a job (%s; candidates: %s): "
                "submitting again as unconfirmed_submit='resubmit' says; this may pay twice",
                why,
                ids,
            )
            return None
        raise UnconfirmedSubmitError(
            f"an earlier submit of this request may have created a paid job that cannot be identified "
            f"({why}; candidates: {ids}). Nothing was submitted again. Check the backend; to submit "
            f"anyway, set unconfirmed_submit='resubmit' on the operator (this may pay twice) and "
            f"retry the task."
        )

    def _confirm(self, intent: Intent, video: Video) -> Video:
        """The id is stored the moment it is known, before anything else."""
        if self.store is not None:
            self.store.set(self.id_key, video.id)
            self._save(replace(intent, video_id=video.id))
        return video

    def _save(self, intent: Intent) -> None:
        if self.store is not None:
            self.store.set(INTENT_KEY, asdict(intent))

    def forget(self) -> None:
        if self.store is not None:
            self.store.delete(INTENT_KEY)
