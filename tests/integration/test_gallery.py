"""The local server's job gallery: its pages, what they show (escaped), and how they let people in."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from html.parser import HTMLParser
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from test_server_support import API_KEY, probe_mp4, wait_until

from airflow_video_edit.server import LocalVideosServer
from airflow_video_edit.server.gallery import COOKIE

pytestmark = pytest.mark.integration

EVIL = '<script>alert("x")</script> & <img src=x onerror=alert(1)>'


class _Tags(HTMLParser):
    """Every start tag with its attributes (what a browser would build)."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def tags(html: str, name: str) -> list[dict[str, str | None]]:
    parser = _Tags()
    parser.feed(html)
    return [attrs for tag, attrs in parser.tags if tag == name]


def bearer(key: str = API_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def completed_job(client: Any, server: LocalVideosServer, prompt: str, **kwargs: Any) -> str:
    video = client.videos.create(prompt=prompt, **kwargs)
    wait_until(lambda: client.videos.retrieve(video.id).status == "completed")
    return str(video.id)


@contextmanager
def logged_in(server: LocalVideosServer) -> Iterator[httpx.Client]:
    """A client that logged in through the form, as a browser does (cookie only, no header)."""
    with httpx.Client(base_url=server.root_url, timeout=30) as client:
        reply = client.post("/login", data={"api_key": API_KEY, "next": "/"})
        assert reply.status_code == 303, reply.text
        yield client


def test_without_the_key_every_page_answers_the_login_form(
    local_server: LocalVideosServer, openai_client: Any
) -> None:
    video_id = completed_job(openai_client, local_server, "a red kite")
    with httpx.Client(base_url=local_server.root_url) as anonymous:
        for path in ("/", f"/jobs/{video_id}"):
            reply = anonymous.get(path)
            assert reply.status_code == 401
            assert "a red kite" not in reply.text
            (form,) = tags(reply.text, "form")
            assert (form["method"], form["action"]) == ("post", "/login")
            assert [i["name"] for i in tags(reply.text, "input")] == ["next", "api_key"]
            assert tags(reply.text, "input")[1]["type"] == "password"
        assert anonymous.get(f"/jobs/{video_id}/content?variant=video").status_code == 401
        # The key in the query string (as a careless script would) opens nothing.
        assert anonymous.get("/", params={"api_key": API_KEY}).status_code == 401


def test_a_wrong_key_is_refused_by_header_and_by_form(local_server: LocalVideosServer) -> None:
    with httpx.Client(base_url=local_server.root_url) as client:
        assert client.get("/", headers=bearer("sk-wrong")).status_code == 401
        assert client.get("/", headers={"api-key": "sk-wrong"}).status_code == 401
        reply = client.post("/login", data={"api_key": "sk-wrong"})
        assert reply.status_code == 401
        assert "Wrong API key" in reply.text
        assert COOKIE not in reply.cookies
        assert client.get("/").status_code == 401


def test_the_right_bearer_key_opens_the_pages_for_scripts(
    local_server: LocalVideosServer, openai_client: Any
) -> None:
    video_id = completed_job(openai_client, local_server, "a blue heron")
    with httpx.Client(base_url=local_server.root_url, headers=bearer()) as client:
        assert "a blue heron" in client.get("/").text
        page = client.get(f"/jobs/{video_id}")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        content = client.get(f"/jobs/{video_id}/content", params={"variant": "video"})
        assert content.status_code == 200
        assert content.headers["content-type"] == "video/mp4"
        assert content.content == openai_client.videos.download_content(video_id).read()


def test_the_login_form_sets_a_session_cookie_that_is_not_the_key(
    local_server: LocalVideosServer, openai_client: Any
) -> None:
    video_id = completed_job(openai_client, local_server, "a grey wolf")
    with httpx.Client(base_url=local_server.root_url) as client:
        reply = client.post("/login", data={"api_key": API_KEY, "next": f"/jobs/{video_id}"})
        assert reply.status_code == 303
        assert reply.headers["location"] == f"/jobs/{video_id}"
        cookie = reply.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE}=")
        assert "httponly" in cookie.lower()
        assert "samesite=strict" in cookie.lower()
        assert API_KEY not in cookie
        assert API_KEY not in reply.headers["location"]
        page = client.get(f"/jobs/{video_id}")
        assert page.status_code == 200
        assert API_KEY not in page.text
        assert client.get(f"/jobs/{video_id}/content", params={"variant": "thumbnail"}).status_code == 200
        # Logging out ends the session on the server, not only in this client.
        token = client.cookies[COOKIE]
        client.post("/logout")
        with httpx.Client(base_url=local_server.root_url, cookies={COOKIE: token}) as replay:
            assert replay.get("/").status_code == 401


def test_login_redirects_only_within_the_server(local_server: LocalVideosServer) -> None:
    with httpx.Client(base_url=local_server.root_url) as client:
        for target in ("https://evil.example/", "//evil.example/", "/\\evil.example/"):
            reply = client.post("/login", data={"api_key": API_KEY, "next": target})
            assert reply.headers["location"] == "/"


def test_the_gallery_lists_jobs_newest_first_with_their_facts(
    local_server: LocalVideosServer, openai_client: Any
) -> None:
    first = completed_job(openai_client, local_server, "first clip", size="1280x720", seconds="8")
    second = completed_job(openai_client, local_server, "second clip", model="sora-2-pro")
    with logged_in(local_server) as client:
        html = client.get("/").text
    rows = re.findall(r"<tr>(.*?)</tr>", html, re.S)[1:]  # the header row first
    assert [re.search(r'href="/jobs/([^"]+)"', row).group(1) for row in rows] == [second, first]  # type: ignore[union-attr]
    assert "completed" in rows[1]
    assert "100%" in rows[1]
    for fact in ("first clip", "sora-2", "1280x720", ">8<"):
        assert fact in rows[1], fact
    assert "sora-2-pro" in rows[0]
    thumbs = [img["src"] for img in tags(html, "img")]
    assert thumbs == [f"/jobs/{second}/content?variant=thumbnail", f"/jobs/{first}/content?variant=thumbnail"]


def test_a_running_job_shows_its_progress_and_no_player(local_server: LocalVideosServer) -> None:
    with LocalVideosServer(api_key=API_KEY, job_seconds=600) as slow:
        import openai

        client = openai.OpenAI(base_url=slow.url, api_key=API_KEY, max_retries=0)
        video = client.videos.create(prompt="a slow sunrise")
        with httpx.Client(base_url=slow.root_url, headers=bearer()) as gallery:
            page = gallery.get(f"/jobs/{video.id}").text
            listing = gallery.get("/").text
    assert "queued" in page
    assert tags(page, "video") == []
    assert tags(listing, "progress")[0]["value"] == "0"
    assert 'http-equiv="refresh"' in page  # it reloads until the job is done


def test_the_job_page_plays_the_video_and_links_every_variant(
    local_server: LocalVideosServer, openai_client: Any, tmp_path: Any
) -> None:
    video_id = completed_job(openai_client, local_server, "a paper boat", seconds="4")
    with logged_in(local_server) as client:
        page = client.get(f"/jobs/{video_id}").text
        (player,) = tags(page, "video")
        assert player["src"] == f"/jobs/{video_id}/content?variant=video"
        assert "controls" in player
        hrefs = {a["href"] for a in tags(page, "a")}
        for variant in ("video", "thumbnail", "spritesheet"):
            assert f"/jobs/{video_id}/content?variant={variant}" in hrefs
            assert client.get(f"/jobs/{video_id}/content?variant={variant}").status_code == 200
        mp4 = tmp_path / "played.mp4"
        mp4.write_bytes(client.get(str(player["src"])).content)
        # A browser's <video> asks for byte ranges.
        ranged = client.get(str(player["src"]), headers={"Range": "bytes=0-99"})
    assert abs(probe_mp4(mp4)[2] - 4) < 0.5
    assert ranged.status_code == 206
    assert len(ranged.content) == 100


def test_everything_shown_is_escaped(local_server: LocalVideosServer, openai_client: Any) -> None:
    video_id = completed_job(openai_client, local_server, EVIL)
    with logged_in(local_server) as client:
        for path in ("/", f"/jobs/{video_id}"):
            reply = client.get(path)
            assert "<script" not in reply.text
            assert tags(reply.text, "script") == []
            assert all("onerror" not in attrs for attrs in tags(reply.text, "img"))
            assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;img" in reply.text
            assert "script-src" not in reply.headers["content-security-policy"]  # default-src 'none'
            assert "default-src 'none'" in reply.headers["content-security-policy"]
        # An unknown id from the URL is not echoed unescaped either.
        missing = client.get("/jobs/%3Cscript%3Ex")
        assert missing.status_code == 404
        assert "<script" not in missing.text


def test_a_server_without_a_key_shows_the_gallery_to_anyone(tmp_path: Any) -> None:
    with (
        LocalVideosServer(api_key=None, job_seconds=0.2) as open_server,
        httpx.Client(base_url=open_server.root_url) as client,
    ):
        reply = client.get("/")
        assert reply.status_code == 200
        assert "No jobs yet" in reply.text
        assert tags(reply.text, "form") == []  # no log-out button either


def test_gateway_mode_pages_use_the_ids_clients_see() -> None:
    import openai

    with LocalVideosServer(api_key=API_KEY, job_seconds=0.2, gateway_quirks=True) as gateway:
        client = openai.OpenAI(base_url=gateway.url, api_key=API_KEY, max_retries=0)
        video = client.videos.create(prompt="through a gateway", model="sora-2")
        wait_until(lambda: client.videos.retrieve(video.id).status == "completed")
        url = gateway.job_url_template.replace("{video_id}", quote(video.id, safe=""))
        with httpx.Client(headers=bearer()) as web:
            page = web.get(url)
            assert page.status_code == 200, page.text
            assert "through a gateway" in page.text
            (player,) = tags(page.text, "video")
            assert web.get(f"{gateway.root_url}{player['src']}").status_code == 200
