"""The retry policy: what is retried, how long to wait, when to stop, what is logged. One for
sync and async.

Every retry is logged, one line each (:func:`retry_log`): a WARNING, or a DEBUG line inside
:func:`quiet_retries`, where a wait riding out an outage makes its status checks (the wait's own
lines at the outage's start and end say it).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import tenacity

from airflow_video_edit.errors import (
    ConflictError,
    MalformedResponseError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    TransportError,
    VideoAPIError,
)
from airflow_video_edit.settings import ClientSettings

log = logging.getLogger(__name__)

# Set by quiet_retries() around a request: its retries are logged at DEBUG, not WARNING. A
# context variable, so it holds for one thread or one asyncio task only (one wait of many).
_quiet: ContextVar[bool] = ContextVar("airflow_video_edit_quiet_retries", default=False)


def is_retryable(exc: BaseException, *, creates_job: bool, retry_job_creation: bool) -> bool:
    """Whether a failed attempt may be tried again.

    Retried: 408, 409, 429, 5xx, transport errors and malformed replies. A POST that creates a
    paid job is a special case: when the reply was lost (reset, read timeout, 5xx), the backend
    may well have created the job, and sending the request again would create, and bill, a second
    one. So such a POST is retried only where it surely created nothing: the connection was never
    made (refused, connect timeout) or the server said 429 (rate limited before any work). A
    connection may opt in to retrying it anyway (``retry_job_creation``), e.g. behind a gateway
    known to deduplicate.
    """
    if isinstance(exc, RateLimitError):
        return True
    ambiguous_ok = not creates_job or retry_job_creation
    if isinstance(exc, TransportError):
        return exc.surely_not_sent or ambiguous_ok
    if isinstance(exc, RequestTimeoutError | ConflictError | ServerError | MalformedResponseError):
        return ambiguous_ok
    return False


class _Wait(tenacity.wait.wait_base):
    """Honour the server's Retry-After (capped); otherwise exponential backoff with full jitter."""

    def __init__(self, cap: float) -> None:
        self.cap = cap
        self.backoff = tenacity.wait_random_exponential(multiplier=0.5, max=8)

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, VideoAPIError) and exc.retry_after is not None:
            return min(exc.retry_after, self.cap)
        return float(self.backoff(retry_state))


@functools.lru_cache(maxsize=64)
def retry_policy(settings: ClientSettings, *, creates_job: bool) -> dict[str, Any]:
    """Keyword arguments for ``tenacity.Retrying`` and ``tenacity.AsyncRetrying`` alike.

    Its parts hold no state, so one policy per settings serves every request (cached: building
    it for every request showed up in the trigger benchmark's profile)."""
    return {
        "retry": tenacity.retry_if_exception(
            lambda exc: is_retryable(
                exc, creates_job=creates_job, retry_job_creation=settings.retry_job_creation
            )
        ),
        "wait": _Wait(settings.max_retry_after),
        "stop": tenacity.stop_after_attempt(settings.max_retries + 1)
        | tenacity.stop_before_delay(settings.max_retry_seconds),
        "reraise": True,
    }


def retry_log(method: str, path: str, settings: ClientSettings) -> Callable[[tenacity.RetryCallState], None]:
    """The ``before_sleep`` of one request: a line per retry, naming the request without its query.

    ``GET /videos/video_123: attempt 1 of 5 failed: <error>; retrying in 0.42 s``. A small
    object per request; the line itself is only formatted when a retry happens."""
    return functools.partial(_log_retry, method, path, settings)


def _log_retry(
    method: str, path: str, settings: ClientSettings, retry_state: tenacity.RetryCallState
) -> None:
    exc = retry_state.outcome.exception() if retry_state.outcome else None
    failure = (str(exc) or type(exc).__name__) if exc is not None else "no error"
    if settings.api_key:  # the error's text comes from the reply; a gateway may echo the key
        failure = failure.replace(settings.api_key, "***")
    log.log(
        logging.DEBUG if _quiet.get() else logging.WARNING,
        "%s /%s: attempt %d of %d failed: %s; retrying in %.2f s",
        method,
        path,
        retry_state.attempt_number,
        settings.max_retries + 1,
        failure,
        retry_state.upcoming_sleep,
    )


def retries_quiet() -> bool:
    """Whether :func:`quiet_retries` holds here (a wait in an outage), e.g. to carry it over to
    requests made on its behalf in another task."""
    return _quiet.get()


@contextmanager
def quiet_retries() -> Iterator[None]:
    """Within: retries of this thread's (or asyncio task's) requests are logged at DEBUG only."""
    token = _quiet.set(True)
    try:
        yield
    finally:
        _quiet.reset(token)
