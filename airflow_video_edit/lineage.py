"""OpenLineage for the operators, when ``apache-airflow-providers-openlineage`` is installed
(the ``openlineage`` extra).

The OpenLineage listener calls the operators' ``get_openlineage_facets_on_start`` and
``get_openlineage_facets_on_complete``, which come here; nothing imports this module otherwise,
so without the provider (or with it, at DAG-parse time) it costs nothing.

- Inputs: the job's source: a file (a local path, namespace ``file``), an ``ObjectStoragePath``
  (its scheme and bucket as namespace, its key as name), or a finished job (namespace: the
  backend's base URL, name ``videos/<id>``). Rebuilt from the operator's (rendered) arguments, so
  a task resumed after deferral reports them as well.
- Outputs: each downloaded file, by its final path (the atomic write's temporary name is never
  seen), on completion.
- Run facets: ``videoJob`` (``videoId``, ``jobKind``, ``model``, ``promptSha256``, ``status``)
  and the standard ``externalQuery`` (the job id on the backend). A prompt is only ever hashed.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any
from urllib.parse import urlsplit

import attrs
from airflow.providers.common.compat.openlineage.facet import Dataset, ExternalQueryRunFacet, RunFacet
from airflow.providers.openlineage.extractors import OperatorLineage

FILE_NAMESPACE = "file"


@attrs.define
class VideoJobRunFacet(RunFacet):  # type: ignore[misc]
    """The video job of a run: its id, kind, model, status and the SHA-256 of its prompt."""

    videoId: str | None = None
    jobKind: str | None = None
    model: str | None = None
    promptSha256: str | None = None
    status: str | None = None

    @staticmethod
    def _get_schema() -> str:
        return "https://github.com/airflow-video-edit/airflow-video-edit/lineage/VideoJobRunFacet.json"


def file_dataset(path: Any) -> Dataset:
    """A local path or an ``ObjectStoragePath`` as an OpenLineage dataset."""
    text = str(path)
    parts = urlsplit(text)
    # (A one-letter scheme is a Windows drive.)
    if isinstance(path, PurePath) or parts.scheme in ("", "file") or len(parts.scheme) == 1:
        local = parts.path if parts.scheme == "file" else text
        return Dataset(namespace=FILE_NAMESPACE, name=os.path.abspath(local))
    bucket = parts.netloc.rsplit("@", 1)[-1]  # "s3://conn_id@bucket/key": the conn id is no place
    return Dataset(namespace=f"{parts.scheme}://{bucket}", name=parts.path.lstrip("/"))


def job_dataset(base_url: str, video_id: str) -> Dataset:
    return Dataset(namespace=base_url.rstrip("/"), name=f"videos/{video_id}")


def _source(operator: Any) -> Any:
    """The operator's source argument: ``video`` (edit, extend, remix, download) or a create's
    ``input_reference`` file."""
    for name in ("video", "input_reference"):
        value = getattr(operator, name, None)
        if value is not None:
            return value
    return None


def inputs(operator: Any) -> list[Dataset]:
    from airflow_video_edit.calls import _looks_like_local_file

    source = _source(operator)
    if source is None:
        return []
    if isinstance(source, str | Mapping) and not _looks_like_local_file(source):
        video_id = source.get("id") if isinstance(source, Mapping) else source
        if not isinstance(video_id, str) or not video_id:
            return []  # an image reference object ({"image_url": ...}): not a dataset of ours
        return [job_dataset(operator.hook.settings.base_url, video_id)]
    if isinstance(source, str | PurePath) or hasattr(source, "protocol"):
        return [file_dataset(source)]
    return []


def run_facets(operator: Any, *, complete: bool) -> dict[str, Any]:
    seen = getattr(operator, "_seen", None)
    video_id = operator.link_video_id() if complete or seen is not None else None
    prompt = getattr(operator, "prompt", None)
    model = seen.model if seen is not None else getattr(operator, "model", None)
    if model is None:
        model = operator.hook.settings.default_model
    facets: dict[str, Any] = {
        "videoJob": VideoJobRunFacet(
            videoId=video_id,
            jobKind=getattr(operator, "job_kind", None),
            model=model,
            promptSha256=hashlib.sha256(prompt.encode()).hexdigest() if isinstance(prompt, str) else None,
            status=seen.status if seen is not None else None,
        )
    }
    if video_id:
        facets["externalQuery"] = ExternalQueryRunFacet(
            externalQueryId=video_id, source=operator.hook.settings.base_url
        )
    return facets


def operator_lineage(operator: Any, *, complete: bool) -> OperatorLineage[Any, Any]:
    """The lineage of one of the family's operators, at start or on completion."""
    outputs = (getattr(operator, "_outputs", None) or {}) if complete else {}
    return OperatorLineage(
        inputs=inputs(operator),
        outputs=[file_dataset(path) for path in outputs.values()],
        run_facets=run_facets(operator, complete=complete),
    )
