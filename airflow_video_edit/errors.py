"""The exception hierarchy of the Videos API client.

Every error raised for an HTTP reply carries the status, the backend's error code, message and
param, and the ``x-request-id`` a support ticket needs. None of them ever holds a credential: they
are built from the reply only, never from the request's headers or URL.
"""

from __future__ import annotations


class VideoAPIError(Exception):
    """Base class of every error the client raises."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        param: str | None = None,
        error_type: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.code = code
        self.param = param
        self.error_type = error_type
        self.request_id = request_id
        # Seconds the server asked us to wait (Retry-After / retry-after-ms), if any.
        self.retry_after = retry_after

    def __str__(self) -> str:
        parts = [self.message]
        details = [
            f"{name}={value}"
            for name, value in (
                ("status", self.status_code),
                ("code", self.code),
                ("param", self.param),
                ("request_id", self.request_id),
            )
            if value is not None
        ]
        if details:
            parts.append(f"({', '.join(details)})")
        return " ".join(parts)


class InvalidInputError(VideoAPIError, ValueError):
    """Input rejected before any request was sent (empty prompt, bad id, missing file, ...)."""


class CostLimitError(InvalidInputError):
    """A job not submitted because its estimated cost exceeds the operator's ``max_cost``, or
    cannot be estimated while ``max_cost`` is set. Nothing was sent."""


class TransportError(VideoAPIError):
    """The request did not get a complete HTTP reply (refused, reset, timed out, truncated)."""

    def __init__(self, message: str, *, surely_not_sent: bool = False, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        # True when the request never reached the server (connection refused, connect timeout):
        # retrying it cannot create a second job.
        self.surely_not_sent = surely_not_sent


class APIStatusError(VideoAPIError):
    """The server answered with an error status."""


class MalformedResponseError(APIStatusError):
    """A success status with a body that is not what the spec describes (or not JSON at all)."""


class InvalidRequestError(APIStatusError):
    """400 / 422: the backend rejected the request's content."""


class AuthenticationError(APIStatusError):
    """401: missing or wrong API key."""


class PermissionDeniedError(APIStatusError):
    """403: the key may not do this."""


class NotFoundError(APIStatusError):
    """404: unknown id, or content that expired."""


class ConflictError(APIStatusError):
    """409: the resource is not in a state that allows this (e.g. not completed yet)."""


class RequestTimeoutError(APIStatusError):
    """408: the server timed out waiting for the request."""


class RateLimitError(APIStatusError):
    """429: too many requests, or quota exhausted."""


class ServerError(APIStatusError):
    """5xx: the backend failed."""


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    408: RequestTimeoutError,
    409: ConflictError,
    422: InvalidRequestError,
    429: RateLimitError,
}


def error_class_for_status(status_code: int) -> type[APIStatusError]:
    """The exception class for an HTTP error status."""
    if status_code >= 500:
        return ServerError
    return _BY_STATUS.get(status_code, APIStatusError)


class VideoJobFailed(Exception):
    """A video job failed, timed out, or could not be followed. Carries the backend's reason."""


# The ``error.code`` of a failed job that a new job for the same request would meet again: the
# backend's moderation or content policy refused it, or it found the input invalid. Any other
# code (``internal_error``, ``server_error``, ``timeout``, ``unknown_error``, ...) may pass on
# another try, and keeps the task's retries.
PERMANENT_JOB_FAILURE_CODES: frozenset[str] = frozenset(
    {"moderation_blocked", "content_policy_violation", "content_filter", "safety_violation"}
)
PERMANENT_JOB_FAILURE_PREFIXES: tuple[str, ...] = ("moderation", "content_policy", "invalid_")


def is_permanent_job_failure(code: str | None) -> bool:
    """Whether a failed job's ``error.code`` will repeat (see ``PERMANENT_JOB_FAILURE_CODES``)."""
    code = (code or "").lower()
    return code in PERMANENT_JOB_FAILURE_CODES or code.startswith(PERMANENT_JOB_FAILURE_PREFIXES)


class PermanentVideoJobFailure(VideoJobFailed):
    """A job failed, or could not be followed, for a reason another try would meet again (a
    moderation block, an invalid input, a status check refused with 400/401/403). The operators'
    default retry policy fails the task at once instead of spending its retries."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class VideoJobGone(PermanentVideoJobFailure):
    """The job an earlier try submitted answers 404 (deleted, expired, forgotten by the backend).
    Submitting a new one pays again: only with the operator's ``resubmit_if_gone=True``."""


class ContentMismatchError(VideoAPIError):
    """A download is not what was asked for (e.g. the MP4 where a thumbnail was asked). Not retried."""
