"""A fake task context for running operators without an Airflow deployment, and small helpers.

The context holds a fake ``ti`` recording ``xcom_push``, a dict-backed ``task_state_store`` (what
survives from one try to the next) and ``outlet_events``. A "new try" is a new operator instance
with a fresh ``ti`` (XCom is reset between tries) and the same task state store.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_video_edit.server import LocalVideosServer
from airflow_video_edit.triggers import VideoJobTrigger

KEY = "sk-unit-OPERATOR-4d3c2b1a0f9e"
CONN_ID = "openai_videos_default"
SOURCE_CLIP = str(Path(__file__).resolve().parents[2] / "dags" / "data" / "source_clip.mp4")


# --- fakes ------------------------------------------------------------------------------------
class FakeTI:
    def __init__(self) -> None:
        self.pushed: list[tuple[str, Any]] = []
        self.stats_tags: dict[str, str] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        json.dumps(value)  # XCom values must be JSON-serialisable
        self.pushed.append((key, value))

    def values(self, key: str) -> list[Any]:
        return [value for k, value in self.pushed if k == key]


class FakeStore:
    """The task state store: survives between tries of one task instance."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value

    def delete(self, key: str) -> None:
        self.data.pop(key, None)


def make_context(store: FakeStore | None = None) -> dict[str, Any]:
    return {
        "ti": FakeTI(),
        "task_state_store": store if store is not None else FakeStore(),
        "outlet_events": defaultdict(SimpleNamespace),
        "params": {},
    }


def set_conn(monkeypatch: pytest.MonkeyPatch, url: str, password: str = KEY) -> None:
    conn = {"conn_type": "openai_videos", "host": url, "password": password}
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))


def jobs_created(server: LocalVideosServer) -> int:
    return int(server.stats()["jobs_created"])


def run_trigger(trigger: VideoJobTrigger) -> dict[str, Any]:
    async def collect() -> list[dict[str, Any]]:
        return [event.payload async for event in trigger.run()]

    events = asyncio.run(collect())
    assert len(events) == 1
    return events[0]


def probe(path: str) -> tuple[int, int, float]:
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        assert sum(1 for _ in container.decode(video=0)) > 0
        duration = float(stream.duration * stream.time_base) if stream.duration else container.duration / 1e6
        return stream.codec_context.width, stream.codec_context.height, duration


@pytest.fixture(name="server")
def local_server(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A real local server (jobs take 0.6 s), with the connection pointed at it."""
    with LocalVideosServer(api_key=KEY, job_seconds=0.6, poll_after_ms=0, access_log=False) as srv:
        set_conn(monkeypatch, srv.url)
        yield srv
