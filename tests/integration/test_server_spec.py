"""The local server is spec-exact: sizes from the spec's enum, the OpenAI error envelope for every
error (malformed bodies included), strict string fields, and control routes behind the key."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_server_support import API_KEY, probe_mp4, wait_for_video

from airflow_video_edit.models import KNOWN_SIZES
from airflow_video_edit.server import LocalVideosServer, media

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::DeprecationWarning")]
AUTH = {"Authorization": f"Bearer {API_KEY}"}
POST_ROUTES = ["/videos", "/videos/edits", "/videos/extensions", "/videos/characters", "/videos/{id}/remix"]


@pytest.fixture
def http(local_server: LocalVideosServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=local_server.url, headers=AUTH, timeout=30) as client:
        yield client


@pytest.fixture
def small_clip(tmp_path: Path) -> Path:
    """A 320x180 MP4: not one of the spec's sizes."""
    files = media.render_generated(tmp_path, size="320x180", seconds=1.0, prompt="small", label="SMALL")
    assert probe_mp4(files.video)[:2] == (320, 180)
    return files.video


def _assert_envelope(answer: httpx.Response, status: int, param: str | None = None) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    error: dict[str, Any] = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if param is not None:
        assert error["param"] == param, error
    return error


# --- sizes ----------------------------------------------------------------------------------------
def test_jobs_from_an_odd_sized_upload_report_a_spec_size(
    openai_client: Any, small_clip: Path, tmp_path: Path
) -> None:
    with small_clip.open("rb") as upload:
        edit = openai_client.videos.edit(video=upload, prompt="make it snow")
    with small_clip.open("rb") as upload:
        extension = openai_client.videos.extend(video=upload, prompt="more", seconds="4")
    assert edit.size == extension.size == "1280x720"  # landscape, as the clip
    edit = wait_for_video(openai_client, edit.id)
    remix = wait_for_video(openai_client, openai_client.videos.remix(edit.id, prompt="at night").id)
    assert {edit.size, remix.size} <= set(KNOWN_SIZES)
    assert remix.size == "1280x720"
    # The frames keep the clip's real dimensions (a private detail of rendering).
    for video in (edit, remix):
        path = tmp_path / f"{video.id}.mp4"
        path.write_bytes(openai_client.videos.download_content(video.id).read())
        assert probe_mp4(path)[:2] == (320, 180)


def test_imported_videos_report_a_spec_size(local_server: LocalVideosServer, small_clip: Path) -> None:
    video_id = local_server.store.import_video(small_clip)
    assert local_server.store.view(local_server.store.jobs[video_id]).size == "1280x720"


# --- the error envelope ---------------------------------------------------------------------------
@pytest.mark.parametrize("route", POST_ROUTES)
def test_a_malformed_multipart_body_gets_the_error_envelope(
    http: httpx.Client, openai_client: Any, route: str
) -> None:
    if "{id}" in route:
        route = route.replace(
            "{id}", wait_for_video(openai_client, openai_client.videos.create(prompt="x").id).id
        )
    broken = b'--XYZ\r\nContent-Disposition: form-data; name="prompt"\r\n\r\nhello'  # never closed
    answer = http.post(route, content=broken, headers={"content-type": "multipart/form-data; boundary=XYZ"})
    error = _assert_envelope(answer, 400)
    assert error["type"] == "invalid_request_error"


def test_unknown_routes_and_methods_get_the_error_envelope(http: httpx.Client) -> None:
    _assert_envelope(http.get("/nothing-here"), 404)
    _assert_envelope(http.put("/videos"), 405)


# --- strict string fields -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": 42}, "prompt"),
        ({"prompt": None}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "x", "model": None}, "model"),
        ({"prompt": "x", "model": ""}, "model"),
        ({"prompt": "x", "model": 2}, "model"),
        ({"prompt": "x", "size": None}, "size"),
        ({"prompt": "x", "size": "320x180"}, "size"),
        ({"prompt": "x", "seconds": 4}, "seconds"),
        ({"prompt": "x", "seconds": ""}, "seconds"),
        ({"prompt": "x", "input_reference": None}, "input_reference"),
        ({"prompt": "x", "input_reference": ""}, "input_reference"),
        ({"prompt": "x", "input_reference": "https://example.com/a.png"}, "input_reference"),
        ({"prompt": "x", "input_reference": {"image_url": ""}}, "input_reference"),
        ({"prompt": "x", "input_reference": {"image_url": "a", "file_id": "b"}}, "input_reference"),
    ],
)
def test_create_rejects_null_empty_and_non_strings(
    http: httpx.Client, local_server: LocalVideosServer, body: dict[str, Any], param: str
) -> None:
    _assert_envelope(http.post("/videos", json=body), 400, param)
    assert local_server.stats()["jobs_created"] == 0


@pytest.mark.parametrize(
    ("route", "body", "param"),
    [
        ("/videos/edits", {"video": None, "prompt": "x"}, "video"),
        ("/videos/edits", {"video": "video_123", "prompt": "x"}, "video"),
        ("/videos/edits", {"video": {"id": ""}, "prompt": "x"}, "video"),
        ("/videos/edits", {"video": {"id": "{id}"}, "prompt": 7}, "prompt"),
        ("/videos/extensions", {"video": {"id": "{id}"}, "prompt": "x", "seconds": 4}, "seconds"),
        ("/videos/extensions", {"video": {"id": "{id}"}, "prompt": "x"}, "seconds"),
        ("/videos/{id}/remix", {"prompt": None}, "prompt"),
        ("/videos/{id}/remix", {"prompt": ["a"]}, "prompt"),
    ],
)
def test_derived_jobs_reject_bad_fields(
    http: httpx.Client, openai_client: Any, route: str, body: dict[str, Any], param: str
) -> None:
    source = wait_for_video(openai_client, openai_client.videos.create(prompt="source").id)
    if isinstance(body.get("video"), dict) and body["video"]["id"] == "{id}":
        body = {**body, "video": {"id": source.id}}
    _assert_envelope(http.post(route.replace("{id}", source.id), json=body), 400, param)


def test_valid_requests_still_work(http: httpx.Client, openai_client: Any) -> None:
    """The strict checks leave everything the spec allows alone (the SDK sends these shapes)."""
    video = openai_client.videos.create(prompt="ok", model="sora-2", seconds="8", size="1280x720")
    assert (video.model, video.seconds, video.size) == ("sora-2", "8", "1280x720")
    by_reference = http.post(
        "/videos", json={"prompt": "x", "input_reference": {"image_url": "https://e/a.png"}}
    )
    assert by_reference.status_code == 200, by_reference.text
    form = http.post("/videos", data={"prompt": "form", "seconds": "4"}, files={"unused": ("x", b"")})
    assert form.status_code == 200, form.text


# --- control routes ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("method", "route"), [("GET", "stats"), ("POST", "reset-stats"), ("POST", "faults")])
def test_control_routes_need_the_key_when_one_is_set(
    local_server: LocalVideosServer, method: str, route: str
) -> None:
    url = f"{local_server.root_url}/_server/{route}"
    body = [] if route == "faults" else None
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        _assert_envelope(httpx.request(method, url, json=body, headers=headers), 401)
    answer = httpx.request(method, url, json=body, headers=local_server.control_headers)
    assert answer.status_code == 200, answer.text


def test_a_strangers_fault_rules_are_refused(local_server: LocalVideosServer, http: httpx.Client) -> None:
    rules = ["GET /v1/videos status=500"]
    refused = httpx.post(f"{local_server.root_url}/_server/faults", json=rules)
    assert refused.status_code == 401
    assert http.get("/videos").status_code == 200  # no rule was installed


def test_control_routes_are_open_without_a_key() -> None:
    with LocalVideosServer(api_key=None, job_seconds=0.5) as server:
        assert httpx.get(f"{server.root_url}/_server/stats").status_code == 200
        assert server.control_headers == {}


def test_control_from_another_process_sends_the_key() -> None:
    with LocalVideosServer(api_key="sk-control-0123", job_seconds=0.5, subprocess=True) as server:
        server.set_faults(["GET /v1/videos status=503;times=1"])
        with httpx.Client(base_url=server.url, headers={"Authorization": "Bearer sk-control-0123"}) as http:
            assert http.get("/videos").status_code == 503
            assert http.get("/videos").status_code == 200
        assert server.stats()["requests"]["GET /v1/videos"] == {"200": 1, "503": 1}
        server.reset_stats()
        assert "GET /v1/videos" not in server.stats()["requests"]


# --- Idempotency-Key ------------------------------------------------------------------------------
def test_the_same_key_and_request_return_the_first_job(
    http: httpx.Client, local_server: LocalVideosServer
) -> None:
    key = {"Idempotency-Key": "k-create-1"}
    first = http.post("/videos", json={"prompt": "a boat", "seconds": "8"}, headers=key)
    again = http.post("/videos", json={"seconds": "8", "prompt": "a boat"}, headers=key)
    assert first.status_code == again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert local_server.stats()["jobs_created"] == 1
    other = http.post("/videos", json={"prompt": "another boat"}, headers=key)
    _assert_envelope(other, 409)
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert http.post("/videos", json={"prompt": "a boat", "seconds": "8"}).json()["id"] != first.json()["id"]
    assert local_server.stats()["jobs_created"] == 2


def test_a_multipart_retry_with_a_new_boundary_is_the_same_request(
    http: httpx.Client, local_server: LocalVideosServer, small_clip: Path
) -> None:
    key = {"Idempotency-Key": "k-edit-upload"}
    ids = []
    for _ in range(2):  # httpx picks a new random boundary each time
        with small_clip.open("rb") as upload:
            answer = http.post("/videos/edits", data={"prompt": "snow"}, files={"video": upload}, headers=key)
        assert answer.status_code == 200, answer.text
        ids.append(answer.json()["id"])
    assert ids[0] == ids[1]
    with small_clip.open("rb") as upload:
        changed = http.post("/videos/edits", data={"prompt": "rain"}, files={"video": upload}, headers=key)
    assert changed.status_code == 409
    assert local_server.stats()["jobs_created"] == 1


def test_a_refused_request_leaves_its_key_free(http: httpx.Client, local_server: LocalVideosServer) -> None:
    key = {"Idempotency-Key": "k-bad-first"}
    _assert_envelope(http.post("/videos", json={"prompt": "x", "size": "1x1"}, headers=key), 400, "size")
    assert http.post("/videos", json={"prompt": "x"}, headers=key).status_code == 200
    assert local_server.stats()["jobs_created"] == 1


def test_a_lost_reply_replayed_by_key(http: httpx.Client, local_server: LocalVideosServer) -> None:
    """The reply to the first request is lost after the job was created; the same key gets it."""
    key = {"Idempotency-Key": "k-lost"}
    with pytest.raises(httpx.TransportError):
        http.post("/videos", json={"prompt": "x"}, headers={**key, "x-fault": "reset"})
    replay = http.post("/videos", json={"prompt": "x"}, headers=key)
    assert replay.headers["idempotent-replayed"] == "true"
    assert local_server.stats()["jobs_created"] == 1
