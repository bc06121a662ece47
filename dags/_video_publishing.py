"""Shared pieces of the example pipelines: where files go, the edited-video Asset, publishing.

Publishing here means: copy the edited MP4 (and its thumbnail) into a publish folder with a JSON
manifest (source, prompt, job id, size, seconds, estimated cost, checksum). Swap it for an upload to your CMS,
bucket or CDN; the shape of the data stays the same.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from airflow.sdk import Asset, ObjectStoragePath

HERE = Path(__file__).resolve().parent
SOURCE_CLIP = str(HERE / "data" / "source_clip.mp4")
CONN_ID = os.environ.get("VIDEO_EDIT_CONN_ID", "openai_videos_default")
# Every example writes below this folder; the README's main command points it at ./out.
OUTPUT_ROOT = Path(
    os.environ.get("VIDEO_EDIT_OUTPUT_DIR") or Path(tempfile.gettempdir()) / "airflow-video-edit"
)
WORK_DIR = OUTPUT_ROOT / "work"
PUBLISH_DIR = OUTPUT_ROOT / "published"
# The previews the examples download beside the MP4. A gateway that drops ``?variant=`` (LiteLLM)
# serves only the MP4 (a preview download then fails clearly): set VIDEO_EDIT_PREVIEWS="" there.
PREVIEWS = [v for v in os.environ.get("VIDEO_EDIT_PREVIEWS", "thumbnail,spritesheet").split(",") if v]


def variants(*previews: str) -> list[str]:
    """``video`` and those of ``previews`` that the backend serves (``VIDEO_EDIT_PREVIEWS``)."""
    return ["video", *(preview for preview in previews if preview in PREVIEWS)]


# Seconds between status checks; the local server finishes jobs in seconds.
POLL_INTERVAL = float(os.environ.get("VIDEO_EDIT_POLL_INTERVAL", "2"))

# The logical asset "an edited clip of the example pipeline". Its URI names the asset, not a place:
# it stays the same whatever VIDEO_EDIT_OUTPUT_DIR says (a URI that moved with the folder made the
# DAGs fail with AirflowInactiveAssetInInletOrOutletException after a change of folder). Each event
# carries the real file locations in its extra. ``x-`` schemes are Airflow's custom-scheme space.
EDITED_VIDEO = Asset(name="edited_video", uri="x-airflow-video-edit://example-dags/edited_video")


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "run"


def sha256(path: Any) -> str:
    """Of a local path or an ``ObjectStoragePath``."""
    digest = hashlib.sha256()
    with _as_path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def _as_path(path: Any) -> Any:
    """A local path, a URI (``file://``, ``s3://``: an ObjectStoragePath) or a path object."""
    if isinstance(path, str):
        return ObjectStoragePath(path) if "://" in path else Path(path)
    return path


def _write_atomically(target: Any, source: Any = None, text: str | None = None) -> None:
    """Write ``target`` (a Path or ObjectStoragePath) under a temporary name, then rename it."""
    tmp = target.parent / f".{target.name}.part"
    with tmp.open("wb") as out:
        if text is not None:
            out.write(text.encode())
        else:
            with _as_path(source).open("rb") as handle:
                shutil.copyfileobj(handle, out, 1024 * 1024)
    tmp.rename(target)


def publish(
    job: dict[str, Any],
    outputs: dict[str, str],
    *,
    source: str,
    prompt: str,
    folder: Any,
    estimated_cost: dict[str, Any] | None = None,
) -> str:
    """Copy the outputs into ``folder`` (a Path or an ``ObjectStoragePath``) with ``manifest.json``;
    return the published MP4's path. ``estimated_cost``: the job operator's XCom of that name
    (else the job's own key, e.g. from an Asset event's extra); None without a price table."""
    folder.mkdir(parents=True, exist_ok=True)
    published = {}
    for variant, path in sorted(outputs.items()):
        target = folder / Path(path).name
        _write_atomically(target, source=path)
        published[variant] = str(target)
    video = folder / Path(outputs["video"]).name
    manifest = {
        "source": source,
        "prompt": prompt,
        "video_id": job["id"],
        "model": job.get("model"),
        "size": job.get("size"),
        "seconds": job.get("seconds"),
        "estimated_cost": estimated_cost or job.get("estimated_cost"),
        "sha256": sha256(video),
        "bytes": video.stat().st_size,
        "files": published,
    }
    _write_atomically(folder / "manifest.json", text=json.dumps(manifest, indent=2) + "\n")
    return str(video)
