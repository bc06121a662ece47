"""``Idempotency-Key`` on the job-creating POSTs of the local server, with Stripe's semantics.

The same key with the same request within 24 h answers with the job the first request created
(no new job; header ``Idempotent-Replayed: true``). The same key with another request is a 409
(``idempotency_key_reused``); while the first request with a key is still being handled, another
one with it is a 409 (``idempotency_key_in_use``). A request that failed (a 400, say) leaves its
key free. "The same request" is the route and the body's fields and files (by digest), so a
multipart retry with a new boundary is still the same request. Keys live in memory.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio.to_thread
from starlette.requests import Request

from .forms import APIError, Body

HEADER = "idempotency-key"
REPLAYED = {"Idempotent-Replayed": "true"}
TTL_SECONDS = 24 * 3600
_CHUNK = 1024 * 1024


@dataclass
class Claim:
    """What a route learns from its key: a job to answer with again, or the one it creates."""

    key: str | None
    replay: str | None = None
    video_id: str | None = None


@dataclass
class _Entry:
    digest: str
    at: float
    video_id: str | None = None


class IdempotencyKeys:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.entries: dict[str, _Entry] = {}

    @asynccontextmanager
    async def claim(self, request: Request, body: Body) -> AsyncIterator[Claim]:
        """Around a route's job creation: set ``claim.video_id`` to the job it created."""
        key = request.headers.get(HEADER)
        if not key:
            yield Claim(None)
            return
        digest = await _digest(request, body)
        now = self.clock()
        self.entries = {k: e for k, e in self.entries.items() if now - e.at < TTL_SECONDS}
        entry = self.entries.get(key)
        if entry is not None:
            if entry.digest != digest:
                raise APIError(
                    409,
                    "Keys for idempotent requests can only be used with the same parameters they "
                    "were first used with.",
                    code="idempotency_key_reused",
                )
            if entry.video_id is None:
                raise APIError(
                    409, "A request with this idempotency key is in progress.", code="idempotency_key_in_use"
                )
            yield Claim(key, replay=entry.video_id)
            return
        entry = self.entries[key] = _Entry(digest, now)
        claim = Claim(key)
        try:
            yield claim
        finally:
            if claim.video_id is None:
                del self.entries[key]  # nothing was created: the key may be used again
            else:
                entry.video_id = claim.video_id


async def _digest(request: Request, body: Body) -> str:
    """Route + fields + each file's content digest (read in a worker thread)."""

    def files() -> dict[str, str]:
        digests = {}
        for name, upload in sorted(body.files.items()):
            upload.file.seek(0)
            digest = hashlib.sha256()
            while block := upload.file.read(_CHUNK):
                digest.update(block)
            upload.file.seek(0)
            digests[name] = digest.hexdigest()
        return digests

    uploads = await anyio.to_thread.run_sync(files) if body.files else {}
    text = json.dumps([request.url.path, body.fields, uploads], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()
