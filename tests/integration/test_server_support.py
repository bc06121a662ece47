"""Helpers shared by the local-server integration tests (no tests in here)."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

API_KEY = "sk-test-integration"
JOB_SECONDS = 0.5


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy, or fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def wait_for_video(client: Any, video_id: str, timeout: float = 20.0) -> Any:
    """Poll ``client.videos.retrieve`` until the job is terminal; return the video."""
    return wait_until(
        lambda: (v := client.videos.retrieve(video_id)).status in ("completed", "failed") and v,
        timeout,
    )


def probe_mp4(path: Path) -> tuple[int, int, float]:
    """(width, height, duration s) of an MP4, read back with PyAV."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(video=0))
        assert frames > 0
        duration = float(stream.duration * stream.time_base) if stream.duration else container.duration / 1e6
        return stream.codec_context.width, stream.codec_context.height, duration


def decode_image(data: bytes, tmp_path: Path, name: str) -> tuple[int, int]:
    """Decode an image (webp/jpeg) with PyAV; return (width, height)."""
    import av

    path = tmp_path / name
    path.write_bytes(data)
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        return frame.width, frame.height


def retry_decision(task: Any, exc: BaseException, try_number: int = 1) -> Any:
    """What Airflow's task runner decides for ``exc`` on try ``try_number`` of a task with tries
    left (``max_tries`` 4): ``TaskInstanceState.FAILED`` or ``UP_FOR_RETRY``. The runner's own
    failure handler evaluates the task's ``retry_policy`` as a worker does."""
    import structlog
    from airflow.sdk.execution_time.task_runner import _handle_current_task_failed

    ti = SimpleNamespace(
        task=task,
        try_number=try_number,
        _ti_context_from_server=SimpleNamespace(max_tries=4, should_retry=True),
        end_date=None,
        rendered_map_index=None,
        _failure_metrics_emitted=False,
        stats_tags={},
    )
    _, state = _handle_current_task_failed(ti, exc, structlog.get_logger(), None)  # type: ignore[arg-type]
    return state


class Store(dict[str, Any]):
    """A task state store as operators see it: ``get``/``set``/``delete``, values kept as JSON."""

    def set(self, key: str, value: Any) -> None:
        self[key] = json.loads(json.dumps(value))

    def delete(self, key: str) -> None:
        self.pop(key, None)


def task_context(store: Store | None = None, map_index: int = -1) -> dict[str, Any]:
    """The parts of a task's context the operators use: ti (XCom push/pull), the state store, and
    the outlet events."""
    ti = SimpleNamespace(pushed=[], stats_tags={}, map_index=map_index)
    ti.xcom_push = lambda key, value: ti.pushed.append((key, value))
    ti.xcom_pull = lambda task_ids, key: next((v for k, v in reversed(ti.pushed) if k == key), None)
    return {
        "ti": ti,
        "task_state_store": Store() if store is None else store,
        "outlet_events": defaultdict(SimpleNamespace),
    }
