"""The local server's jobs in creation order, kept sorted so that a list page is a slice.

Each job's key ``(created_at, seq, id)`` is kept as it was inserted: tests move a job's
``created_at`` back to age it, and the order must still find the key it filed.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from typing import Protocol

Key = tuple[float, int, str]


class Ordered(Protocol):
    """What the order reads of a job."""

    @property
    def id(self) -> str: ...
    @property
    def created_at(self) -> float: ...
    @property
    def seq(self) -> int: ...


class CreationOrder:
    """Job ids sorted by creation: add and remove O(log n) to find (plus the list shift), a page
    O(log n + limit), whatever the number of jobs. Not thread-safe: the store holds its lock."""

    def __init__(self, jobs: Iterable[Ordered] = ()) -> None:
        self._keys: dict[str, Key] = {job.id: (job.created_at, job.seq, job.id) for job in jobs}
        self._order: list[Key] = sorted(self._keys.values())

    def add(self, job: Ordered) -> None:
        key = self._keys[job.id] = (job.created_at, job.seq, job.id)
        bisect.insort(self._order, key)

    def remove(self, job_id: str) -> None:
        del self._order[bisect.bisect_left(self._order, self._keys.pop(job_id))]

    def page(self, *, after: str | None, limit: int, descending: bool) -> tuple[list[str], bool]:
        """Up to ``limit`` ids after ``after`` (which must be in the order); ``(ids, has_more)``."""
        order, total = self._order, len(self._order)
        if descending:
            end = total if after is None else bisect.bisect_left(order, self._keys[after])
            keys = order[max(0, end - limit) : end][::-1]
            has_more = end - limit > 0
        else:
            start = 0 if after is None else bisect.bisect_right(order, self._keys[after])
            keys = order[start : start + limit]
            has_more = start + limit < total
        return [key[2] for key in keys], has_more
