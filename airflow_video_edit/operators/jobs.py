"""The job kinds: each says what it submits and which arguments are templated, nothing more.

Every one of them is a :class:`~airflow_video_edit.operators.base.VideoJobOperator`: it resumes a
job an earlier try submitted, pushes ``video_id`` and ``job`` to XCom, waits (deferred or in the
worker), downloads to ``destination`` and records an Asset event. A source ``video`` is a
completed job's id, ``{"id": ...}`` or an upstream task's returned job (``other.output``), or,
where the API takes one, a file to upload (a local path or an ``ObjectStoragePath``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_video_edit.operators.base import VideoJobOperator

if TYPE_CHECKING:
    from airflow_video_edit.calls import Call
    from airflow_video_edit.models import Video


class VideoCreateOperator(VideoJobOperator):
    """Generate a video from a prompt (``POST /videos``). Creates a paid job.

    :param prompt: what to generate (templated; 1 to 32,000 characters).
    :param model: the model; defaults to the connection's default model, else the backend's.
    :param size: e.g. ``"1280x720"``; ``seconds``: the length, e.g. ``8`` (both templated).
    :param input_reference: an image to start from: a path, an ``ObjectStoragePath``, or a
        reference object such as ``{"image_url": ...}`` (templated).
    """

    template_fields = (
        *VideoJobOperator.template_fields,
        "prompt",
        "model",
        "size",
        "seconds",
        "input_reference",
    )
    job_kind = "create"

    def __init__(
        self,
        *,
        prompt: str,
        model: str | None = None,
        size: str | None = None,
        seconds: str | int | None = None,
        input_reference: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.prompt, self.model, self.size, self.seconds = prompt, model, size, seconds
        self.input_reference = input_reference

    def job_call(self) -> Call[Video]:
        from airflow_video_edit import calls

        return calls.create_video(
            self.prompt,
            model=self.model,
            size=self.size,
            seconds=self.seconds,
            input_reference=self.input_reference,
        )


class VideoEditOperator(VideoJobOperator):
    """Edit a video with a prompt (``POST /videos/edits``). Creates a paid job.

    :param prompt: how to edit the video (templated; 1 to 32,000 characters).
    :param video: the source: a completed video (id, ``{"id": ...}``, an upstream job) or a file
        to upload (templated).
    :param model: the model; defaults to the connection's default model, else the backend's.
    """

    template_fields = (*VideoJobOperator.template_fields, "prompt", "video", "model")
    job_kind = "edit"

    def __init__(self, *, prompt: str, video: Any, model: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.prompt, self.video, self.model = prompt, video, model

    def job_call(self) -> Call[Video]:
        from airflow_video_edit import calls

        return calls.edit_video(self.video, self.prompt, model=self.model)


class VideoRemixOperator(VideoJobOperator):
    """Remix a completed video with a new prompt (``POST /videos/{id}/remix``). Creates a paid job.

    :param video: the completed video: an id, ``{"id": ...}`` or an upstream job (templated).
    :param prompt: what to change (templated).
    """

    template_fields = (*VideoJobOperator.template_fields, "prompt", "video")
    job_kind = "remix"

    def __init__(self, *, video: Any, prompt: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.video, self.prompt = video, prompt

    def job_call(self) -> Call[Video]:
        from airflow_video_edit import calls

        return calls.remix_video(calls.check_video_id(self.video, "video"), self.prompt)


class VideoExtendOperator(VideoJobOperator):
    """Extend a video (``POST /videos/extensions``). Creates a paid job.

    :param video: the source: a completed video (id, ``{"id": ...}``, an upstream job) or a file
        to upload (templated).
    :param prompt: what happens next (templated).
    :param seconds: the length of the new segment (the spec allows 4, 8, 12, 16, 20; templated);
        the finished job's ``seconds`` is the stitched total.
    :param model: the model; defaults to the connection's default model, else the backend's.
    """

    template_fields = (*VideoJobOperator.template_fields, "prompt", "video", "seconds", "model")
    job_kind = "extend"

    def __init__(
        self, *, video: Any, prompt: str, seconds: str | int, model: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.video, self.prompt, self.seconds, self.model = video, prompt, seconds, model

    def job_call(self) -> Call[Video]:
        from airflow_video_edit import calls

        return calls.extend_video(self.video, self.prompt, self.seconds, model=self.model)
