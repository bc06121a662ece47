"""The Hook: connection -> settings, and every operation through its sync and async methods.

The connection comes from ``AIRFLOW_CONN_OPENAI_VIDEOS_DEFAULT`` (JSON form); only the transport is
swapped for a fake backend that records what it saw.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_video_edit import errors
from airflow_video_edit.hooks import CONNECTION_TEST_ID, OpenAIVideosHook
from airflow_video_edit.settings import settings_from_connection

from .conftest import SECRET, Seen, Server, error_json, set_connection, video_json
from .media_bytes import jpeg, mp4, png

EXTRA = {
    "organization": "org-42",
    "project": "proj-7",
    "extra_headers": {"X-Gateway-Tenant": "team-a"},
    "extra_query": {"api-version": "preview"},
    "default_model": "sora-2-pro",
}
CONTENT = {"video": mp4(100_000), "thumbnail": png(), "spritesheet": jpeg()}
PAGES = {None: ["video_1", "video_2"], "video_2": ["video_3", "video_4"], "video_4": ["video_5"]}


class FakeAPI(Server):
    """Answers every Videos API route like a backend would."""

    def __init__(self) -> None:
        super().__init__(handler=self.route)

    def route(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/v1/")
        method = request.method
        if method == "GET" and path == "videos":
            after = request.url.params.get("after")
            ids = PAGES[after]
            return httpx.Response(
                200,
                json={
                    "object": "list",
                    "data": [video_json(i, "completed") for i in ids],
                    "first_id": ids[0],
                    "last_id": ids[-1],
                    "has_more": ids[-1] != "video_5",
                },
            )
        if method == "POST" and path == "videos/characters":
            return httpx.Response(200, json={"id": "char_1", "name": "Mossy", "created_at": 1712697600})
        if method == "GET" and path.startswith("videos/characters/"):
            return httpx.Response(200, json={"id": path.rsplit("/", 1)[1], "name": "Mossy"})
        if method == "POST" and path in ("videos", "videos/edits", "videos/extensions"):
            return httpx.Response(200, json=video_json("video_new"))
        if method == "POST" and path.endswith("/remix"):
            source = path.split("/")[1]
            return httpx.Response(200, json=video_json("video_remix", remixed_from_video_id=source))
        if method == "GET" and path.endswith("/content"):
            return httpx.Response(
                200, content=CONTENT[request.url.params["variant"]], headers={"content-type": "video/mp4"}
            )
        if method == "GET" and path.startswith("videos/"):
            return httpx.Response(
                200,
                json=video_json(path.split("/")[1], "in_progress", progress=33.3),
                headers={"openai-poll-after-ms": "2500"},
            )
        if method == "DELETE":
            return httpx.Response(
                200, json={"id": path.split("/")[1], "object": "video.deleted", "deleted": True}
            )
        return httpx.Response(404, json={"error": {"message": f"no route {method} {path}"}})


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def api() -> FakeAPI:
    return FakeAPI()


@pytest.fixture
def hook(wire_hook: Any, api: FakeAPI) -> OpenAIVideosHook:
    return wire_hook(api, **EXTRA)  # type: ignore[no-any-return]


async def call(hook: OpenAIVideosHook, mode: str, name: str, *args: Any, **kwargs: Any) -> Any:
    """``hook.<name>(...)`` or ``await hook.a<name>(...)``; list iterators are drained."""
    if mode == "sync":
        result = getattr(hook, name)(*args, **kwargs)
        return list(result) if name == "list_videos" else result
    method = getattr(hook, "a" + name)
    if name == "list_videos":
        return [video async for video in method(*args, **kwargs)]
    return await method(*args, **kwargs)


def assert_connection_applied(seen: Seen, *, auth: str = "bearer") -> None:
    if auth == "bearer":
        assert seen.headers["authorization"] == f"Bearer {SECRET}"
        assert "api-key" not in seen.headers
    else:
        assert seen.headers["api-key"] == SECRET
        assert "authorization" not in seen.headers
    assert seen.headers["openai-organization"] == "org-42"
    assert seen.headers["openai-project"] == "proj-7"
    assert seen.headers["x-gateway-tenant"] == "team-a"
    assert seen.headers["user-agent"] == "airflow-video-edit"
    assert seen.params["api-version"] == "preview"


@pytest.fixture(autouse=True)
def _every_request_carries_the_connection(api: FakeAPI) -> Any:
    yield
    for seen in api.seen:
        assert_connection_applied(seen)


# --------------------------------------------------------------------------------------------
# Operations
# --------------------------------------------------------------------------------------------
async def test_create_json_with_default_model(hook: OpenAIVideosHook, api: FakeAPI, mode: str) -> None:
    video = await call(hook, mode, "create_video", "A calico cat", size="1280x720", seconds=8)
    assert video.id == "video_new"
    assert (api.last.method, api.last.path) == ("POST", "/v1/videos")
    assert api.last.headers["content-type"] == "application/json"
    assert api.last.json() == {
        "prompt": "A calico cat",
        "size": "1280x720",
        "seconds": "8",
        "model": "sora-2-pro",
    }


async def test_create_explicit_model_wins(hook: OpenAIVideosHook, api: FakeAPI, mode: str) -> None:
    await call(hook, mode, "create_video", "A cat", model="sora-2")
    assert api.last.json() == {"prompt": "A cat", "model": "sora-2"}


async def test_create_multipart_with_input_reference(
    hook: OpenAIVideosHook, api: FakeAPI, mode: str, tmp_path: Path
) -> None:
    image = tmp_path / "ref.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + b"p" * 1000)
    await call(hook, mode, "create_video", "Animate this", input_reference=image, seconds="4")
    fields = api.last.multipart()
    assert fields["input_reference"] == ("ref.png", image.read_bytes())
    assert fields["prompt"] == (None, b"Animate this")
    assert fields["seconds"] == (None, b"4")
    assert fields["model"] == (None, b"sora-2-pro")
    assert re.search(
        r'name="input_reference"; filename="ref.png"\r\nContent-Type: image/png',
        api.last.content.decode("latin-1"),
    )


async def test_retrieve(hook: OpenAIVideosHook, api: FakeAPI, mode: str) -> None:
    video = await call(hook, mode, "get_video", "video_abc")
    assert (video.id, video.status, video.progress) == ("video_abc", "in_progress", 33)
    assert (api.last.method, api.last.path) == ("GET", "/v1/videos/video_abc")


async def test_poll_returns_poll_after_hint(hook: OpenAIVideosHook, api: FakeAPI, mode: str) -> None:
    video, poll_after = await call(hook, mode, "poll_video", "video_abc")
    assert video.id == "video_abc"
    assert poll_after == 2.5


async def test_poll_without_hint(wire_hook: Any, mode: str) -> None:
    server = Server().reply(httpx.Response(200, json=video_json(), headers={"openai-poll-after-ms": "soon"}))
    hook = wire_hook(server, **EXTRA)
    _, poll_after = await call(hook, mode, "poll_video", "video_123")
    assert poll_after is None


async def test_list_follows_after_cursor(hook: OpenAIVideosHook, api: FakeAPI, mode: str) -> None:
    videos = await call(hook, mode, "list_videos", order="asc", page_size=2)
    assert [v.id for v in videos] == ["video_1", "video_2", "video_3", "video_4", "video_5"]
    assert [s.params.get("after") for s in api.seen] == [None, "video_2", "video_4"]
    assert all(s.params["limit"] == "2" and s.params["order"] == "asc" for s in api.seen)


@pytest.mark.parametrize("cursor", ["video 2", "cursor/with+base64==", "a%b"])
async def test_a_cursor_is_sent_back_as_received(wire_hook: Any, mode: str, cursor: str) -> None:
    page = {"object": "list", "data": [video_json("video_1")], "last_id": cursor, "has_more": True}
    end = {"object": "list", "data": [], "has_more": False}
    server = Server().reply(httpx.Response(200, json=page), httpx.Response(200, json=end))
    await call(wire_hook(server, **EXTRA), mode, "list_videos")
    assert server.seen[1].params["after"] == cursor


async def test_delete(hook: OpenAIVideosHook, api: FakeAPI, mode: str) -> None:
    deleted = await call(hook, mode, "delete_video", "video_abc")
    assert deleted.deleted
    assert deleted.id == "video_abc"
    assert (api.last.method, api.last.path) == ("DELETE", "/v1/videos/video_abc")


@pytest.mark.parametrize("variant", ["video", "thumbnail", "spritesheet"])
async def test_download_each_variant(
    hook: OpenAIVideosHook, api: FakeAPI, mode: str, tmp_path: Path, variant: str
) -> None:
    destination = tmp_path / "out" / f"{variant}.bin"
    result = await call(hook, mode, "download_content", "video_abc", destination, variant=variant)
    assert destination.read_bytes() == CONTENT[variant]
    assert result.bytes == len(CONTENT[variant])
    assert api.last.path == "/v1/videos/video_abc/content"
    assert api.last.params["variant"] == variant


async def test_download_to_object_storage_path(
    hook: OpenAIVideosHook, api: FakeAPI, mode: str, tmp_path: Path
) -> None:
    from airflow.sdk import ObjectStoragePath

    destination = ObjectStoragePath(f"file://{tmp_path}/video.mp4")
    await call(hook, mode, "download_content", "video_abc", destination)
    assert (tmp_path / "video.mp4").read_bytes() == CONTENT["video"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["video.mp4"]


async def test_remix_gets_no_default_model(hook: OpenAIVideosHook, api: FakeAPI, mode: str) -> None:
    video = await call(hook, mode, "remix_video", "video_abc", "Make it night")
    assert video.remixed_from_video_id == "video_abc"
    assert (api.last.method, api.last.path) == ("POST", "/v1/videos/video_abc/remix")
    assert api.last.json() == {"prompt": "Make it night"}


@pytest.mark.parametrize(
    "reference", ["video_abc", {"id": "video_abc"}, "abc"], ids=["id", "mapping", "bare"]
)
async def test_edit_by_id(hook: OpenAIVideosHook, api: FakeAPI, mode: str, reference: Any) -> None:
    await call(hook, mode, "edit_video", reference, "Blue sky")
    expected_id = reference["id"] if isinstance(reference, dict) else reference
    assert (api.last.method, api.last.path) == ("POST", "/v1/videos/edits")
    assert api.last.json() == {"video": {"id": expected_id}, "prompt": "Blue sky", "model": "sora-2-pro"}


async def test_edit_by_upload_from_path(
    hook: OpenAIVideosHook, api: FakeAPI, mode: str, tmp_path: Path
) -> None:
    source = tmp_path / "clip.mp4"
    source.write_bytes(b"clip-bytes" * 10_000)
    for value in (source, str(source)):
        await call(hook, mode, "edit_video", value, "Blue sky", model="sora-2")
        fields = api.last.multipart()
        assert fields["video"] == ("clip.mp4", source.read_bytes())
        assert fields["prompt"] == (None, b"Blue sky")
        assert fields["model"] == (None, b"sora-2")
        assert api.last.path == "/v1/videos/edits"


async def test_edit_by_upload_from_bytes(hook: OpenAIVideosHook, api: FakeAPI, mode: str) -> None:
    await call(hook, mode, "edit_video", b"raw-video", "Blue sky")
    fields = api.last.multipart()
    assert fields["video"] == ("upload.mp4", b"raw-video")
    assert fields["model"] == (None, b"sora-2-pro")


async def test_edit_by_upload_from_object_storage_path(
    hook: OpenAIVideosHook, api: FakeAPI, mode: str, tmp_path: Path
) -> None:
    from airflow.sdk import ObjectStoragePath

    (tmp_path / "in.mov").write_bytes(b"mov-bytes" * 1000)
    await call(hook, mode, "edit_video", ObjectStoragePath(f"file://{tmp_path}/in.mov"), "Blue sky")
    fields = api.last.multipart()
    assert fields["video"] == ("in.mov", b"mov-bytes" * 1000)
    assert b"Content-Type: video/quicktime" in api.last.content


async def test_extend(hook: OpenAIVideosHook, api: FakeAPI, mode: str, tmp_path: Path) -> None:
    await call(hook, mode, "extend_video", "video_abc", "And then it rains", 12)
    assert api.last.path == "/v1/videos/extensions"
    assert api.last.json() == {
        "video": {"id": "video_abc"},
        "prompt": "And then it rains",
        "seconds": "12",
        "model": "sora-2-pro",
    }
    source = tmp_path / "clip.webm"
    source.write_bytes(b"webm")
    await call(hook, mode, "extend_video", source, "More", "8")
    fields = api.last.multipart()
    assert fields["video"] == ("clip.webm", b"webm")
    assert fields["seconds"] == (None, b"8")


async def test_characters(hook: OpenAIVideosHook, api: FakeAPI, mode: str, tmp_path: Path) -> None:
    source = tmp_path / "mossy.mp4"
    source.write_bytes(b"character-video")
    character = await call(hook, mode, "create_character", source, "Mossy")
    assert character.id == "char_1"
    fields = api.last.multipart()
    # The connection's default model goes on characters too: gateways route every request by model.
    assert fields == {
        "name": (None, b"Mossy"),
        "model": (None, b"sora-2-pro"),
        "video": ("mossy.mp4", b"character-video"),
    }
    await call(hook, mode, "create_character", source, "Mossy", model="sora-2")
    assert api.last.multipart()["model"] == (None, b"sora-2")
    fetched = await call(hook, mode, "get_character", "char 1".replace(" ", "_"))
    assert fetched.id == "char_1"
    assert (api.last.method, api.last.path) == ("GET", "/v1/videos/characters/char_1")


async def test_ids_escaped_in_path(hook: OpenAIVideosHook, api: FakeAPI, mode: str) -> None:
    await call(hook, mode, "delete_video", "a%b")
    assert api.last.path == "/v1/videos/a%25b"


# --------------------------------------------------------------------------------------------
# Auth styles and connection forms
# --------------------------------------------------------------------------------------------
async def test_api_key_auth_style(wire_hook: Any, mode: str) -> None:
    server = Server().reply(httpx.Response(200, json=video_json()))
    hook = wire_hook(server, **EXTRA, auth_style="api-key")
    await call(hook, mode, "get_video", "video_123")
    assert_connection_applied(server.last, auth="api-key")


async def test_no_key_sends_no_auth_header(wire_hook: Any, mode: str, api: FakeAPI) -> None:
    server = Server().reply(httpx.Response(200, json=video_json()))
    hook = wire_hook(server, conn={"password": None})
    await call(hook, mode, "get_video", "video_123")
    assert "authorization" not in server.last.headers
    assert "api-key" not in server.last.headers


def test_settings_from_connection_extras(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("")
    settings = settings_from_connection(
        host="https://gw.example/openai/v1/",
        port=None,
        schema=None,
        password=SECRET,
        extra={
            **EXTRA,
            "auth_style": "API-KEY",
            "connect_timeout": "3",
            "read_timeout": 30,
            "max_retries": "2",
            "max_retry_seconds": 15,
            "retry_job_creation": "true",
            "verify": str(ca),
            "proxy": "http://proxy:3128",
        },
    )
    assert settings.base_url == "https://gw.example/openai/v1"
    assert settings.auth_style == "api-key"
    assert settings.headers()["api-key"] == SECRET
    assert (settings.connect_timeout, settings.read_timeout) == (3.0, 30.0)
    assert (settings.max_retries, settings.max_retry_seconds) == (2, 15.0)
    assert settings.retry_job_creation is True
    assert settings.verify == str(ca)
    assert settings.proxy == "http://proxy:3128"
    assert dict(settings.extra_query) == {"api-version": "preview"}
    assert settings.default_model == "sora-2-pro"


def test_settings_defaults_for_empty_connection() -> None:
    settings = settings_from_connection(host=None, port=None, schema=None, password=None, extra={})
    assert settings.base_url == "https://api.openai.com/v1"
    assert settings.api_key is None
    assert settings.auth_style == "bearer"
    assert settings.verify is True
    assert settings.retry_job_creation is False


@pytest.mark.parametrize(
    ("host", "port", "schema", "extra", "expected"),
    [
        ("litellm", 4000, "v1", {"scheme": "http"}, "http://litellm:4000/v1"),
        ("api.example.com", None, "/openai/v1/", {}, "https://api.example.com/openai/v1"),
        ("http://127.0.0.1:8000/v1", 9999, "ignored", {}, "http://127.0.0.1:8000/v1"),
    ],
)
def test_settings_base_url_forms(
    host: str, port: int | None, schema: str, extra: dict[str, Any], expected: str
) -> None:
    settings = settings_from_connection(host=host, port=port, schema=schema, password=None, extra=extra)
    assert settings.base_url == expected


def test_uri_style_connection_through_airflow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_VIDEOS_URI",
        "openai-videos://:sk-uri-key@gateway.local:8443/openai%2Fv1?auth_style=api-key&default_model=sora-2",
    )
    settings = OpenAIVideosHook("videos_uri").settings
    assert settings.base_url == "https://gateway.local:8443/openai/v1"
    assert settings.api_key == "sk-uri-key"
    assert settings.auth_style == "api-key"
    assert settings.default_model == "sora-2"


def test_bad_auth_style_rejected() -> None:
    with pytest.raises(errors.InvalidInputError, match="auth_style") as info:
        settings_from_connection(
            host=None, port=None, schema=None, password=None, extra={"auth_style": "basic"}
        )
    assert info.value.param == "auth_style"


def test_extra_headers_as_json_text() -> None:
    settings = settings_from_connection(
        host=None,
        port=None,
        schema=None,
        password=None,
        extra={"extra_headers": '{"X-A": "1", "X-B": 2}', "extra_query": '{"api-version": "2025-04-01"}'},
    )
    assert settings.headers()["X-A"] == "1"
    assert settings.headers()["X-B"] == "2"
    assert dict(settings.extra_query) == {"api-version": "2025-04-01"}


@pytest.mark.parametrize("value", ["not json", "[1, 2]", 5])
def test_extra_headers_must_be_an_object(value: Any) -> None:
    with pytest.raises(errors.InvalidInputError, match="extra_headers"):
        settings_from_connection(
            host=None, port=None, schema=None, password=None, extra={"extra_headers": value}
        )


@pytest.mark.parametrize(
    ("value", "expected"), [("false", False), ("0", False), (False, False), ("true", True), ("", True)]
)
def test_verify_forms(value: Any, expected: bool) -> None:
    settings = settings_from_connection(
        host=None, port=None, schema=None, password=None, extra={"verify": value}
    )
    assert settings.verify is expected


# --------------------------------------------------------------------------------------------
# Secrets
# --------------------------------------------------------------------------------------------
async def test_hook_secret_not_leaked(wire_hook: Any, mode: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "airflow", "airflow_video_edit"):
        caplog.set_level(logging.DEBUG, logger=name)
    server = Server().reply(
        httpx.Response(401, json={"error": {"message": f"Incorrect API key provided: {SECRET}"}}),
    )
    hook = wire_hook(server, **EXTRA)
    with pytest.raises(errors.AuthenticationError) as info:
        await call(hook, mode, "get_video", "video_1")
    assert SECRET in server.last.headers["authorization"]
    for text in (str(info.value), repr(info.value), repr(hook), repr(hook.settings), caplog.text):
        assert SECRET not in text


def test_hook_registers_key_with_airflow_masker(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk._shared.secrets_masker import redact

    key = "sk-only-known-to-this-test-4f1d9c"
    assert redact(f"token {key}") == f"token {key}"  # not masked before the hook saw it
    set_connection(monkeypatch, password=key)
    hook = OpenAIVideosHook()
    assert hook.settings.api_key == key
    assert key not in str(redact(f"token {key}"))
    assert key not in str(redact({"header": f"Bearer {key}"}))


async def test_async_settings_register_key_with_masker(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk._shared.secrets_masker import redact

    key = "sk-async-only-key-77aa01"
    set_connection(monkeypatch, password=key, extra=EXTRA)
    settings = await OpenAIVideosHook().aget_settings()
    assert settings.api_key == key
    assert settings.default_model == "sora-2-pro"
    assert dict(settings.extra_headers) == {"X-Gateway-Tenant": "team-a"}
    assert key not in str(redact(f"line {key}"))


# --------------------------------------------------------------------------------------------
# test_connection and lifecycle
# --------------------------------------------------------------------------------------------
def test_test_connection_success(hook: OpenAIVideosHook, api: FakeAPI) -> None:
    ok, message = hook.test_connection()
    assert ok is True
    assert message
    assert (api.last.method, api.last.path) == ("GET", f"/v1/videos/{CONNECTION_TEST_ID}")  # no list needed


@pytest.mark.parametrize(
    ("reply", "ok", "words"),
    [
        (
            httpx.Response(404, json=error_json("No such video", code="video_not_found")),
            True,
            "404 video_not_found",
        ),
        (
            httpx.Response(400, json={"error": {"message": "bad id", "type": "invalid_request_error"}}),
            True,
            "400",
        ),
        (httpx.Response(404, text="Not Found"), False, "base URL"),
        (httpx.Response(403, json=error_json("Not allowed", code="forbidden")), False, "key was refused"),
    ],
    ids=["404-api", "400-gateway", "404-bare", "403"],
)
def test_test_connection_reads_the_answer(
    wire_hook: Any, reply: httpx.Response, ok: bool, words: str
) -> None:
    server = Server().reply(reply)
    result, message = wire_hook(server, **EXTRA, max_retries=0).test_connection()
    assert result is ok
    assert words in message
    assert "GET /videos/" in message  # says which check it made
    assert SECRET not in message


def test_test_connection_against_the_local_server(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_video_edit.server import LocalVideosServer

    with LocalVideosServer(api_key="sk-conn-test", access_log=False) as local:
        set_connection(monkeypatch, host=local.url, password="sk-conn-test")
        assert OpenAIVideosHook().test_connection()[0] is True
        set_connection(monkeypatch, host=local.url, password="sk-wrong")
        ok, message = OpenAIVideosHook().test_connection()
        assert ok is False
        assert "refused" in message


def test_test_connection_bad_key(wire_hook: Any) -> None:
    server = Server().reply(
        httpx.Response(
            401,
            json={"error": {"message": f"Incorrect API key provided: {SECRET}.", "code": "invalid_api_key"}},
            headers={"x-request-id": "req_401"},
        )
    )
    hook = wire_hook(server, **EXTRA)
    ok, message = hook.test_connection()
    assert ok is False
    assert "Incorrect API key" in message
    assert "invalid_api_key" in message
    assert "req_401" in message
    assert SECRET not in message
    assert len(server.seen) == 1


def test_test_connection_unreachable(wire_hook: Any) -> None:
    server = Server().reply(httpx.ConnectError("[Errno 111] Connection refused"))
    hook = wire_hook(server, **EXTRA, max_retries=0)
    ok, message = hook.test_connection()
    assert ok is False
    assert "ConnectError" in message
    assert SECRET not in message


def test_close_discards_client(hook: OpenAIVideosHook) -> None:
    client = hook.client
    hook.close()
    assert "client" not in hook.__dict__
    assert client._http.is_closed
    with OpenAIVideosHook() as other:
        assert other.client is other.client
    assert "client" not in other.__dict__


def test_hook_metadata() -> None:
    assert OpenAIVideosHook.conn_type == "openai_videos"
    assert OpenAIVideosHook.default_conn_name == "openai_videos_default"
    assert OpenAIVideosHook("x").openai_videos_conn_id == "x"
    assert json.dumps(repr(OpenAIVideosHook("x")))
