"""The HTTP layer: retries, error mapping, downloads, uploads, validation and secrets.

Most tests run twice, through ``VideosClient`` and ``AsyncVideosClient`` (the ``mode`` fixture),
since the two share one retry policy and one set of request builders but have separate I/O loops.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import time
import types
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import tenacity

from airflow_video_edit import calls, clients, errors, models, replies, retries
from airflow_video_edit.settings import ClientSettings

from .conftest import SECRET, Server, Sleeps, error_json, never_called, video_json
from .media_bytes import jpeg, mp4, png, webp

RETRIED_STATUSES = [408, 409, 429, 500, 502, 503, 504]
NOT_RETRIED_STATUSES = [400, 401, 403, 404, 422]


def ok(body: Any = None, **headers: str) -> httpx.Response:
    return httpx.Response(200, json=video_json() if body is None else body, headers=headers)


def status(code: int, body: Any = None, **headers: str) -> httpx.Response:
    if isinstance(body, bytes):
        return httpx.Response(code, content=body, headers=headers)
    return httpx.Response(code, json=error_json(f"status {code}") if body is None else body, headers=headers)


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def send(mode: str, make_client: Any, make_async_client: Any) -> Any:
    """``await send(server, call, **settings overrides)``, through the sync or the async client."""

    async def send(handler: Any, call: calls.Call[Any], **overrides: Any) -> Any:
        if mode == "sync":
            return make_client(handler, **overrides).request(call)
        return await make_async_client(handler, **overrides).request(call)

    return send


@pytest.fixture
def download(mode: str, make_client: Any, make_async_client: Any) -> Any:
    async def download(handler: Any, call: calls.Call[Any], destination: Any, **overrides: Any) -> Any:
        if mode == "sync":
            return make_client(handler, **overrides).download(call, destination)
        return await make_async_client(handler, **overrides).download(call, destination)

    return download


# --------------------------------------------------------------------------------------------
# Retry matrix
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("code", RETRIED_STATUSES)
async def test_get_retried_on_status_then_succeeds(
    send: Any, server: Server, sleeps: Sleeps, code: int
) -> None:
    server.reply(status(code), status(code), ok(video_json("video_9", "completed")))
    video = await send(server, calls.retrieve_video("video_9"))
    assert video.id == "video_9"
    assert video.succeeded
    assert len(server.seen) == 3
    assert len(sleeps) == 2


@pytest.mark.parametrize("code", NOT_RETRIED_STATUSES)
async def test_client_errors_not_retried(send: Any, server: Server, sleeps: Sleeps, code: int) -> None:
    server.reply(status(code), ok())
    with pytest.raises(errors.APIStatusError) as info:
        await send(server, calls.retrieve_video("video_1"))
    assert info.value.status_code == code
    assert len(server.seen) == 1
    assert sleeps == []


async def test_retry_after_ms_honoured(send: Any, server: Server, sleeps: Sleeps) -> None:
    server.reply(status(429, **{"retry-after-ms": "1500", "retry-after": "30"}), ok())
    await send(server, calls.retrieve_video("video_1"))
    assert sleeps == [1.5]


async def test_retry_after_seconds_honoured(send: Any, server: Server, sleeps: Sleeps) -> None:
    server.reply(status(503, **{"retry-after": "7"}), ok())
    await send(server, calls.retrieve_video("video_1"))
    assert sleeps == [7.0]


async def test_retry_after_http_date_honoured(send: Any, server: Server, sleeps: Sleeps) -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    server.reply(status(503, **{"retry-after": when}), ok())
    await send(server, calls.retrieve_video("video_1"))
    assert len(sleeps) == 1
    assert 27 <= sleeps[0] <= 31


@pytest.mark.parametrize(
    "headers", [{"retry-after": "3600"}, {"retry-after-ms": "3600000"}], ids=["seconds", "ms"]
)
async def test_retry_after_capped(send: Any, server: Server, sleeps: Sleeps, headers: dict[str, str]) -> None:
    server.reply(status(429, **headers), ok())
    await send(server, calls.retrieve_video("video_1"), max_retry_after=12.0)
    assert sleeps == [12.0]


def test_parse_retry_after_forms() -> None:
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 20, usegmt=True)
    assert replies.parse_retry_after(httpx.Headers({"retry-after": date}), now=now) == pytest.approx(20)
    assert replies.parse_retry_after(httpx.Headers({"retry-after": "2.5"})) == 2.5
    assert replies.parse_retry_after(httpx.Headers({"retry-after-ms": "250"})) == 0.25
    # Bad ms value falls back to retry-after; a date in the past means "now".
    assert replies.parse_retry_after(httpx.Headers({"retry-after-ms": "soon", "retry-after": "3"})) == 3
    past = email.utils.formatdate(now - 100, usegmt=True)
    assert replies.parse_retry_after(httpx.Headers({"retry-after": past}), now=now) == 0
    assert replies.parse_retry_after(httpx.Headers({"retry-after": "garbage"})) is None
    assert replies.parse_retry_after(httpx.Headers({})) is None


async def test_backoff_without_retry_after_is_jittered_and_bounded(
    send: Any, server: Server, sleeps: Sleeps
) -> None:
    server.reply(
        status(500), status(500), status(500), status(500), status(500), status(500), status(500), ok()
    )
    await send(server, calls.retrieve_video("video_1"), max_retries=10)
    assert len(sleeps) == 7
    for attempt, wait in enumerate(sleeps, start=1):
        # Full jitter under an exponential bound 0.5 * 2^n, capped at 8 s.
        assert 0 <= wait <= min(8.0, 0.5 * 2**attempt)
    assert len(set(sleeps)) > 1


def test_backoff_cap_is_8_seconds() -> None:
    wait = retries._Wait(cap=60)
    state = tenacity.RetryCallState(retry_object=tenacity.Retrying(), fn=None, args=(), kwargs={})
    state.set_exception((errors.ServerError, errors.ServerError("x", status_code=500), None))
    waits = []
    for number in range(1, 40):
        state.attempt_number = number
        waits.append(wait(state))
    assert max(waits) <= 8.0
    assert max(waits[20:]) > 1.0  # late attempts are not stuck at the tiny early bound


async def test_exhausted_budget_raises_last_error(send: Any, server: Server, sleeps: Sleeps) -> None:
    replies = [status(502, error_json(f"attempt {n}"), **{"x-request-id": f"req_{n}"}) for n in range(1, 5)]
    server.reply(*replies)
    with pytest.raises(errors.ServerError) as info:
        await send(server, calls.retrieve_video("video_1"), max_retries=3)
    assert len(server.seen) == 4  # max_retries + 1 attempts
    assert len(sleeps) == 3
    assert info.value.message == "attempt 4"
    assert info.value.request_id == "req_4"


async def test_zero_retries_means_one_attempt(send: Any, server: Server, sleeps: Sleeps) -> None:
    server.reply(status(503))
    with pytest.raises(errors.ServerError):
        await send(server, calls.retrieve_video("video_1"), max_retries=0)
    assert len(server.seen) == 1


async def test_stop_by_total_retry_time(
    send: Any, server: Server, sleeps: Sleeps, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tenacity measures elapsed time with time.monotonic: a fake clock advanced by the fake sleep."""
    clock = {"now": 1000.0}
    monkeypatch.setattr(tenacity, "time", types.SimpleNamespace(monotonic=lambda: clock["now"]))
    original_sync, original_async = sleeps.sync, sleeps.async_

    def advance(seconds: float) -> None:
        clock["now"] += seconds
        original_sync(seconds)

    async def aadvance(seconds: float) -> None:
        clock["now"] += seconds
        await original_async(seconds)

    monkeypatch.setattr(sleeps, "sync", advance)
    monkeypatch.setattr(sleeps, "async_", aadvance)
    server.reply(status(503, **{"retry-after": "20"}))
    with pytest.raises(errors.ServerError):
        await send(server, calls.retrieve_video("video_1"), max_retries=100, max_retry_seconds=50)
    # Waits of 20 s: after 2 waits (40 s) the next one would end past 50 s, so it stops.
    assert sleeps == [20.0, 20.0]
    assert len(server.seen) == 3


# --------------------------------------------------------------------------------------------
# Retries are visible: one WARNING line per retry
# --------------------------------------------------------------------------------------------
def retry_lines(caplog: pytest.LogCaptureFixture, level: int = logging.WARNING) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == retries.log.name and r.levelno == level]


@pytest.fixture
def retry_caplog(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger=retries.log.name)
    return caplog


async def test_each_retry_logs_one_warning(
    send: Any, server: Server, sleeps: Sleeps, retry_caplog: pytest.LogCaptureFixture
) -> None:
    """Two 503s ridden out within the request's own retries: two lines, naming the request."""
    server.reply(status(503), status(503, **{"retry-after-ms": "250"}), ok(video_json("video_123")))
    await send(server, calls.retrieve_video("video_123"))
    assert retry_lines(retry_caplog) == [
        "GET /videos/video_123: attempt 1 of 5 failed: status 503 (status=503); "
        f"retrying in {sleeps[0]:.2f} s",
        "GET /videos/video_123: attempt 2 of 5 failed: status 503 (status=503); retrying in 0.25 s",
    ]
    assert retry_lines(retry_caplog, logging.DEBUG) == []


async def test_a_first_attempt_that_succeeds_logs_nothing(
    send: Any, server: Server, retry_caplog: pytest.LogCaptureFixture
) -> None:
    server.reply(ok())
    await send(server, calls.retrieve_video("video_1"))
    assert [r for r in retry_caplog.records if r.name == retries.log.name] == []


async def test_a_retried_transport_error_is_named_by_its_class(
    send: Any, server: Server, retry_caplog: pytest.LogCaptureFixture
) -> None:
    server.reply(httpx.ConnectError("[Errno 111] Connection refused"), ok())
    await send(server, calls.create_video("a cat"), max_retries=2)
    (line,) = retry_lines(retry_caplog)
    assert line.startswith(
        "POST /videos: attempt 1 of 3 failed: ConnectError: [Errno 111] Connection refused;"
    )


async def test_a_retried_download_logs_its_path_without_the_query(
    download: Any, server: Server, tmp_path: Path, retry_caplog: pytest.LogCaptureFixture
) -> None:
    whole = mp4(100)
    short = httpx.Response(200, content=whole[:50], headers={"content-length": str(len(whole))})
    server.reply(short, httpx.Response(200, content=whole))
    await download(server, calls.download_content("video_1"), tmp_path / "out.mp4")
    (line,) = retry_lines(retry_caplog)
    assert line.startswith("GET /videos/video_1/content: attempt 1 of 5 failed: download truncated")
    assert "variant" not in line


async def test_quiet_retries_log_at_debug_only(
    send: Any, server: Server, retry_caplog: pytest.LogCaptureFixture
) -> None:
    """What a wait in an outage uses around its status checks (the wait says it once itself)."""
    server.reply(status(503), ok())
    with retries.quiet_retries():
        await send(server, calls.retrieve_video("video_1"))
    assert retry_lines(retry_caplog) == []
    assert len(retry_lines(retry_caplog, logging.DEBUG)) == 1
    server.reply(status(503), ok())
    await send(server, calls.retrieve_video("video_1"))  # loud again once outside
    assert len(retry_lines(retry_caplog)) == 1


def test_the_retry_policy_stays_cached() -> None:
    settings = ClientSettings(base_url="http://test/v1", api_key=SECRET)
    assert retries.retry_policy(settings, creates_job=False) is retries.retry_policy(
        settings, creates_job=False
    )


@pytest.mark.parametrize(
    "call",
    [
        calls.create_video("a cat"),
        calls.edit_video("video_1", "make it blue"),
        calls.remix_video("video_1", "make it red"),
        calls.extend_video("video_1", "and then", 8),
    ],
    ids=["create", "edit", "remix", "extend"],
)
@pytest.mark.parametrize(
    "failure",
    [status(500), httpx.ReadTimeout("timed out"), httpx.ReadError("connection reset by peer")],
    ids=["500", "read-timeout", "reset"],
)
async def test_job_creating_post_not_retried_after_ambiguous_failure(
    send: Any, server: Server, sleeps: Sleeps, call: calls.Call[Any], failure: Any
) -> None:
    server.reply(failure, ok())
    with pytest.raises(errors.VideoAPIError):
        await send(server, call)
    assert len(server.seen) == 1
    assert server.last.method == "POST"
    assert sleeps == []


@pytest.mark.parametrize(
    "failure", [status(429), httpx.ConnectError("connection refused")], ids=["429", "refused"]
)
async def test_job_creating_post_retried_when_surely_not_created(
    send: Any, server: Server, sleeps: Sleeps, failure: Any
) -> None:
    server.reply(failure, ok())
    video = await send(server, calls.create_video("a cat"))
    assert video.id == "video_123"
    assert len(server.seen) == 2
    assert server.seen[0].json() == server.seen[1].json() == {"prompt": "a cat"}


async def test_job_creating_post_retried_on_500_when_opted_in(send: Any, server: Server) -> None:
    server.reply(status(500), httpx.ReadTimeout("timed out"), ok())
    video = await send(server, calls.remix_video("video_1", "again"), retry_job_creation=True)
    assert video.id == "video_123"
    assert len(server.seen) == 3


async def test_non_job_post_and_delete_retried_on_500(send: Any, server: Server, tmp_path: Path) -> None:
    server.reply(status(500), ok({"id": "video_1", "object": "video.deleted", "deleted": True}))
    deleted = await send(server, calls.delete_video("video_1"))
    assert deleted.deleted
    assert len(server.seen) == 2


async def test_get_retried_on_transport_errors(send: Any, server: Server) -> None:
    server.reply(httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("reset"), ok())
    await send(server, calls.retrieve_video("video_1"))
    assert len(server.seen) == 3


async def test_upload_retried_rereads_file_from_start(
    send: Any, server: Server, tmp_path: Path, sleeps: Sleeps
) -> None:
    payload = bytes(range(256)) * 5000  # > several chunks
    source = tmp_path / "in.mp4"
    source.write_bytes(payload)
    server.reply(status(429), ok())
    await send(server, calls.edit_video(str(source), "blue"))
    assert len(server.seen) == 2
    for seen in server.seen:
        fields = seen.multipart()
        assert fields["video"] == ("in.mp4", payload)
        assert fields["prompt"] == (None, b"blue")


async def test_upload_of_non_job_post_retried_on_500_rereads(
    send: Any, server: Server, tmp_path: Path
) -> None:
    source = tmp_path / "clip.mov"
    source.write_bytes(b"m" * 300_000)
    server.reply(status(500), status(502), ok({"id": "char_1", "name": "Bob", "created_at": 1}))
    character = await send(server, calls.create_character(source, "Bob"))
    assert character.id == "char_1"
    assert [s.multipart()["video"] for s in server.seen] == [("clip.mov", b"m" * 300_000)] * 3


# --------------------------------------------------------------------------------------------
# Downloads
# --------------------------------------------------------------------------------------------
class _BrokenStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """Yields some bytes, then fails like a connection dropped mid-body."""

    def __init__(self, first: bytes) -> None:
        self.first = first

    def __iter__(self) -> Iterator[bytes]:
        yield self.first
        raise httpx.ReadError("connection reset mid-body")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.first
        raise httpx.ReadError("connection reset mid-body")


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


async def test_download_writes_content_and_creates_directory(
    download: Any, server: Server, tmp_path: Path
) -> None:
    body = mp4(4_000_000, fill=b"\x00\x01video")
    server.reply(httpx.Response(200, content=body, headers={"content-type": "video/mp4"}))
    destination = tmp_path / "deep" / "er" / "out.mp4"
    result = await download(server, calls.download_content("video_1"), destination)
    assert destination.read_bytes() == body
    assert result.bytes == len(body)
    assert result.path == str(destination)
    assert result.content_type == "video/mp4"
    assert server.last.path == "/v1/videos/video_1/content"
    assert server.last.params["variant"] == "video"
    assert server.last.headers["accept-encoding"] == "identity"
    assert _leftovers(destination.parent) == ["out.mp4"]


async def test_download_content_length_mismatch_retried_then_ok(
    download: Any, server: Server, tmp_path: Path, sleeps: Sleeps
) -> None:
    whole = mp4(100)
    short = httpx.Response(200, content=whole[:50], headers={"content-length": str(len(whole))})
    server.reply(short, httpx.Response(200, content=whole))
    destination = tmp_path / "out.mp4"
    await download(server, calls.download_content("video_1"), destination)
    assert destination.read_bytes() == whole
    assert len(server.seen) == 2
    assert len(sleeps) == 1
    assert _leftovers(tmp_path) == ["out.mp4"]


async def test_download_truncated_leaves_nothing(download: Any, server: Server, tmp_path: Path) -> None:
    server.reply(httpx.Response(200, content=mp4(100)[:50], headers={"content-length": "100"}))
    destination = tmp_path / "out.mp4"
    with pytest.raises(errors.TransportError, match="truncated: got 50 of 100"):
        await download(server, calls.download_content("video_1"), destination, max_retries=2)
    assert len(server.seen) == 3
    assert _leftovers(tmp_path) == []


async def test_download_stream_error_leaves_nothing_and_keeps_old_file(
    download: Any, server: Server, tmp_path: Path
) -> None:
    destination = tmp_path / "out.mp4"
    destination.write_bytes(b"previous")
    server.reply(lambda request: httpx.Response(200, stream=_BrokenStream(mp4(7000)[:5000])))
    with pytest.raises(errors.TransportError, match="ReadError"):
        await download(server, calls.download_content("video_1"), destination, max_retries=1)
    assert len(server.seen) == 2
    assert destination.read_bytes() == b"previous"
    assert _leftovers(tmp_path) == ["out.mp4"]


async def test_download_stream_error_then_success(download: Any, server: Server, tmp_path: Path) -> None:
    server.reply(httpx.Response(200, stream=_BrokenStream(png()[:20])), httpx.Response(200, content=png()))
    destination = tmp_path / "out.png"
    result = await download(server, calls.download_content("video_1", "thumbnail"), destination)
    assert destination.read_bytes() == png()
    assert result.bytes == len(png())
    assert server.last.params["variant"] == "thumbnail"


# --- content checks -----------------------------------------------------------------------------
async def test_the_video_where_a_thumbnail_was_asked_is_refused(
    download: Any, server: Server, tmp_path: Path
) -> None:
    """A gateway that drops ?variant= sends the MP4: refused at once, not retried, nothing saved."""
    server.reply(
        lambda request: httpx.Response(200, content=mp4(50_000), headers={"content-type": "video/mp4"})
    )
    destination = tmp_path / "clip_thumbnail.webp"
    with pytest.raises(errors.ContentMismatchError) as info:
        await download(server, calls.download_content("video_1", "thumbnail"), destination)
    text = str(info.value)
    assert "thumbnail" in text
    assert "got mp4" in text
    assert "variant" in text
    assert "Content-Type video/mp4" in text
    assert len(server.seen) == 1
    assert _leftovers(tmp_path) == []


async def test_unrecognised_content_is_refused(download: Any, server: Server, tmp_path: Path) -> None:
    server.reply(
        httpx.Response(200, content=b"<html>proxy error</html>", headers={"content-type": "text/html"})
    )
    with pytest.raises(errors.ContentMismatchError, match="expected mp4, got unrecognised content"):
        await download(server, calls.download_content("video_1"), tmp_path / "out.mp4")
    assert _leftovers(tmp_path) == []


async def test_an_mp4_cut_behind_a_matching_content_length_is_retried(
    download: Any, server: Server, tmp_path: Path, sleeps: Sleeps
) -> None:
    whole = mp4(20_000)
    cut = whole[: len(whole) // 2]  # Content-Length is that of the cut body: only the boxes tell
    server.reply(httpx.Response(200, content=cut), httpx.Response(200, content=whole))
    destination = tmp_path / "out.mp4"
    await download(server, calls.download_content("video_1"), destination)
    assert destination.read_bytes() == whole
    assert len(server.seen) == 2
    server.reply(lambda request: httpx.Response(200, content=cut))
    with pytest.raises(errors.TransportError, match="not a whole MP4"):
        await download(server, calls.download_content("video_1"), tmp_path / "again.mp4", max_retries=1)
    assert _leftovers(tmp_path) == ["out.mp4"]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (mp4(500)[:-1], "boxes end at byte"),
        (mp4(500) + b"junk", "boxes end at byte"),
        (mp4(500).replace(b"moov", b"free"), "no moov"),
    ],
)
async def test_broken_mp4s_are_not_saved(
    download: Any, server: Server, tmp_path: Path, body: bytes, problem: str
) -> None:
    server.reply(lambda request: httpx.Response(200, content=body))
    with pytest.raises(errors.TransportError, match=problem):
        await download(server, calls.download_content("video_1"), tmp_path / "out.mp4", max_retries=0)
    assert _leftovers(tmp_path) == []


async def test_an_image_gets_the_suffix_of_its_real_type(
    download: Any, server: Server, tmp_path: Path
) -> None:
    server.reply(httpx.Response(200, content=jpeg(), headers={"content-type": "application/octet-stream"}))
    result = await download(server, calls.download_content("video_1", "spritesheet"), tmp_path / "s.webp")
    assert result.path == str(tmp_path / "s.jpg")
    assert _leftovers(tmp_path) == ["s.jpg"]
    server.reply(httpx.Response(200, content=webp()))
    result = await download(server, calls.download_content("video_1", "thumbnail"), tmp_path / "t.webp")
    assert result.path == str(tmp_path / "t.webp")


def test_the_box_walk_in_any_chunking() -> None:
    from airflow_video_edit.content import Mp4Boxes

    body = Path(__file__).resolve().parents[2].joinpath("dags", "data", "source_clip.mp4").read_bytes()
    for size in (1, 3, 7, 8, 9, 16, 1000, 65536, len(body)):
        walk = Mp4Boxes()
        for start in range(0, len(body), size):
            walk.feed(body[start : start + size])
        assert walk.problem() is None, size
        assert walk.types[0] == b"ftyp"
        half = Mp4Boxes()
        half.feed(body[: len(body) // 2])
        assert half.problem() is not None
    large = b"\x00\x00\x00\x01mdat" + (16 + 10).to_bytes(8, "big") + b"\x00" * 10  # a 64-bit box size
    walk = Mp4Boxes()
    for byte in box_prefix() + large:
        walk.feed(bytes([byte]))
    assert walk.problem() is None


def box_prefix() -> bytes:
    return mp4(0)[:-8]  # ftyp and moov, without the empty mdat


async def test_download_error_status_writes_nothing(download: Any, server: Server, tmp_path: Path) -> None:
    server.reply(status(404, error_json("expired", code="not_found")))
    with pytest.raises(errors.NotFoundError, match="expired"):
        await download(server, calls.download_content("video_1"), tmp_path / "out.mp4")
    assert _leftovers(tmp_path) == []


# --------------------------------------------------------------------------------------------
# Error parsing
# --------------------------------------------------------------------------------------------
def _error(code: int, content: bytes, content_type: str = "application/json", **headers: str) -> Any:
    request = httpx.Request("GET", "http://test/v1/videos/x")
    response = httpx.Response(
        code, content=content, headers={"content-type": content_type, **headers}, request=request
    )
    return replies.error_from_response(response)


def test_error_openai_shape() -> None:
    body = json.dumps(error_json("Prompt rejected", code="moderation_blocked", param="prompt")).encode()
    exc = _error(400, body, **{"x-request-id": "req_abc"})
    assert isinstance(exc, errors.InvalidRequestError)
    assert (exc.message, exc.code, exc.param, exc.error_type) == (
        "Prompt rejected",
        "moderation_blocked",
        "prompt",
        "invalid_request_error",
    )
    assert exc.request_id == "req_abc"
    assert "request_id=req_abc" in str(exc)
    assert "status=400" in str(exc)


def test_error_string_error() -> None:
    exc = _error(401, b'{"error": "invalid key"}')
    assert isinstance(exc, errors.AuthenticationError)
    assert exc.message == "invalid key"


def test_error_problem_json() -> None:
    exc = _error(
        422,
        b'{"type": "about:blank", "title": "Unprocessable", "detail": "seconds must be 4, 8 or 12"}',
        "application/problem+json",
    )
    assert isinstance(exc, errors.InvalidRequestError)
    assert exc.message == "seconds must be 4, 8 or 12"
    assert _error(422, b'{"title": "Unprocessable"}').message == "Unprocessable"


def test_error_message_and_numeric_code() -> None:
    exc = _error(429, b'{"message": "slow down", "code": 429}')
    assert isinstance(exc, errors.RateLimitError)
    assert exc.message == "slow down"
    assert exc.code == "429"
    nested = _error(429, b'{"error": {"message": "quota", "code": 429, "type": null}}')
    assert nested.code == "429"
    assert nested.message == "quota"


@pytest.mark.parametrize(
    ("content", "content_type", "expected"),
    [
        (b"upstream connect error", "text/plain", "upstream connect error"),
        (b"<html><body><h1>502 Bad Gateway</h1></body>\n</html>", "text/html", "<h1>502 Bad Gateway</h1>"),
        (b"", "text/plain", "HTTP 502 Bad Gateway"),
        (b'{"error": {"message": "trunc', "application/json", '{"error": {"message": "trunc'),
        (b"\xff\xfe\x00garbage", "application/octet-stream", "garbage"),
        (b"[1, 2, 3]", "application/json", "[1, 2, 3]"),
    ],
    ids=["text", "html", "empty", "invalid-json", "binary", "json-array"],
)
def test_error_odd_bodies(content: bytes, content_type: str, expected: str) -> None:
    exc = _error(502, content, content_type, **{"x-request-id": "req_1"})
    assert isinstance(exc, errors.ServerError)
    assert expected in exc.message
    assert exc.status_code == 502
    assert exc.request_id == "req_1"


def test_error_long_body_shortened() -> None:
    exc = _error(500, b"x" * 10_000, "text/plain")
    assert len(exc.message) <= 510


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (400, errors.InvalidRequestError),
        (401, errors.AuthenticationError),
        (403, errors.PermissionDeniedError),
        (404, errors.NotFoundError),
        (408, errors.RequestTimeoutError),
        (409, errors.ConflictError),
        (410, errors.APIStatusError),
        (422, errors.InvalidRequestError),
        (429, errors.RateLimitError),
        (500, errors.ServerError),
        (503, errors.ServerError),
        (599, errors.ServerError),
    ],
)
def test_status_maps_to_class(code: int, cls: type[errors.APIStatusError]) -> None:
    exc = _error(code, b"{}")
    assert type(exc) is cls
    assert isinstance(exc, errors.VideoAPIError)


def test_error_carries_retry_after() -> None:
    exc = _error(429, b"{}", **{"retry-after": "9"})
    assert exc.retry_after == 9


async def test_malformed_success_body_is_retried_for_a_read(send: Any, server: Server) -> None:
    server.reply(
        httpx.Response(200, content=b"{not json", headers={"x-request-id": "req_z"}),
        httpx.Response(200, json=video_json("video_1")),
    )
    video = await send(server, calls.retrieve_video("video_1"))
    assert video.id == "video_1"
    assert len(server.seen) == 2


async def test_malformed_reply_to_a_job_creating_post_is_not_resent(send: Any, server: Server) -> None:
    server.reply(httpx.Response(200, json={"unexpected": True}, headers={"x-request-id": "req_z"}))
    with pytest.raises(errors.MalformedResponseError, match="unexpected reply to POST /v1/videos") as info:
        await send(server, calls.create_video("a cat"))
    assert info.value.request_id == "req_z"
    assert len(server.seen) == 1  # the job may exist: a second POST could pay twice


def test_transport_error_mapping() -> None:
    refused = replies.error_from_transport(httpx.ConnectError("[Errno 111] Connection refused"))
    assert refused.surely_not_sent
    assert "ConnectError" in str(refused)
    assert replies.error_from_transport(httpx.ConnectTimeout("t")).surely_not_sent
    assert not replies.error_from_transport(httpx.ReadTimeout("t")).surely_not_sent
    assert not replies.error_from_transport(httpx.WriteError("w")).surely_not_sent
    assert "ReadTimeout" in str(replies.error_from_transport(httpx.ReadTimeout("")))


# --------------------------------------------------------------------------------------------
# Input validation: nothing is sent
# --------------------------------------------------------------------------------------------
def _invalid_calls(tmp_path: Path) -> list[tuple[str, Any]]:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    return [
        ("prompt", lambda: calls.create_video("")),
        ("prompt", lambda: calls.create_video("   \n\t")),
        ("prompt", lambda: calls.create_video("x" * 32_001)),
        ("prompt", lambda: calls.create_video(None)),  # type: ignore[arg-type]
        ("prompt", lambda: calls.remix_video("video_1", " ")),
        ("prompt", lambda: calls.edit_video("video_1", "")),
        ("video", lambda: calls.edit_video(str(tmp_path / "missing.mp4"), "p")),
        ("video", lambda: calls.edit_video(tmp_path / "missing.mp4", "p")),
        ("video", lambda: calls.edit_video(tmp_path, "p")),
        ("video", lambda: calls.edit_video(empty, "p")),
        ("video", lambda: calls.edit_video(b"", "p")),
        ("video", lambda: calls.edit_video(12345, "p")),
        ("video", lambda: calls.extend_video(empty, "p", 4)),
        ("video", lambda: calls.edit_video({"id": ""}, "p")),
        ("input_reference", lambda: calls.create_video("p", input_reference=tmp_path / "no.png")),
        ("input_reference", lambda: calls.create_video("p", input_reference=b"")),
        ("video_id", lambda: calls.retrieve_video("")),
        ("video_id", lambda: calls.retrieve_video("video 1")),
        ("video_id", lambda: calls.retrieve_video("video_1\n")),
        ("video_id", lambda: calls.retrieve_video("a?b")),
        ("video_id", lambda: calls.retrieve_video("a#b")),
        ("video_id", lambda: calls.delete_video(None)),  # type: ignore[arg-type]
        ("video_id", lambda: calls.download_content("a\tb")),
        ("video_id", lambda: calls.poll_video("")),
        ("video_id", lambda: calls.remix_video("", "p")),
        ("variant", lambda: calls.download_content("video_1", "audio")),
        ("seconds", lambda: calls.create_video("p", seconds=0)),
        ("seconds", lambda: calls.create_video("p", seconds="four")),
        ("seconds", lambda: calls.extend_video("video_1", "p", None)),  # type: ignore[arg-type]
        ("model", lambda: calls.create_video("p", model=" ")),
        ("name", lambda: calls.create_character(b"x", "")),
        ("name", lambda: calls.create_character(b"x", "n" * 81)),
        ("character_id", lambda: calls.get_character("c 1")),
        ("limit", lambda: calls.list_videos(limit=101)),
        ("order", lambda: calls.list_videos(order="up")),
        ("after", lambda: calls.list_videos(after="")),
    ]


def test_invalid_input_rejected_before_sending(tmp_path: Path) -> None:
    for argument, build in _invalid_calls(tmp_path):
        with pytest.raises(errors.InvalidInputError) as info:
            build()
        assert info.value.param == argument, (argument, info.value)
        assert str(info.value).startswith(argument + ":"), str(info.value)
        assert isinstance(info.value, ValueError)


def test_prompt_of_max_length_accepted() -> None:
    assert calls.create_video("x" * 32_000).json == {"prompt": "x" * 32_000}


async def test_hook_input_validation_sends_nothing(wire_hook: Any, tmp_path: Path) -> None:
    hook = wire_hook(never_called)
    with pytest.raises(errors.InvalidInputError, match=r"^prompt:"):
        hook.create_video(" ")
    with pytest.raises(errors.InvalidInputError, match=r"^video:"):
        hook.edit_video(tmp_path / "nope.mp4", "p")
    with pytest.raises(errors.InvalidInputError, match=r"^video_id:"):
        await hook.aget_video("x y")
    with pytest.raises(errors.InvalidInputError, match=r"^prompt:"):
        await hook.aedit_video(b"data", "x" * 32_001)


@pytest.mark.parametrize(
    ("video_id", "path"),
    [
        ("abc", "/v1/videos/abc"),
        ("a%b", "/v1/videos/a%25b"),
        ("vid:1+2", "/v1/videos/vid%3A1%2B2"),
        # LiteLLM's ids are standard base64: "/" and "=" too, never a path separator on the wire.
        ("video_bGl0/ZWxs+bTo=", "/v1/videos/video_bGl0%2FZWxs%2BbTo%3D"),
        ("a/../b", "/v1/videos/a%2F..%2Fb"),
    ],
)
async def test_ids_are_opaque_and_escaped(send: Any, server: Server, video_id: str, path: str) -> None:
    server.reply(ok(video_json(video_id)))
    video = await send(server, calls.retrieve_video(video_id))
    assert video.id == video_id
    assert server.last.path == path


# --------------------------------------------------------------------------------------------
# Secrets
# --------------------------------------------------------------------------------------------
def _all_text(exc: BaseException) -> str:
    parts = [str(exc), repr(exc), repr(exc.args)]
    cause: BaseException | None = exc.__cause__ or exc.__context__
    while cause is not None:
        parts += [str(cause), repr(cause)]
        cause = cause.__cause__ or cause.__context__
    return "\n".join(parts)


@pytest.mark.parametrize("auth_style", ["bearer", "api-key"])
@pytest.mark.parametrize(
    "failure",
    [
        status(401, error_json("Incorrect API key provided")),
        status(500, b"internal"),
        httpx.ConnectError("connection refused"),
        httpx.ReadTimeout("read timed out"),
    ],
    ids=["401", "500", "connect", "timeout"],
)
async def test_secret_absent_from_errors_and_logs(
    send: Any, server: Server, caplog: pytest.LogCaptureFixture, failure: Any, auth_style: str
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "airflow_video_edit"):
        caplog.set_level(logging.DEBUG, logger=name)
    server.reply(failure)
    with pytest.raises(errors.VideoAPIError) as info:
        await send(server, calls.retrieve_video("video_1"), max_retries=1, auth_style=auth_style)
    # The key did reach the server (so the test would notice if it were in the request text) ...
    header = "authorization" if auth_style == "bearer" else "api-key"
    assert SECRET in server.last.headers[header]
    # ... but nowhere else.
    assert SECRET not in _all_text(info.value)
    assert SECRET not in caplog.text
    assert all(SECRET not in str(record.args) for record in caplog.records)


async def test_secret_absent_from_retry_lines(
    send: Any, server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    """A 503 whose error body echoes the key, in the message and in the code: the retry line
    (which is there) carries neither."""
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "airflow_video_edit"):
        caplog.set_level(logging.DEBUG, logger=name)
    echo = status(503, error_json(f"upstream refused key {SECRET}", code=f"bad_key_{SECRET}"))
    server.reply(echo, echo, ok())
    await send(server, calls.retrieve_video("video_1"))
    lines = [r.getMessage() for r in caplog.records if r.name == retries.log.name]
    assert len(lines) == 2
    assert "upstream refused key ***" in lines[0]
    assert SECRET not in caplog.text
    assert all(SECRET not in r.getMessage() and SECRET not in str(r.args) for r in caplog.records)


async def test_secret_echoed_by_server_is_scrubbed(send: Any, server: Server) -> None:
    """Some gateways echo the key they rejected; the exception text must not carry it."""
    server.reply(status(401, error_json(f"Invalid proxy server token passed. Received API Key = {SECRET}")))
    with pytest.raises(errors.AuthenticationError) as info:
        await send(server, calls.retrieve_video("video_1"))
    assert SECRET not in _all_text(info.value)
    assert "Received API Key" in info.value.message


def test_settings_repr_hides_key() -> None:
    settings = ClientSettings(api_key=SECRET)
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings)
    assert settings.headers()["Authorization"] == f"Bearer {SECRET}"


def test_settings_are_hashable_and_equal_by_value() -> None:
    a = ClientSettings(api_key=SECRET, extra_headers=(("x", "1"),))
    b = ClientSettings(api_key=SECRET, extra_headers=(("x", "1"),))
    assert a == b
    assert hash(a) == hash(b)
    assert {a: 1}[b] == 1


def test_models_shared_by_parse_functions() -> None:
    response = httpx.Response(200, json=video_json(), request=httpx.Request("GET", "http://t/v1/videos/x"))
    assert isinstance(replies.parse_video(response), models.Video)


async def test_shared_async_client_is_built_once_for_concurrent_first_callers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built: list[ClientSettings] = []

    class Counting(clients.AsyncVideosClient):
        def __init__(self, settings: ClientSettings) -> None:
            built.append(settings)
            super().__init__(settings)

    monkeypatch.setattr(clients, "AsyncVideosClient", Counting)
    settings = ClientSettings(base_url="http://test/v1", api_key=SECRET)
    shared = await asyncio.gather(*(clients.shared_async_client(settings) for _ in range(50)))
    assert len(built) == 1
    assert all(client is shared[0] for client in shared)
    await shared[0].aclose()


async def test_a_failed_shared_client_build_is_tried_again() -> None:
    settings = ClientSettings(base_url="http://test/v1", verify="/nonexistent/ca-bundle.pem")
    for _ in range(2):  # the failure is not cached: each caller gets the real error
        with pytest.raises((OSError, FileNotFoundError)):
            await clients.shared_async_client(settings)


def test_a_string_is_an_id_unless_it_is_or_looks_like_a_local_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Gateway ids may hold "/" (base64), so a separator alone does not make a string a path."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "take1").write_bytes(b"\x00" * 16)  # a file without a suffix
    for video in ("video_bGl0ZW/xsbTo+Y3V=", "clips/not-there", "video_abc"):
        call = calls.edit_video(video, "p")
        assert call.json == {"video": {"id": video}, "prompt": "p"}, video
        assert call.upload is None
    for video in ("clips/take1", str(tmp_path / "clips" / "take1")):
        call = calls.edit_video(video, "p")
        assert call.upload is not None, video
        assert call.json is None
    for missing in ("./gone", "/no/such/clip", "~/none-here", "clips/missing.mp4"):
        with pytest.raises(errors.InvalidInputError, match=r"^video: no such file"):
            calls.edit_video(missing, "p")
