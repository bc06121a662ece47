"""Coalesced status checks: many VideoJobTriggers on one loop share list pages (watcher.py).

Every test runs real triggers, with the real Hook and client, against the bundled local server,
and counts what reached the server (its request stats): list pages (``GET /v1/videos``) and
per-id retrieves (``GET /v1/videos/{video_id}``). Jobs are put into the server's store with a
start time and a duration; the triggers poll every few tenths of a second, so each test takes a
second or two of wall time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_video_edit import watcher
from airflow_video_edit.server import LocalVideosServer
from airflow_video_edit.triggers import VideoJobTrigger

KEY = "sk-unit-WATCHER-4b8e2c6a1f9d"
CONN_ID = "openai_videos_default"
LIST = "GET /v1/videos"
RETRIEVE = "GET /v1/videos/{video_id}"


@pytest.fixture
def server() -> Iterator[LocalVideosServer]:
    with LocalVideosServer(api_key=KEY, poll_after_ms=0, access_log=False) as srv:
        yield srv


def use(monkeypatch: pytest.MonkeyPatch, server: LocalVideosServer, **extra: Any) -> None:
    conn = {"conn_type": "openai_videos", "host": server.url, "password": KEY, "extra": extra}
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))


def add_jobs(server: LocalVideosServer, n: int, *, duration: float, started_ago: float = 0.0) -> list[str]:
    now = time.time()
    return [
        server.store.create(
            "create",
            model="sora-2",
            prompt=f"job {i}",
            size="720x1280",
            seconds="4",
            created_at=now - started_ago,
            duration=duration,
        ).id
        for i in range(n)
    ]


def requests(server: LocalVideosServer, route: str) -> int:
    return sum(server.stats()["requests"].get(route, {}).values())


class CountingTrigger(VideoJobTrigger):
    """The real trigger; it only counts the statuses its wait received."""

    statuses = 0

    async def _poll(self) -> Any:
        result = await super()._poll()
        self.statuses += 1
        return result


async def run_all(triggers: list[VideoJobTrigger]) -> list[dict[str, Any]]:
    async def one(trigger: VideoJobTrigger) -> dict[str, Any]:
        events = [event async for event in trigger.run()]
        assert len(events) == 1
        payload: dict[str, Any] = events[0].payload
        return payload

    return await asyncio.gather(*(one(t) for t in triggers))


def triggers_for(ids: list[str], interval: float = 0.2, cls: type[VideoJobTrigger] = VideoJobTrigger) -> Any:
    return [cls(i, poll_interval=interval, deadline=time.time() + 30) for i in ids]


def test_waiting_jobs_share_list_pages(server: LocalVideosServer, monkeypatch: pytest.MonkeyPatch) -> None:
    use(monkeypatch, server)
    ids = add_jobs(server, 40, duration=1.0)
    events = asyncio.run(run_all(triggers_for(ids)))
    assert [e["event"] for e in events] == ["completed"] * 40
    assert [e["video_id"] for e in events] == ids
    assert all(e["video"]["status"] == "completed" for e in events)  # it ended while listed
    pages = requests(server, LIST)
    assert 3 <= pages <= 15  # one page a round (all 40 on it), a round per 0.2 s for about 1 s
    # Only a wait with no other registered (the first to start, the last to end) asks by id.
    assert requests(server, RETRIEVE) < 10  # per-id polling: 40 a round


def test_per_id_mode_sends_no_list(server: LocalVideosServer, monkeypatch: pytest.MonkeyPatch) -> None:
    use(monkeypatch, server, status_checks="per-id")
    ids = add_jobs(server, 10, duration=0.6)
    events = asyncio.run(run_all(triggers_for(ids)))
    assert [e["event"] for e in events] == ["completed"] * 10
    assert requests(server, LIST) == 0
    assert requests(server, RETRIEVE) >= 20  # every job at least twice: running, then done


def test_cancelling_one_wait_leaves_the_others(
    server: LocalVideosServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    use(monkeypatch, server)
    ids = add_jobs(server, 8, duration=1.0)
    triggers = triggers_for(ids)

    async def scenario() -> list[Any]:
        tasks = [asyncio.create_task(run_all([t])) for t in triggers]
        while requests(server, LIST) < 1:  # the first round has listed
            await asyncio.sleep(0.01)
        tasks[0].cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        shared = watcher.shared_watcher(await triggers[1].hook.aget_client())
        assert ids[0] not in shared._seen  # unregistered by its cancelled trigger
        assert not shared._seen  # and the finished waits unregistered too
        return results

    results = asyncio.run(scenario())
    assert isinstance(results[0], asyncio.CancelledError)
    assert [r[0]["event"] for r in results[1:]] == ["completed"] * 7


def test_a_backend_without_list_falls_back_to_per_id_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with LocalVideosServer(api_key=KEY, poll_after_ms=0, faults=["GET /v1/videos status=405"]) as server:
        use(monkeypatch, server)
        ids = add_jobs(server, 12, duration=0.8)
        with caplog.at_level(logging.WARNING, logger="airflow_video_edit.watcher"):
            events = asyncio.run(run_all(triggers_for(ids)))
        assert [e["event"] for e in events] == ["completed"] * 12
        assert requests(server, LIST) == 1  # asked once, never again
        assert requests(server, RETRIEVE) >= 24
    lines = [r for r in caplog.records if r.name == "airflow_video_edit.watcher"]
    assert len(lines) == 1
    assert "checked one by one" in lines[0].getMessage()
    assert KEY not in caplog.text


def test_list_pages_that_are_not_the_spec_fall_back_too(monkeypatch: pytest.MonkeyPatch) -> None:
    with LocalVideosServer(api_key=KEY, poll_after_ms=0, faults=["GET /v1/videos malformed-json"]) as server:
        use(monkeypatch, server, max_retries=0)
        ids = add_jobs(server, 5, duration=0.6)
        events = asyncio.run(run_all(triggers_for(ids)))
        assert [e["event"] for e in events] == ["completed"] * 5
        assert requests(server, LIST) == 1


def test_forced_list_mode_reports_a_refused_list(monkeypatch: pytest.MonkeyPatch) -> None:
    with LocalVideosServer(api_key=KEY, poll_after_ms=0, faults=["GET /v1/videos status=405"]) as server:
        use(monkeypatch, server, status_checks="list")
        ids = add_jobs(server, 3, duration=30)
        events = asyncio.run(run_all(triggers_for(ids)))
    assert [(e["event"], e["http_status"]) for e in events] == [("error", 405)] * 3


def test_an_outage_while_listing_is_ridden_out(
    server: LocalVideosServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    use(monkeypatch, server, max_retries=0)
    ids = add_jobs(server, 6, duration=0.5)
    server.set_faults(["GET /v1/videos status=503;times=3"])  # three failed rounds, then the list works
    events = asyncio.run(run_all(triggers_for(ids, interval=0.1)))
    assert [e["event"] for e in events] == ["completed"] * 6
    assert server.stats()["requests"][LIST].get("503") == 3
    assert requests(server, RETRIEVE) < 4  # a transient failure is not "cannot list"


def test_mixed_intervals_keep_their_own_pace(
    server: LocalVideosServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    use(monkeypatch, server)
    ids = add_jobs(server, 12, duration=1.6)
    fast = triggers_for(ids[:6], interval=0.2, cls=CountingTrigger)
    slow = triggers_for(ids[6:], interval=1.0, cls=CountingTrigger)
    events = asyncio.run(run_all(fast + slow))
    assert [e["event"] for e in events] == ["completed"] * 12
    assert min(t.statuses for t in fast) >= 6  # about 1.6 s / 0.2 s
    assert max(t.statuses for t in slow) <= 4  # about 1.6 s / 1.0 s, plus the first check
    statuses = sum(t.statuses for t in fast + slow)  # per-id polling: a request each
    # A round with one job due asks by id (a page would cost the same one request).
    assert requests(server, LIST) + requests(server, RETRIEVE) < statuses / 2


def test_a_job_deep_below_newer_ones_costs_a_retrieve(
    server: LocalVideosServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    use(monkeypatch, server)
    old = add_jobs(server, 1, duration=11.0, started_ago=10.0)  # ends in about 1 s
    add_jobs(server, 450, duration=1000.0)  # newer jobs nobody waits for
    new = add_jobs(server, 4, duration=1.0)
    triggers = triggers_for(old + new, cls=CountingTrigger)
    events = asyncio.run(run_all(triggers))
    assert [e["event"] for e in events] == ["completed"] * 5
    rounds = max(t.statuses for t in triggers)
    pages, retrieves = requests(server, LIST), requests(server, RETRIEVE)
    # Per round: the top page (the 4 new jobs), at most FRUITLESS_PAGES more, then one retrieve.
    assert pages <= rounds * (1 + watcher.FRUITLESS_PAGES)
    assert retrieves <= rounds + 1
    assert pages + retrieves < 5 * rounds  # cheaper than per-id polling of the 5


def test_a_job_gone_from_the_list_is_retrieved_and_its_wait_ends(
    server: LocalVideosServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    use(monkeypatch, server)
    ids = add_jobs(server, 5, duration=1.5)

    async def scenario() -> list[Any]:
        task = asyncio.create_task(run_all(triggers_for(ids)))
        while requests(server, LIST) < 1:
            await asyncio.sleep(0.01)
        server.store.delete(ids[2])  # by someone else, while it is waited for
        return await task

    events = asyncio.run(scenario())
    assert [e["event"] for e in events] == ["completed"] * 2 + ["error"] + ["completed"] * 2
    assert events[2]["http_status"] == 404
    assert requests(server, RETRIEVE) >= 1  # missing from the pages: asked by id


def test_a_lone_wait_uses_its_own_retrieve(
    server: LocalVideosServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    use(monkeypatch, server)
    ids = add_jobs(server, 1, duration=0.5)
    events = asyncio.run(run_all(triggers_for(ids)))
    assert events[0]["event"] == "completed"
    assert requests(server, LIST) == 0


def test_status_checks_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_video_edit.errors import InvalidInputError
    from airflow_video_edit.settings import settings_from_connection

    with pytest.raises(InvalidInputError, match="status_checks") as info:
        settings_from_connection(
            host="http://127.0.0.1:1", port=None, schema=None, password=None, extra={"status_checks": "some"}
        )
    assert info.value.param == "status_checks"
