"""Operators on finished jobs: download their files, delete them. Neither creates a paid job,
so neither uses the resume machinery: a retry simply does the work again."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_video_edit.operators.outputs import asset_extra, check_variants, download_variants, with_outlet
from airflow_video_edit.operators.task import DEFAULT_CONN_ID, VideoTaskMixin

if TYPE_CHECKING:
    from airflow.sdk import Asset, BaseOperatorLink, Context


class _VideoOperator(VideoTaskMixin, BaseOperator):
    """What both take: the connection; and the family's retry policy, unless the user set one."""

    def __init__(self, *, conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.retry_policy is None:
            from airflow_video_edit.operators.retry_policy import video_job_retry_policy

            self.retry_policy = video_job_retry_policy()
        self.conn_id = conn_id


class VideoDownloadOperator(_VideoOperator):
    """Download a completed job's files, streamed, atomically and checked; return ``{variant: path}``.

    :param video: the completed job: an id, ``{"id": ...}`` or an upstream job (templated).
    :param destination: a file, a folder (existing, or ending in ``/``) or an ``ObjectStoragePath``
        (templated); a folder gets ``<id>.mp4``, ``<id>_thumbnail.webp``, ...
    :param variants: ``video``, ``thumbnail``, ``spritesheet``.
    :param asset: an Asset to record an event on, with the same extra as the job operators'.
    """

    template_fields: Sequence[str] = ("video", "destination")

    def __init__(
        self,
        *,
        video: Any,
        destination: Any,
        variants: Sequence[str] = ("video",),
        asset: Asset | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**with_outlet(kwargs, asset))
        self.video, self.destination, self.asset = video, destination, asset
        self.variants = check_variants(variants)

    def execute(self, context: Context) -> dict[str, str]:
        from airflow_video_edit.calls import check_video_id
        from airflow_video_edit.errors import VideoJobFailed

        video = self.hook.get_video(check_video_id(self.video, "video"))
        self._linked_id = video.id
        if not video.succeeded:
            raise VideoJobFailed(
                f"video job {video.id} is {video.status}, not completed: nothing to download"
            )
        outputs = self._outputs = download_variants(
            self.hook, video.id, self.destination, self.variants, self.log
        )
        if self.asset is not None and outputs:
            context["outlet_events"][self.asset].extra = asset_extra(video, outputs)
        return outputs


class VideoDeleteOperator(_VideoOperator):
    """Delete finished jobs and their files on the backend (cleanup); return the ids deleted.

    A job that is already gone (404) counts as deleted. The Videos API deletes only finished jobs:
    a running one fails the task (409), so the cleanup runs again on the next try.

    :param video: one job or a list of them: ids, ``{"id": ...}`` or upstream jobs (templated).
    """

    template_fields: Sequence[str] = ("video",)
    operator_extra_links: Collection[BaseOperatorLink] = ()  # the jobs are gone: no page to link to

    def __init__(self, *, video: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.video = video

    def execute(self, context: Context) -> list[str]:
        from airflow_video_edit.calls import check_video_id
        from airflow_video_edit.errors import NotFoundError

        # One job, or a sequence of them (a list, or a mapped task's results: a lazy sequence).
        many = isinstance(self.video, Sequence) and not isinstance(self.video, str)
        ids = [check_video_id(v, "video") for v in (self.video if many else [self.video])]
        for video_id in ids:  # every id checked above, before the first request
            try:
                self.hook.delete_video(video_id)
                self.log.info("deleted video job %s", video_id)
            except NotFoundError:
                self.log.info("video job %s was already gone", video_id)
        return ids
