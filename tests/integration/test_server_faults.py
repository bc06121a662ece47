"""Fault injection and restart of the local server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_server_support import API_KEY, probe_mp4, wait_for_video, wait_until

from airflow_video_edit.server import LocalVideosServer

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::DeprecationWarning")]
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def _http(server: LocalVideosServer) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers=AUTH, timeout=10)


def test_rate_limit_header_faults(openai_client: Any, local_server: LocalVideosServer) -> None:
    import openai

    with pytest.raises(openai.RateLimitError) as info:
        openai_client.videos.list(extra_headers={"x-fault": "status=429;retry-after=2"})
    assert info.value.response.headers["retry-after"] == "2"
    with _http(local_server) as http:
        plain = http.get("/videos", headers={"x-fault": "status=429"})
        assert plain.status_code == 429
        assert "retry-after" not in plain.headers
        assert plain.json()["error"]["code"] == "rate_limit_exceeded"
        ms = http.get("/videos", headers={"x-fault": "status=429;retry-after-ms=150"})
        assert ms.headers["retry-after-ms"] == "150"


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors(openai_client: Any, status: int) -> None:
    import openai

    with pytest.raises(openai.InternalServerError) as info:
        openai_client.videos.create(prompt="x", extra_headers={"x-fault": f"status={status}"})
    assert info.value.status_code == status
    assert openai_client.videos.list().data == []  # the faulted create made no job


def test_run_wide_rule_fails_twice_then_succeeds(local_server: LocalVideosServer) -> None:
    import openai

    video_id = openai.OpenAI(base_url=local_server.url, api_key=API_KEY).videos.create(prompt="x").id
    local_server.set_faults([{"method": "GET", "path": "/v1/videos/{id}", "fault": "status=503", "times": 2}])
    with _http(local_server) as http:
        codes = [http.get(f"/videos/{video_id}").status_code for _ in range(3)]
        assert http.get("/videos").status_code == 200  # other paths untouched
    assert codes == [503, 503, 200]
    # The SDK's own retries absorb the same script (2 retries by default).
    local_server.set_faults(["GET /v1/videos/* status=503;retry-after-ms=10;times=2"])
    retrying = openai.OpenAI(base_url=local_server.url, api_key=API_KEY, max_retries=2)
    assert retrying.videos.retrieve(video_id).id == video_id
    stats = local_server.stats()["requests"]["GET /v1/videos/{video_id}"]
    assert stats["503"] == 4
    # Rules can be replaced over HTTP too.
    faults_url = f"{local_server.root_url}/_server/faults"
    assert httpx.post(faults_url, json=[], headers=local_server.control_headers).json() == {"rules": 0}


def test_delay(local_server: LocalVideosServer) -> None:
    with _http(local_server) as http:
        with pytest.raises(httpx.ReadTimeout):
            http.get("/videos", headers={"x-fault": "delay=1"}, timeout=0.3)
        answer = http.get("/videos", headers={"x-fault": "delay=0.2"})
    assert answer.status_code == 200
    assert answer.elapsed.total_seconds() >= 0.2


def test_connection_reset(local_server: LocalVideosServer, openai_client: Any) -> None:
    import openai

    with _http(local_server) as http, pytest.raises(httpx.RemoteProtocolError):
        http.post("/videos", json={"prompt": "lost answer"}, headers={"x-fault": "reset"})
    with pytest.raises(openai.APIConnectionError):
        openai_client.videos.list(extra_headers={"x-fault": "reset"})
    # The request was handled before the connection dropped: the job exists.
    assert [v.prompt for v in openai_client.videos.list().data] == ["lost answer"]


def test_malformed_json(local_server: LocalVideosServer) -> None:
    with _http(local_server) as http:
        answer = http.get("/videos", headers={"x-fault": "malformed-json"})
    assert answer.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        answer.json()


def test_truncated_download(local_server: LocalVideosServer, openai_client: Any) -> None:
    video = wait_for_video(openai_client, openai_client.videos.create(prompt="t").id)
    with _http(local_server) as http:
        full = http.get(f"/videos/{video.id}/content")
        assert int(full.headers["content-length"]) == len(full.content) > 2000
        received: list[bytes] = []
        with http.stream(
            "GET", f"/videos/{video.id}/content", headers={"x-fault": "truncate=1000"}
        ) as answer:
            assert int(answer.headers["content-length"]) == len(full.content)
            with pytest.raises(httpx.RemoteProtocolError):
                received.extend(answer.iter_raw())
    assert len(b"".join(received)) == 1000


def test_failed_jobs(openai_client: Any) -> None:
    by_header = openai_client.videos.create(
        prompt="x", extra_headers={"x-fault": "fail-job=moderation_blocked"}
    )
    by_prompt = openai_client.videos.create(prompt="a cat [fail-job=content_policy_violation]")
    for video_id, code in [(by_header.id, "moderation_blocked"), (by_prompt.id, "content_policy_violation")]:
        video = wait_for_video(openai_client, video_id)
        assert video.status == "failed"
        assert video.error.code == code
        assert video.error.message


def test_assets_expire_early(openai_client: Any) -> None:
    import openai

    video = openai_client.videos.create(prompt="short lived", extra_headers={"x-fault": "expire-after=0.5"})
    video = wait_for_video(openai_client, video.id)
    assert video.expires_at - video.completed_at <= 1

    def expired() -> bool:
        try:
            openai_client.videos.download_content(video.id)
        except openai.NotFoundError as exc:
            return exc.body["code"] == "video_expired"  # type: ignore[no-any-return,index]
        return False

    wait_until(expired, timeout=5)


def test_faults_file_and_bad_header(tmp_path: Path) -> None:
    faults = {"rules": [{"method": "POST", "path": "/v1/videos", "fault": "status=502", "times": 1}]}
    with LocalVideosServer(api_key=API_KEY, job_seconds=0.5, faults=faults) as server, _http(server) as http:
        assert http.post("/videos", json={"prompt": "a"}).status_code == 502
        assert http.post("/videos", json={"prompt": "a"}).status_code == 200
        assert http.get("/videos", headers={"x-fault": "explode=1"}).status_code == 400


def test_restart_with_data_dir_in_a_child_process(tmp_path: Path) -> None:
    import openai

    data_dir = tmp_path / "state"
    options: dict[str, Any] = {
        "api_key": API_KEY,
        "job_seconds": 2.0,
        "data_dir": data_dir,
        "subprocess": True,
    }
    first = LocalVideosServer(**options).start()
    client = openai.OpenAI(base_url=first.url, api_key=API_KEY, max_retries=0)
    video = client.videos.create(prompt="survives a restart")
    first.kill()  # crash mid-job
    with LocalVideosServer(**{**options, "port": first.port}) as second:
        assert client.videos.retrieve(video.id).created_at == video.created_at
        done = wait_for_video(client, video.id)
        assert done.status == "completed"
        content = client.videos.download_content(video.id).read()
        (tmp_path / "r.mp4").write_bytes(content)
        assert probe_mp4(tmp_path / "r.mp4") == (720, 1280, 4.0)
        assert second.stats()["jobs_stored"] == 1
    # And once more, in process, the rendered media are found on disk.
    with LocalVideosServer(api_key=API_KEY, data_dir=data_dir) as third:
        again = openai.OpenAI(base_url=third.url, api_key=API_KEY, max_retries=0)
        assert again.videos.download_content(video.id).read() == content
