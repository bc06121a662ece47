"""Fixtures for the integration tests: the bundled local server, in process."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from test_server_support import API_KEY, JOB_SECONDS

from airflow_video_edit.server import LocalVideosServer


@pytest.fixture
def local_server() -> Iterator[LocalVideosServer]:
    """A fresh in-process server (in-memory state, key ``API_KEY``, jobs take 0.5 s)."""
    with LocalVideosServer(api_key=API_KEY, job_seconds=JOB_SECONDS, poll_after_ms=100) as server:
        yield server


@pytest.fixture
def openai_client(local_server: LocalVideosServer) -> Any:
    """The official SDK pointed at the server, without retries (faults stay visible)."""
    import openai

    return openai.OpenAI(base_url=local_server.url, api_key=API_KEY, max_retries=0)
