"""The local server through the official ``openai`` SDK: every /videos operation, real media."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_server_support import API_KEY, decode_image, probe_mp4, wait_for_video

from airflow_video_edit.server import LocalVideosServer

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::DeprecationWarning")]
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def _download(client: Any, video_id: str, variant: str, path: Path) -> bytes:
    data: bytes = client.videos.download_content(video_id, variant=variant).read()
    path.write_bytes(data)
    return data


@pytest.fixture
def completed(openai_client: Any) -> Any:
    video = openai_client.videos.create(prompt="A calico cat playing a piano", seconds="4", size="720x1280")
    assert video.status == "queued"
    return wait_for_video(openai_client, video.id)


def test_create_poll_download_every_variant(openai_client: Any, completed: Any, tmp_path: Path) -> None:
    assert completed.status == "completed"
    assert completed.progress == 100
    assert completed.completed_at is not None
    assert completed.expires_at > completed.completed_at
    _download(openai_client, completed.id, "video", tmp_path / "v.mp4")
    assert probe_mp4(tmp_path / "v.mp4") == (720, 1280, 4.0)
    thumb = openai_client.videos.download_content(completed.id, variant="thumbnail")
    assert thumb.response.headers["content-type"] == "image/webp"
    assert decode_image(thumb.read(), tmp_path, "t.webp") == (720, 1280)
    sheet = _download(openai_client, completed.id, "spritesheet", tmp_path / "s.webp")
    width, height = decode_image(sheet, tmp_path, "s2.webp")
    assert width > height > 0


def test_status_progresses_and_poll_header(local_server: LocalVideosServer) -> None:
    local_server.store.job_seconds = 2.0
    with httpx.Client(base_url=local_server.url, headers=AUTH) as http:
        video = http.post("/videos", json={"prompt": "slow one"}).json()
        seen = []
        answer = http.get(f"/videos/{video['id']}")
        assert answer.headers["openai-poll-after-ms"] == "100"
        while (body := http.get(f"/videos/{video['id']}").json())["status"] != "completed":
            seen.append((body["status"], body["progress"]))
    statuses = [s for s, _ in seen]
    assert statuses[0] == "queued"
    assert "in_progress" in statuses
    progress = [p for s, p in seen if s == "in_progress"]
    assert progress == sorted(progress)
    assert progress[-1] > progress[0]


def test_list_pages_with_after(openai_client: Any) -> None:
    ids = [openai_client.videos.create(prompt=f"clip {i}").id for i in range(5)]
    first = openai_client.videos.list(limit=2, order="asc")
    assert [v.id for v in first.data] == ids[:2]
    assert first.has_more
    second = openai_client.videos.list(limit=2, order="asc", after=first.data[-1].id)
    assert [v.id for v in second.data] == ids[2:4]
    assert [v.id for v in openai_client.videos.list(limit=100)] == ids[::-1]
    everything = list(openai_client.videos.list(limit=2, order="asc"))  # the SDK follows `after`
    assert [v.id for v in everything] == ids


def test_remix_edit_extend(openai_client: Any, completed: Any, tmp_path: Path) -> None:
    remix = openai_client.videos.remix(completed.id, prompt="now at night")
    assert remix.remixed_from_video_id == completed.id
    source = tmp_path / "source.mp4"
    _download(openai_client, completed.id, "video", source)
    with source.open("rb") as upload:
        by_upload = openai_client.videos.edit(video=upload, prompt="make it snow")
    with httpx.Client(base_url=str(openai_client.base_url), headers=AUTH) as http:
        by_json = http.post(
            "/videos/edits", json={"video": {"id": completed.id}, "prompt": "blue", "model": "sora-2"}
        )
        by_field = http.post(
            "/videos/edits", data={"video[id]": completed.id, "prompt": "red"}, files={"unused": ("x", b"")}
        )
        extension = http.post(
            "/videos/extensions", json={"video": {"id": completed.id}, "prompt": "continue", "seconds": "8"}
        )
    assert by_json.status_code == by_field.status_code == extension.status_code == 200, by_json.text
    assert extension.json()["seconds"] == "12"
    with source.open("rb") as upload:
        extended_upload = openai_client.videos.extend(video=upload, prompt="more", seconds="4")
    assert extended_upload.seconds == "8"
    for video_id, seconds in [
        (remix.id, 4.0),
        (by_upload.id, 4.0),
        (by_json.json()["id"], 4.0),
        (by_field.json()["id"], 4.0),
        (extension.json()["id"], 12.0),
    ]:
        assert wait_for_video(openai_client, video_id).status == "completed"
        _download(openai_client, video_id, "video", tmp_path / f"{video_id}.mp4")
        assert probe_mp4(tmp_path / f"{video_id}.mp4") == (720, 1280, seconds)


def test_edit_visibly_derives_from_source(openai_client: Any, completed: Any, tmp_path: Path) -> None:
    import av

    with httpx.Client(base_url=str(openai_client.base_url), headers=AUTH) as http:
        edit_id = http.post("/videos/edits", json={"video": {"id": completed.id}, "prompt": "tint"}).json()[
            "id"
        ]
    wait_for_video(openai_client, edit_id)

    def first_frame(video_id: str) -> Any:
        path = tmp_path / f"{video_id}.mp4"
        _download(openai_client, video_id, "video", path)
        with av.open(str(path)) as container:
            frame = next(container.decode(video=0))
            return bytes(frame.planes[0]), bytes(frame.planes[1])

    (src_y, src_u), (edit_y, edit_u) = first_frame(completed.id), first_frame(edit_id)
    top = len(src_y) // 3  # the top of the picture keeps its luma, the chroma (tint) changes
    same = sum(abs(a - b) < 16 for a, b in zip(src_y[:top:97], edit_y[:top:97], strict=True))
    assert same / len(src_y[:top:97]) > 0.9
    assert src_u[:1000] != edit_u[:1000]
    assert src_y[-top:] != edit_y[-top:]  # the band carrying the prompt


def test_delete_then_404(openai_client: Any, completed: Any) -> None:
    import openai

    deleted = openai_client.videos.delete(completed.id)
    assert (deleted.id, deleted.deleted, deleted.object) == (completed.id, True, "video.deleted")
    with pytest.raises(openai.NotFoundError):
        openai_client.videos.retrieve(completed.id)
    with pytest.raises(openai.NotFoundError):
        openai_client.videos.download_content(completed.id)


def test_characters(openai_client: Any, completed: Any, tmp_path: Path) -> None:
    import openai

    source = tmp_path / "c.mp4"
    _download(openai_client, completed.id, "video", source)
    with source.open("rb") as upload:
        character = openai_client.videos.create_character(video=upload, name="Captain Cat")
    assert character.id.startswith("char_")
    assert character.name == "Captain Cat"
    assert openai_client.videos.get_character(character.id).name == "Captain Cat"
    with pytest.raises(openai.NotFoundError):
        openai_client.videos.get_character("char_missing")
    with source.open("rb") as upload, pytest.raises(openai.BadRequestError):
        openai_client.videos.create_character(video=upload, name="x" * 81)


def test_errors_are_typed(local_server: LocalVideosServer, openai_client: Any) -> None:
    import openai

    wrong = openai.OpenAI(base_url=local_server.url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        wrong.videos.list()
    assert info.value.body["code"] == "invalid_api_key"  # type: ignore[index]
    for kwargs in [
        {"prompt": "x", "model": "sora-9"},
        {"prompt": "x", "size": "10x10"},
        {"prompt": "x", "seconds": "5"},
        {"prompt": ""},
        {"prompt": "x" * 32_001},
    ]:
        with pytest.raises(openai.BadRequestError) as bad:
            openai_client.videos.create(**kwargs)
        assert bad.value.body["param"] in ("model", "size", "seconds", "prompt")  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        openai_client.videos.retrieve("video_missing")
    running = openai_client.videos.create(prompt="still running")
    with pytest.raises(openai.ConflictError):
        openai_client.videos.remix(running.id, prompt="too early")
    with pytest.raises(openai.ConflictError):
        openai_client.videos.download_content(running.id)
    # Azure-style key header works too; the error shape is OpenAI's.
    answer = httpx.get(f"{local_server.url}/videos/video_missing", headers={"api-key": API_KEY})
    assert answer.status_code == 404
    assert set(answer.json()["error"]) == {"message", "type", "param", "code"}


def test_upload_limit_and_bad_upload(local_server: LocalVideosServer) -> None:
    local_server.app.max_upload_bytes = 10_000  # type: ignore[union-attr]
    with httpx.Client(base_url=local_server.url, headers=AUTH) as http:
        big = http.post("/videos/edits", data={"prompt": "x"}, files={"video": ("v.mp4", b"\0" * 20_000)})
        assert big.status_code == 413
        junk = http.post("/videos/edits", data={"prompt": "x"}, files={"video": ("v.mp4", b"not a video")})
        assert junk.status_code == 400
        assert junk.json()["error"]["param"] == "video"


def test_create_with_input_reference(local_server: LocalVideosServer, openai_client: Any) -> None:
    video = openai_client.videos.create(prompt="ref", input_reference=("ref.png", b"\x89PNG...", "image/png"))
    assert video.status == "queued"
    with httpx.Client(base_url=local_server.url, headers=AUTH) as http:
        ok = http.post("/videos", json={"prompt": "r", "input_reference": {"image_url": "https://x/y.png"}})
        bad = http.post("/videos", json={"prompt": "r", "input_reference": {}})
    assert ok.status_code == 200
    assert bad.status_code == 400


def test_import_video_and_stats(
    local_server: LocalVideosServer, openai_client: Any, completed: Any, tmp_path: Path
) -> None:
    source = tmp_path / "in.mp4"
    _download(openai_client, completed.id, "video", source)
    imported = local_server.store.import_video(source, prompt="from disk")
    video = openai_client.videos.retrieve(imported)
    assert (video.status, video.size, video.seconds) == ("completed", "720x1280", "4")
    stats = local_server.stats()
    assert stats["jobs_by_kind"]["create"] == 1
    assert stats["requests"]["GET /v1/videos/{video_id}"]["200"] >= 2
    stats_url = f"{local_server.root_url}/_server/stats"
    assert httpx.get(stats_url, headers=local_server.control_headers).json()["jobs_created"] == 2
    local_server.reset_stats()
    assert local_server.stats()["requests_total"] == 0


def test_api_key_never_logged(
    local_server: LocalVideosServer, openai_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    openai_client.videos.list()
    httpx.get(f"{local_server.url}/videos", headers={"api-key": API_KEY})
    httpx.get(f"{local_server.url}/videos", headers={"Authorization": "Bearer sk-wrong-secret"})
    lines = [record.getMessage() for record in caplog.records if record.name.startswith("airflow_video_edit")]
    assert any("GET /v1/videos 200" in line for line in lines)
    assert any("GET /v1/videos 401" in line for line in lines)
    assert API_KEY not in caplog.text
    assert "sk-wrong-secret" not in caplog.text
    assert "authorization" not in caplog.text.lower()
