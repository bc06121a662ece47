"""The provider against the local server in gateway mode (``--gateway-quirks``): what LiteLLM-like
gateways do. Each operation either works or fails with a clear message; none saves wrong content.

The example DAGs against it: see ``test_dags.py`` (``test_example_dags_through_a_gateway``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from test_server_support import API_KEY, probe_mp4

from airflow_video_edit.errors import ContentMismatchError, InvalidRequestError, VideoAPIError
from airflow_video_edit.hooks import OpenAIVideosHook
from airflow_video_edit.server import LocalVideosServer, gateway

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::DeprecationWarning")]
AUTH = {"Authorization": f"Bearer {API_KEY}"}
CONN_ID = "openai_videos_gateway"
SOURCE_CLIP = str(Path(__file__).resolve().parents[2] / "dags" / "data" / "source_clip.mp4")


@pytest.fixture
def gateway_server() -> Iterator[LocalVideosServer]:
    with LocalVideosServer(api_key=API_KEY, job_seconds=0.3, poll_after_ms=50, gateway_quirks=True) as server:
        yield server


@pytest.fixture
def http(gateway_server: LocalVideosServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway_server.url, headers=AUTH, timeout=30) as client:
        yield client


def connect(monkeypatch: pytest.MonkeyPatch, server: LocalVideosServer, **extra: Any) -> OpenAIVideosHook:
    conn = {"conn_type": "openai_videos", "host": server.url, "password": API_KEY, "extra": extra}
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
    return OpenAIVideosHook(CONN_ID)


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch, gateway_server: LocalVideosServer) -> Iterator[OpenAIVideosHook]:
    with connect(monkeypatch, gateway_server, default_model="sora-2", max_retries=0) as hook:
        yield hook


def wait_done(hook: OpenAIVideosHook, video_id: str) -> Any:
    for _ in range(400):
        video, _ = hook.poll_video(video_id)
        if video.status in ("completed", "failed"):
            return video
        asyncio.run(asyncio.sleep(0.02))  # the job's own time, not a synchronisation
    raise AssertionError(f"{video_id} did not finish")


# --- the mode itself ------------------------------------------------------------------------------
def test_ids_are_long_opaque_base64_and_route_with_a_slash(http: httpx.Client) -> None:
    video = http.post("/videos", json={"prompt": "x", "model": "sora-2"}).json()
    video_id = video["id"]
    assert len(video_id) > 200
    assert "/" in video_id
    assert "+" in video_id
    assert gateway.internal_id(video_id) != video_id
    answer = http.get(f"/videos/{quote(video_id, safe='')}")
    assert answer.status_code == 200, answer.text
    assert answer.json()["id"] == video_id
    # Unquoted, the "/" splits the path: not routed (as with any server).
    assert http.get(f"/videos/{video_id}").status_code == 404


def test_what_the_gateway_refuses(http: httpx.Client, gateway_server: LocalVideosServer) -> None:
    no_model = http.post("/videos", json={"prompt": "x"})
    assert no_model.status_code == 400
    assert no_model.json()["error"]["param"] == "model"
    assert http.get("/videos").status_code == 400
    video = http.post("/videos", json={"prompt": "x", "model": "sora-2"}).json()
    assert http.delete(f"/videos/{quote(video['id'], safe='')}").status_code == 405
    for headers in ({"Authorization": "Bearer wrong"}, {"Authorization": ""}):
        refused = httpx.get(f"{gateway_server.url}/videos/{quote(video['id'], safe='')}", headers=headers)
        assert refused.status_code == 400
        assert refused.json()["error"]["type"] == "auth_error"
    assert gateway_server.stats()["jobs_created"] == 1


# --- the hook through the gateway -----------------------------------------------------------------
def test_hook_operations_work_or_fail_clearly(hook: OpenAIVideosHook, tmp_path: Path) -> None:
    created = wait_done(hook, hook.create_video("A paper boat").id)
    assert created.status == "completed"
    assert len(created.id) > 200
    edited = wait_done(hook, hook.edit_video(created.id, "Make it rain").id)  # by id (default model sent)
    uploaded = wait_done(hook, hook.edit_video(SOURCE_CLIP, "Warm grade").id)
    extended = wait_done(hook, hook.extend_video({"id": edited.id}, "Further", 4).id)
    remixed = wait_done(hook, hook.remix_video(uploaded.id, "At night").id)
    assert remixed.remixed_from_video_id == uploaded.id
    for video in (created, edited, uploaded, extended, remixed):
        assert video.status == "completed"
        assert gateway.internal_id(video.id) != video.id
    saved = hook.download_content(extended.id, tmp_path / "out" / "extended.mp4")
    assert probe_mp4(Path(saved.path))[2] == pytest.approx(8.0, abs=0.3)

    # The gateway sends the MP4 for a thumbnail: refused, named, nothing saved.
    with pytest.raises(ContentMismatchError, match=r"thumbnail.*got mp4.*ignore \?variant="):
        hook.download_content(extended.id, tmp_path / "out" / "thumb.webp", variant="thumbnail")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["extended.mp4"]

    with pytest.raises(InvalidRequestError, match=r"not supported by this gateway.*status=400"):
        list(hook.list_videos())
    with pytest.raises(VideoAPIError, match=r"not supported by this gateway.*status=405"):
        hook.delete_video(created.id)
    character = hook.create_character(SOURCE_CLIP, "Captain")  # model sent: the gateway routes it
    assert hook.get_character(character.id).name == "Captain"


def test_without_a_default_model_the_gateway_says_what_is_missing(
    monkeypatch: pytest.MonkeyPatch, gateway_server: LocalVideosServer
) -> None:
    with connect(monkeypatch, gateway_server, max_retries=0) as hook:
        with pytest.raises(InvalidRequestError, match="model is required") as info:
            hook.create_video("A paper boat")
        assert info.value.param == "model"
        assert hook.create_video("A paper boat", model="sora-2").status == "queued"
    assert gateway_server.stats()["jobs_created"] == 1


def test_connection_test_through_the_gateway(
    monkeypatch: pytest.MonkeyPatch, gateway_server: LocalVideosServer
) -> None:
    ok, message = connect(monkeypatch, gateway_server, default_model="sora-2").test_connection()
    assert ok, message
    assert "GET /videos/" in message
    conn = {"conn_type": "openai_videos", "host": gateway_server.url, "password": "sk-wrong-key"}
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
    ok, message = OpenAIVideosHook(CONN_ID).test_connection()
    assert not ok  # a gateway's 400 auth_error is a refused key, not "URL and key work"
    assert "refused" in message
    assert "sk-wrong-key" not in message


def test_the_async_path_through_the_gateway(hook: OpenAIVideosHook, tmp_path: Path) -> None:
    async def run() -> tuple[Any, Any]:
        video = await hook.acreate_video("Async boat")
        while (video := (await hook.apoll_video(video.id))[0]).status not in ("completed", "failed"):
            await asyncio.sleep(0.02)
        saved = await hook.adownload_content(video.id, tmp_path / "a.mp4")
        return video, saved

    video, saved = asyncio.run(run())
    assert video.status == "completed"
    assert Path(saved.path).stat().st_size == saved.bytes > 0


# --- an operator asking for a preview the gateway does not serve ----------------------------------
class _Store(dict[str, Any]):
    def set(self, key: str, value: Any) -> None:
        self[key] = value

    def delete(self, key: str) -> None:
        self.pop(key, None)


def test_an_operator_asking_for_a_thumbnail_fails_at_once_and_saves_none(
    hook: OpenAIVideosHook, gateway_server: LocalVideosServer, tmp_path: Path
) -> None:
    from collections import defaultdict
    from types import SimpleNamespace

    from airflow.sdk.exceptions import AirflowFailException

    from airflow_video_edit.operators import VideoEditOperator

    ti = SimpleNamespace(pushed=[], stats_tags={})
    ti.xcom_push = lambda key, value: ti.pushed.append((key, value))
    store = _Store()
    ctx = {"ti": ti, "task_state_store": store, "outlet_events": defaultdict(SimpleNamespace)}
    edit = VideoEditOperator(
        task_id="edit",
        video=SOURCE_CLIP,
        prompt="Warm grade",
        destination=f"{tmp_path}/out/",
        variants=["video", "thumbnail"],
        conn_id=CONN_ID,
        poll_interval=0.05,
        deferrable=False,
    )
    # Not retried (another try gets the same MP4): AirflowFailException, naming the cause.
    with pytest.raises(AirflowFailException, match=r"thumbnail: expected webp.*got mp4.*ignore \?variant="):
        edit.execute(ctx)
    assert gateway_server.stats()["jobs_created"] == 1
    saved = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert len(saved) == 1
    assert saved[0].endswith(".mp4")  # the video came; no thumbnail was saved
