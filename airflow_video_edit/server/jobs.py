"""Job store of the local server: jobs and characters in memory, on disk, and their media.

The records themselves and a job's life cycle (status from its timestamps): :mod:`.records`.

Media are rendered on demand, in a worker thread (never on the event loop): the first content
download renders them (:meth:`JobStore.ensure_media`); a retrieve that first sees a job completed
starts that rendering in the background so the download is usually instant.

State lives in memory. With ``data_dir``, every job and character is also written as JSON
(``jobs/<id>.json``, ``characters/<id>.json``) and media go under ``media/<id>/``, so a new store
on the same directory finds everything again.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from airflow_video_edit.models import COMPLETED, Video

from . import defaults, media
from .order import CreationOrder
from .records import CREATE, EDIT, EXTEND, IMPORT, REMIX, Character, Job, new_id


@dataclass
class _Counts:
    jobs_by_kind: Counter[str] = field(default_factory=Counter)
    characters: int = 0


class JobStore:
    """Thread-safe store of jobs, characters and their media.

    Args:
        data_dir: where to persist jobs and media; ``None`` keeps jobs in memory and media in a
            temporary directory removed by :meth:`close`.
        job_seconds: time from create to completed for new jobs.
        asset_ttl: seconds a completed job's assets stay downloadable.
        clock: time source (seconds since the epoch); tests may pass a fake one.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        job_seconds: float = defaults.JOB_SECONDS,
        asset_ttl: float = defaults.ASSET_TTL,
        clock: Callable[[], float] = time.time,
        render_workers: int = 1,
    ) -> None:
        self.job_seconds = job_seconds
        self.asset_ttl = asset_ttl
        self.clock = clock
        self._temp = data_dir is None
        self.root = Path(tempfile.mkdtemp(prefix="videos-server-")) if data_dir is None else Path(data_dir)
        self.media_root = self.root / "media"
        self._jobs_dir = self.root / "jobs"
        self._chars_dir = self.root / "characters"
        for directory in (self.media_root, self._jobs_dir, self._chars_dir):
            directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._render_locks: dict[str, threading.Lock] = {}
        self._pending: dict[str, Future[Any]] = {}
        self._executor = ThreadPoolExecutor(max_workers=render_workers, thread_name_prefix="render")
        self.jobs: dict[str, Job] = {}
        self._order = CreationOrder()  # a list page is a slice of it, not a sort
        self.characters: dict[str, Character] = {}
        self.counts = _Counts()
        self._seq = 0
        self._load()

    # --- persistence ----------------------------------------------------------------------------
    def _load(self) -> None:
        for path in sorted(self._jobs_dir.glob("*.json")):
            job = Job(**json.loads(path.read_text()))
            self.jobs[job.id] = job
            self._seq = max(self._seq, job.seq)
        self._order = CreationOrder(self.jobs.values())
        for path in sorted(self._chars_dir.glob("*.json")):
            character = Character(**json.loads(path.read_text()))
            self.characters[character.id] = character

    def _save(self, directory: Path, ident: str, record: Any) -> None:
        if self._temp:
            return
        tmp = directory / f".{ident}.json.tmp"
        tmp.write_text(json.dumps(asdict(record)))
        tmp.replace(directory / f"{ident}.json")

    def job_dir(self, job_id: str) -> Path:
        return self.media_root / job_id

    # --- jobs -----------------------------------------------------------------------------------
    def create(self, kind: str, *, model: str, prompt: str, size: str, seconds: str, **extra: Any) -> Job:
        """Add a job that starts now; ``extra`` sets optional :class:`Job` fields."""
        with self._lock:
            self._seq += 1
            job = Job(
                id=extra.pop("id", None) or new_id("video"),
                kind=kind,
                model=model,
                prompt=prompt,
                size=size,
                seconds=seconds,
                created_at=extra.pop("created_at", None) or self.clock(),
                duration=extra.pop("duration", self.job_seconds),
                asset_ttl=extra.pop("asset_ttl", None) or self.asset_ttl,
                seq=self._seq,
                **extra,
            )
            self.jobs[job.id] = job
            self._order.add(job)
            self.counts.jobs_by_kind[kind] += 1
            self._save(self._jobs_dir, job.id, job)
            return job

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def delete(self, job_id: str) -> bool:
        """Remove a job, its JSON and its media; ``False`` if it did not exist."""
        with self._lock:
            job = self.jobs.pop(job_id, None)
            if job is None:
                return False
            self._order.remove(job_id)
            (self._jobs_dir / f"{job_id}.json").unlink(missing_ok=True)
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)
        return True

    def page(self, *, after: str | None, limit: int, descending: bool) -> tuple[list[Job], bool]:
        """One page of jobs in creation order; ``(jobs, has_more)``. ``after`` must exist.
        O(log n + limit): a slice of the sorted order, whatever the number of jobs."""
        with self._lock:
            ids, has_more = self._order.page(after=after, limit=limit, descending=descending)
            return [self.jobs[job_id] for job_id in ids], has_more

    def view(self, job: Job) -> Video:
        """The API view of a job now; starts rendering in the background once it is completed."""
        video = job.view(self.clock())
        if video.status == COMPLETED and not job.rendered:
            self.prefetch(job)
        return video

    # --- media ----------------------------------------------------------------------------------
    def prefetch(self, job: Job) -> None:
        """Render a completed job's media in the background (once)."""
        with self._lock:
            if job.rendered or job.id in self._pending:
                return
            future = self._executor.submit(self.ensure_media, job)
            self._pending[job.id] = future
            future.add_done_callback(lambda _: self._pending.pop(job.id, None))

    def ensure_media(self, job: Job) -> media.MediaFiles:
        """Render the job's media if not done yet (blocking: call it from a worker thread)."""
        with self._lock:
            lock = self._render_locks.setdefault(job.id, threading.Lock())
        with lock:
            directory = self.job_dir(job.id)
            files = media.preview_paths(directory)
            if job.rendered and files.video.exists():
                return files
            files = self._render(job, directory)
            with self._lock:
                job.rendered = True
                if job.id in self.jobs:
                    self._save(self._jobs_dir, job.id, job)
            return files

    def _source_path(self, job: Job) -> Path:
        if job.source_file is not None:
            return self.job_dir(job.id) / job.source_file
        source = self.jobs.get(job.source_id or "")
        if source is None:
            raise media.MediaError(f"source video {job.source_id} is gone")
        return self.ensure_media(source).video

    def _render(self, job: Job, directory: Path) -> media.MediaFiles:
        if job.kind in (CREATE, REMIX):
            label = f"{job.model} {job.kind}".upper()
            return media.render_generated(
                directory,
                size=job.render_size or job.size,
                seconds=float(job.seconds),
                prompt=job.prompt,
                label=label,
            )
        if job.kind == EDIT:
            return media.render_edit(directory, source=self._source_path(job), prompt=job.prompt)
        if job.kind == EXTEND:
            return media.render_extension(
                directory,
                source=self._source_path(job),
                prompt=job.prompt,
                seconds=float(job.extension_seconds or 0),
            )
        # Imported: the MP4 is there already.
        return media.render_previews(directory, source=directory / media.VIDEO_FILE)

    def import_video(
        self,
        path: str | os.PathLike[str],
        *,
        prompt: str = "imported video",
        model: str = "sora-2",
        link: bool = False,
        previews: bool = True,
    ) -> str:
        """Add a completed video made from a local MP4; return its id.

        Args:
            path: the MP4 (it is copied, or hard-linked with ``link=True``).
            previews: render the thumbnail and spritesheet now. With ``previews=False`` the file is
                not even probed (any bytes will do: used to serve huge dummy files in benchmarks),
                and size/seconds come out as the defaults ``"720x1280"``/``"4"``.
        """
        source = Path(path)
        job_id = new_id("video")
        directory = self.job_dir(job_id)
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / media.VIDEO_FILE
        if link:
            os.link(source, target)
        else:
            shutil.copyfile(source, target)
        size, seconds, render_size = media.spec_size(0, 0), "4", None
        if previews:
            info = media.probe(target)
            size, seconds = media.spec_size(info.width, info.height), str(round(info.duration))
            render_size = f"{info.width}x{info.height}"
            media.render_previews(directory, source=target)
        now = self.clock()
        job = self.create(
            IMPORT,
            id=job_id,
            model=model,
            prompt=prompt,
            size=size,
            seconds=seconds,
            created_at=now - 1.0,
            duration=1.0,
            source_file=media.VIDEO_FILE,
            render_size=render_size,
        )
        with self._lock:
            job.rendered = True
            self._save(self._jobs_dir, job.id, job)
        return job.id

    # --- characters -----------------------------------------------------------------------------
    def add_character(self, name: str, upload: Path) -> Character:
        """Store a character made from an uploaded video (the file is moved into the store)."""
        char_id = new_id("char")
        directory = self.job_dir(char_id)
        directory.mkdir(parents=True, exist_ok=True)
        shutil.move(str(upload), directory / "source")
        character = Character(id=char_id, name=name, created_at=int(self.clock()), video_file="source")
        with self._lock:
            self.characters[char_id] = character
            self.counts.characters += 1
            self._save(self._chars_dir, char_id, character)
        return character

    # --- stats / shutdown -----------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "jobs_created": sum(self.counts.jobs_by_kind.values()),
                "jobs_by_kind": dict(self.counts.jobs_by_kind),
                "characters_created": self.counts.characters,
                "jobs_stored": len(self.jobs),
            }

    def reset_stats(self) -> None:
        with self._lock:
            self.counts = _Counts()

    def close(self) -> None:
        """Stop the render thread; remove the temporary directory of an in-memory store."""
        self._executor.shutdown(wait=True, cancel_futures=True)
        if self._temp:
            shutil.rmtree(self.root, ignore_errors=True)
