"""Coalesced status checks: the waits of one triggerer share list pages instead of a request each.

One :class:`StatusWatcher` per connection (its shared async client) and event loop. A waiting
trigger registers its job (:meth:`StatusWatcher.register`) and, each time its wait step says so,
awaits the job's next status from the watcher (:meth:`Watch.status`). The watcher gathers the
jobs that are due within a short window into one *round*: it reads ``GET /videos`` pages
(``order=desc``, ``limit=100``), from the top or from just above where a job was last seen,
until every due job is seen, the pages pass below the oldest due job, or a page budget is spent;
the jobs not seen get a per-id ``GET /videos/{id}``. So 10,000 waiting jobs cost about 100
requests a round instead of 10,000, and a long job that sank below thousands of newer ones costs
no more than its own retrieve: a round never reads more pages than it has due jobs.

Each trigger keeps its own wait (:class:`~airflow_video_edit.waiting.Wait`): its interval,
deadline, the poll-after hint, its outage rule and its single event. A round's statuses are
handed out together when the round ends, so waits of equal intervals stay in one round.
Cancelling a wait (its trigger moved or was cancelled) drops only its own awaited status.

A backend that cannot list (400/404/405/501, or objects that are not the spec's Video, or pages
out of order) is checked per id from then on, logged once. The connection extra
``status_checks`` chooses ``auto`` (that; and a wait with no other on its connection asks by id),
``list`` (always list pages, no fall-back: a refused list reaches the waits as their error) or
``per-id`` (no list at all). A list error that a retry could mend reaches the round's waits like
a failed retrieve would: each rides it out by its outage rule.

Why not Airflow's shared streams (``BaseEventTrigger.shared_stream_key``)? They broadcast one
stream, opened from one trigger's kwargs, to every subscriber: the stream cannot know which jobs
are waiting now or when each is due, and every subscriber would filter every status (10,000 x
10,000 a round). A triggerer's deferral triggers also are not event triggers.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
import weakref
from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass

from airflow_video_edit import calls
from airflow_video_edit.clients import AsyncVideosClient
from airflow_video_edit.errors import MalformedResponseError, VideoAPIError
from airflow_video_edit.models import Video, VideoList
from airflow_video_edit.retries import quiet_retries, retries_quiet

log = logging.getLogger(__name__)

PAGE_SIZE = 100  # the spec's largest page
# A round reads at most ceil(due / PAGE_SIZE) + PAGE_SLACK pages, and never more than it has due
# jobs (a page must save at least the retrieve it replaces).
PAGE_SLACK = 5
# A round stops reading on from where it is after this many pages in a row without a due job.
FRUITLESS_PAGES = 2
# Jobs due within this window share a round. Waits that got their status in one round come back
# together, so after the first round this window only has to absorb event-loop jitter.
GATHER_SECONDS = 0.1
# A list failure with one of these says "this backend does not list jobs" (a gateway).
NO_LIST_STATUSES = frozenset({400, 404, 405, 501})
TOP = ""  # the anchor of a job seen on the first page: read from the top

Result = tuple[Video, "float | None"] | BaseException


class NotListing(MalformedResponseError):
    """List pages that are not what the spec describes (a job without created_at, out of order)."""


@dataclass(slots=True)
class _Seen:
    """What a round learnt of a job: when it was created, and the cursor just above it."""

    created_at: float | None = None
    anchor: str | None = None  # the `after` cursor of the page it was on (TOP: the first page)
    anchor_created_at: float = math.inf
    unlisted: bool = False  # passed over by the pages without being on them: per id from now on
    watches: int = 0


class Watch:
    """One trigger's registration: await :meth:`status` per poll, :meth:`close` when done."""

    __slots__ = ("_closed", "_watcher", "video_id")

    def __init__(self, watcher: StatusWatcher, video_id: str) -> None:
        self._watcher, self.video_id, self._closed = watcher, video_id, False

    async def status(self) -> tuple[Video, float | None]:
        """The job and the poll-after hint, from the next round (or a retrieve of its own)."""
        return await self._watcher.status(self.video_id)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._watcher.unregister(self.video_id)


class StatusWatcher:
    """The status checks of every wait on one connection and one event loop (see the module)."""

    def __init__(self, client: AsyncVideosClient) -> None:
        self.client = client
        self.mode = client.settings.status_checks
        self.per_id = self.mode == "per-id"
        self._seen: dict[str, _Seen] = {}
        self._due: dict[str, list[tuple[asyncio.Future[tuple[Video, float | None]], bool]]] = {}
        self._runner: asyncio.Task[None] | None = None
        self._hint: float | None = None  # the last poll-after hint a retrieve carried

    # -- registration ---------------------------------------------------------------------------
    def register(self, video_id: str) -> Watch:
        self._seen.setdefault(video_id, _Seen()).watches += 1
        return Watch(self, video_id)

    def unregister(self, video_id: str) -> None:
        seen = self._seen.get(video_id)
        if seen is not None:
            seen.watches -= 1
            if seen.watches <= 0:
                del self._seen[video_id]

    async def status(self, video_id: str) -> tuple[Video, float | None]:
        if self.per_id or (len(self._seen) <= 1 and self.mode == "auto"):  # nothing to share with
            return await self._retrieve(video_id)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[Video, float | None]] = loop.create_future()
        entry = (future, retries_quiet())
        self._due.setdefault(video_id, []).append(entry)
        if self._runner is None:
            # In a context of its own: it serves many waits, none of whose context it should carry.
            self._runner = contextvars.Context().run(loop.create_task, self._run_rounds())
        try:
            return await future
        finally:
            waiting = self._due.get(video_id)
            if waiting is not None and entry in waiting:  # cancelled before its round began
                waiting.remove(entry)
                if not waiting:
                    del self._due[video_id]

    # -- rounds ---------------------------------------------------------------------------------
    async def _run_rounds(self) -> None:
        try:
            while self._due:
                await asyncio.sleep(GATHER_SECONDS)
                batch, self._due = self._due, {}
                quiet = all(q for entries in batch.values() for _, q in entries)
                try:
                    with quiet_retries() if quiet else nullcontext():
                        results = await self._round(list(batch))
                except asyncio.CancelledError:  # the event loop is shutting down
                    _deliver(batch, {})
                    raise
                except Exception as exc:  # a bug must not leave a wait hanging
                    results = dict.fromkeys(batch, exc)
                _deliver(batch, results)
        finally:
            self._runner = None

    async def _round(self, due: list[str]) -> dict[str, Result]:
        listed = [v for v in due if not (v in self._seen and self._seen[v].unlisted)]
        if self.per_id or (len(listed) < 2 and self.mode == "auto"):
            return await self._each(due)
        try:
            found, hint = await self._list(listed)
        except VideoAPIError as exc:
            if self.mode == "auto" and _cannot_list(exc):
                self._fall_back(exc)
                return await self._each(due)
            return dict.fromkeys(due, exc)
        hint = hint if hint is not None else self._hint
        results: dict[str, Result] = {v: (video, hint) for v, video in found.items()}
        results.update(await self._each(v for v in due if v not in found))
        return results

    async def _list(self, due: list[str]) -> tuple[dict[str, Video], float | None]:
        """Read pages until every due job is seen or no page is worth reading, within the budget.

        Pages are read from the cursor just above where a due job was last seen (its anchor; the
        top for a job never seen), and on from there while they hold due jobs. Created-at times
        tie (whole seconds; a mapped task's jobs share one), so anchors, not times, say where to
        read; a time only proves a job absent once the pages passed strictly below it.
        """
        wanted = set(due)
        found: dict[str, Video] = {}
        budget = min(len(wanted), -(-len(wanted) // PAGE_SIZE) + PAGE_SLACK)
        read: set[str] = set()  # cursors read this round (TOP: the first page)
        place: tuple[str, float] | None = None  # where reading on would continue
        fruitless = 0  # pages in a row, reading on, without a due job
        # The due jobs of known age, oldest first: the newest are popped once the pages pass them.
        by_age = sorted((c, v) for v in wanted if (c := self._created(v)) is not None)
        hint: float | None = None
        while wanted and budget > 0:
            if place is not None and place[0] not in read and fruitless < FRUITLESS_PAGES:
                cursor, above = place
            else:
                fruitless = 0
                jump = self._anchor(wanted, read)
                if jump is None:
                    break  # every place a due job was seen has been read: the rest by id
                cursor, above = jump
            read.add(cursor)
            try:
                page, page_hint = await self.client.request(calls.status_page(cursor or None))
            except VideoAPIError as exc:
                if cursor == TOP or not _cannot_list(exc):
                    raise
                self._forget_anchors()  # a cursor the backend no longer knows (a deleted job)
                break
            budget -= 1
            hint = page_hint if page_hint is not None else hint
            last = _check_page(page, above)
            fruitless += 1
            for video in page.data:
                if video.id in wanted:
                    fruitless = 0
                    wanted.discard(video.id)
                    found[video.id] = video
                    seen = self._seen.get(video.id)
                    if seen is not None:
                        seen.created_at, seen.anchor, seen.anchor_created_at = video.created_at, cursor, above
            place = None
            if last is not None and page.has_more:
                here = float(last.created_at or 0)
                place = (page.last_id or last.id, here)
                while by_age and by_age[-1][0] > here:  # its place is behind us, it was not there
                    video_id = by_age.pop()[1]
                    if video_id in wanted:
                        wanted.discard(video_id)
                        self._seen[video_id].unlisted = True
        return found, hint

    def _anchor(self, wanted: set[str], read: set[str]) -> tuple[str, float] | None:
        """A place not read yet where a due job was last seen (the top for one never seen)."""
        best: tuple[str, float] | None = None
        for video_id in wanted:
            seen = self._seen.get(video_id) or _Seen()
            place = (seen.anchor or TOP, seen.anchor_created_at if seen.anchor else math.inf)
            if place[0] in read:
                continue
            if place[0] == TOP:
                return place
            if best is None or place[1] > best[1]:
                best = place
        return best

    def _created(self, video_id: str) -> float | None:
        seen = self._seen.get(video_id)
        return seen.created_at if seen is not None else None

    def _forget_anchors(self) -> None:
        for seen in self._seen.values():
            seen.anchor, seen.anchor_created_at = None, math.inf

    async def _each(self, video_ids: Iterable[str]) -> dict[str, Result]:
        ids = list(video_ids)
        results = await asyncio.gather(*(self._retrieve(v) for v in ids), return_exceptions=True)
        return dict(zip(ids, results, strict=True))

    async def _retrieve(self, video_id: str) -> tuple[Video, float | None]:
        video, hint = await self.client.request(calls.poll_video(video_id))
        self._hint = hint if hint is not None else self._hint
        seen = self._seen.get(video_id)
        if seen is not None and seen.created_at is None:
            seen.created_at = video.created_at
        return video, hint

    def _fall_back(self, exc: VideoAPIError) -> None:
        self.per_id = True
        log.warning(
            "%s does not list video jobs as the spec says (%s): its waiting jobs are checked one "
            "by one from now on (connection extra status_checks: per-id says so up front)",
            self.client.settings.base_url,
            exc,
        )


def _deliver(
    batch: dict[str, list[tuple[asyncio.Future[tuple[Video, float | None]], bool]]],
    results: dict[str, Result],
) -> None:
    """Hand each wait its status (or its error); a wait without a result is cancelled."""
    for video_id, entries in batch.items():
        result = results.get(video_id)
        for future, _ in entries:
            if future.done():  # its wait was cancelled meanwhile
                continue
            if result is None:
                future.cancel()
            elif isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)


def _cannot_list(exc: VideoAPIError) -> bool:
    return isinstance(exc, MalformedResponseError) or exc.status_code in NO_LIST_STATUSES


def _check_page(page: VideoList, above: float) -> Video | None:
    """The page's last job; raises :class:`NotListing` unless it is newest first with dates."""
    previous = above
    for video in page.data:
        if video.created_at is None or video.created_at > previous:
            raise NotListing(
                f"GET /videos gave {video.id!r} (created_at {video.created_at}) out of newest-first order"
            )
        previous = video.created_at
    return page.data[-1] if page.data else None


_watchers: weakref.WeakKeyDictionary[AsyncVideosClient, StatusWatcher] = weakref.WeakKeyDictionary()


def shared_watcher(client: AsyncVideosClient) -> StatusWatcher:
    """The one watcher of ``client`` (itself one per connection settings and event loop)."""
    watcher = _watchers.get(client)
    if watcher is None:
        watcher = _watchers[client] = StatusWatcher(client)
    return watcher
