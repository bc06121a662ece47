"""The job operators' default task retry policy: a failure that will repeat spends no retries.

Airflow 3.3 evaluates an operator's ``retry_policy`` in the worker with the exception that failed
the try. The job operators get :func:`video_job_retry_policy` when the user gave none of their own
(a ``retry_policy`` on the operator or in ``default_args`` always wins). It fails the task at once,
without the remaining retries, for:

- :class:`~airflow_video_edit.errors.AuthenticationError` (401) and
  :class:`~airflow_video_edit.errors.PermissionDeniedError` (403): the key is refused;
- :class:`~airflow_video_edit.errors.InvalidRequestError` (400, 422): the backend rejected the
  request, and a retry sends the same one;
- :class:`~airflow_video_edit.errors.PermanentVideoJobFailure`: a job failed for a reason that
  will repeat (moderation, content policy, ``invalid_*``), a status check was refused, or
  (:class:`~airflow_video_edit.errors.VideoJobGone`) the stored job is gone and resubmitting it
  is not allowed;
- :class:`~airflow_video_edit.errors.CostLimitError`: the estimate exceeds ``max_cost``, or
  cannot be made while ``max_cost`` is set (the same request gets the same estimate).

Anything else (5xx, timeouts, transport errors, a job failed with ``internal_error``, ...) falls
through to the task's ordinary ``retries``. To keep plain retry-count behaviour for everything,
pass ``retry_policy=ExceptionRetryPolicy(rules=[])``.
"""

from __future__ import annotations

from airflow.sdk import ExceptionRetryPolicy, RetryAction, RetryRule

from airflow_video_edit.errors import (
    AuthenticationError,
    CostLimitError,
    InvalidRequestError,
    PermanentVideoJobFailure,
    PermissionDeniedError,
    VideoJobGone,
)

# (exception, why a retry would not help); the first match wins, so the narrower come first.
PERMANENT_FAILURES: tuple[tuple[type[BaseException], str], ...] = (
    (AuthenticationError, "the backend refused the API key (401): fix the connection, then clear"),
    (PermissionDeniedError, "the API key may not do this (403): fix the connection, then clear"),
    (InvalidRequestError, "the backend rejected the request (400/422): a retry sends the same one"),
    (VideoJobGone, "the stored job is gone and resubmitting it (a new paid job) is not allowed"),
    (PermanentVideoJobFailure, "the job failed for a reason a new job would meet again"),
    (CostLimitError, "the job's estimated cost is over max_cost, or unknown while max_cost is set"),
)


def video_job_retry_policy() -> ExceptionRetryPolicy:
    """A fresh policy (its rules cache their resolved classes): FAIL for the permanent failures
    above, the task's standard retries for the rest."""
    rules = [
        RetryRule(exception=exception, action=RetryAction.FAIL, reason=reason)
        for exception, reason in PERMANENT_FAILURES
    ]
    return ExceptionRetryPolicy(rules=rules, default=RetryAction.DEFAULT)
