"""Shared pieces of the example pipelines: where files go, the edited-video Asset, publishing.

Publishing here means: copy the edited MP4 (and its thumbnail) into a publish folder with a JSON
manifest (source, prompt, job id, size, seconds, checksum). Swap it for an upload to your CMS,
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

from airflow.sdk import Asset

HERE = Path(__file__).resolve().parent
SOURCE_CLIP = str(HERE / "data" / "source_clip.mp4")
CONN_ID = os.environ.get("VIDEO_EDIT_CONN_ID", "openai_videos_default")
# Every example writes below this folder; the README's main command points it at ./out.
OUTPUT_ROOT = Path(
    os.environ.get("VIDEO_EDIT_OUTPUT_DIR") or Path(tempfile.gettempdir()) / "airflow-video-edit"
)
WORK_DIR = OUTPUT_ROOT / "work"
PUBLISH_DIR = OUTPUT_ROOT / "published"
# Seconds between status checks; the local server finishes jobs in seconds.
POLL_INTERVAL = float(os.environ.get("VIDEO_EDIT_POLL_INTERVAL", "2"))

EDITED_VIDEO = Asset(name="edited_video", uri=(OUTPUT_ROOT / "work").as_uri() + "/edited")


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "run"


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def publish(job: dict[str, Any], outputs: dict[str, str], *, source: str, prompt: str, folder: Path) -> str:
    """Copy the outputs into ``folder`` with ``manifest.json``; return the published MP4's path."""
    folder.mkdir(parents=True, exist_ok=True)
    published = {}
    for variant, path in sorted(outputs.items()):
        target = folder / Path(path).name
        tmp = target.with_name(f".{target.name}.part")
        shutil.copyfile(path, tmp)
        tmp.replace(target)
        published[variant] = str(target)
    video = published["video"]
    manifest = {
        "source": source,
        "prompt": prompt,
        "video_id": job["id"],
        "model": job.get("model"),
        "size": job.get("size"),
        "seconds": job.get("seconds"),
        "sha256": sha256(video),
        "bytes": Path(video).stat().st_size,
        "files": published,
    }
    tmp = folder / ".manifest.json.part"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    tmp.replace(folder / "manifest.json")
    return video
