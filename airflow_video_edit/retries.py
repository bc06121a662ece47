"""The retry policy: what is retried, how long to wait, when to stop. One for sync and async."""

from __future__ import annotations

import functools
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
