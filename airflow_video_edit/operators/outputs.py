"""Where a job's files go, how they are downloaded, and what the Asset event says of them.

Shared by the job operators (which download after the wait) and ``VideoDownloadOperator``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_video_edit.errors import ContentMismatchError

if TYPE_CHECKING:
    from airflow.sdk import Asset

    from airflow_video_edit.hooks import OpenAIVideosHook
    from airflow_video_edit.models import Video
    from airflow_video_edit.waiting import Log

VARIANT_SUFFIXES = {"video": ".mp4", "thumbnail": "_thumbnail.webp", "spritesheet": "_spritesheet.webp"}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_LONGEST_PLAIN_STEM = 96
_WINDOWS_RESERVED = {
    "CON",
    "PRN",
    "AUX",
    "NUL",
    *(f"COM{i}" for i in range(10)),
    *(f"LPT{i}" for i in range(10)),
}


def file_stem(video_id: str) -> str:
    """The file name stem for a job: the id itself when it is short and plain (``video_abc123``);
    else a readable, filesystem-safe prefix of it and a hash of the whole id.

    Gateways rewrite ids (LiteLLM's are about 240 characters of base64): a name stays under 120
    bytes, so it and its temporary ``.<name>.<8 hex>.part`` fit the 255-byte limit of Linux, macOS
    and Windows. Deterministic: a retry writes the same file, never a second one.
    """
    safe = _UNSAFE.sub("_", video_id).strip("._") or "video"
    plain = safe == video_id and len(video_id) <= _LONGEST_PLAIN_STEM
    if plain and video_id.split(".")[0].upper() not in _WINDOWS_RESERVED:
        return video_id
    return f"{safe[:48]}-{hashlib.sha256(video_id.encode()).hexdigest()[:16]}"


def with_outlet(kwargs: dict[str, Any], asset: Asset | None) -> dict[str, Any]:
    """Operator kwargs with ``asset`` added to the outlets (an Asset event is recorded on it)."""
    if asset is not None:
        kwargs["outlets"] = [*kwargs.get("outlets", []), asset]
    return kwargs


def check_variants(variants: Sequence[str]) -> tuple[str, ...]:
    unknown = [v for v in variants if v not in VARIANT_SUFFIXES]
    if unknown:
        raise ValueError(f"variants: unknown {unknown}; choose from {', '.join(VARIANT_SUFFIXES)}")
    return tuple(variants)


def destination_for(destination: Any, video_id: str, variant: str) -> Any:
    """A folder gets ``<stem>.mp4``, ``<stem>_thumbnail.webp``, ... (:func:`file_stem`); a file's
    stem names the rest.

    A folder is a path ending in ``/`` or an existing directory; for an ``ObjectStoragePath``
    (object stores have no real folders) also a path without a file suffix.
    """
    suffix = VARIANT_SUFFIXES[variant]
    is_local = isinstance(destination, str | Path)
    text = str(destination)
    is_folder = text.endswith("/") or (
        Path(text).is_dir() if is_local else (destination.is_dir() or not destination.suffix)
    )
    if is_folder:
        folder = Path(text) if is_local else destination
        return folder / f"{file_stem(video_id)}{suffix}"
    file = Path(text) if is_local else destination
    if variant == "video":
        return file
    return file.parent / f"{file.stem}{suffix}"


def download_variants(
    hook: OpenAIVideosHook, video_id: str, destination: Any, variants: Sequence[str], log: Log
) -> dict[str, str]:
    """Each variant streamed to its file, atomically and checked; ``{variant: path}``.

    Content that is not the variant asked for fails the task without a retry: another try would
    get the same answer (a gateway that ignores ``variant``), and the job stays as it is.
    """
    from airflow.sdk.exceptions import AirflowFailException

    outputs = {}
    for variant in variants:
        try:
            result = hook.download_content(
                video_id, destination_for(destination, video_id, variant), variant=variant
            )
        except ContentMismatchError as exc:
            raise AirflowFailException(f"video {video_id}: {exc}") from None
        log.info("downloaded %s of %s to %s (%d bytes)", variant, video_id, result.path, result.bytes)
        outputs[variant] = result.path
    return outputs


def asset_extra(
    video: Video, outputs: dict[str, str], estimated_cost: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The extra of the Asset event recorded for downloaded files (with the job's
    ``estimated_cost``, ``{"currency", "amount"}``, when there is one)."""
    extra = {
        "video_id": video.id,
        "size": video.size,
        "seconds": video.seconds,
        "model": video.model,
        "path": outputs.get("video") or next(iter(outputs.values())),
        "outputs": outputs,
    }
    if estimated_cost is not None:
        extra["estimated_cost"] = estimated_cost
    return extra
