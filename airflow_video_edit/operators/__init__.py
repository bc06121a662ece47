"""The operators of the video job family.

- Paid jobs, on one life cycle (:mod:`~airflow_video_edit.operators.base`): submit or resume,
  push the id, wait (deferred or in the worker), download, record an Asset event, return the job:
  ``VideoCreateOperator``, ``VideoEditOperator``, ``VideoRemixOperator``, ``VideoExtendOperator``
  (:mod:`~airflow_video_edit.operators.jobs`).
- Finished jobs: ``VideoDownloadOperator``, ``VideoDeleteOperator``
  (:mod:`~airflow_video_edit.operators.files`).

Waiting for a job submitted elsewhere: :class:`airflow_video_edit.sensors.VideoJobSensor`.
"""

from __future__ import annotations

from airflow_video_edit.errors import VideoJobFailed
from airflow_video_edit.operators.base import VideoJobOperator
from airflow_video_edit.operators.files import VideoDeleteOperator, VideoDownloadOperator
from airflow_video_edit.operators.jobs import (
    VideoCreateOperator,
    VideoEditOperator,
    VideoExtendOperator,
    VideoRemixOperator,
)

__all__ = [
    "VideoCreateOperator",
    "VideoDeleteOperator",
    "VideoDownloadOperator",
    "VideoEditOperator",
    "VideoExtendOperator",
    "VideoJobFailed",
    "VideoJobOperator",
    "VideoRemixOperator",
]
