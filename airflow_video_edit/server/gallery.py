"""The job gallery of the local server: HTML pages a person can look at (no build, no assets).

- ``GET /``: every job, newest first: thumbnail, status, progress, prompt, model, size, seconds.
- ``GET /jobs/{video_id}``: one job, with an HTML5 ``<video>`` player and a link to each variant.
- ``GET /jobs/{video_id}/content?variant=...``: the files those pages show.
- ``GET /login``, ``POST /login``, ``POST /logout``.

With an API key set, every page needs it, the same way as the API (``Authorization: Bearer K``
or ``api-key: K``, for scripts), or a session cookie for people: the login form posts the key
(never in a URL), and the server answers with a random session token (the cookie is ``HttpOnly``,
``SameSite=Strict``; the key itself is never in it). Everything shown is escaped (a prompt is
user input), and the pages carry a Content-Security-Policy without any script.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from datetime import datetime, timezone
from html import escape
from urllib.parse import quote

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Route

from airflow_video_edit.models import COMPLETED, VARIANTS

from . import media
from .jobs import JobStore
from .records import Job

COOKIE = "videos_session"
SESSION_SECONDS = 12 * 3600
LISTED = 200  # jobs on the gallery page
_PROMPT_IN_LIST = 160
_HEADERS = {
    # No script at all: an escaped prompt could not run anyway, and nothing else is loaded.
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; media-src 'self'; "
    "style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#222}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.4rem;
text-align:left;vertical-align:top}img.thumb{width:96px;background:#eee}
.completed{color:#176c2a}.failed{color:#b00020}.queued,.in_progress{color:#8a5a00}
video{max-width:100%;max-height:70vh;background:#000}dt{font-weight:600}dd{margin:0 0 .4rem}
form.inline{display:inline}.prompt{white-space:pre-wrap}
"""


def _page(title: str, body: str, *, status: int = 200, refresh: bool = False) -> Response:
    meta = '<meta http-equiv="refresh" content="2">' if refresh else ""
    html = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">{meta}'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>{body}</body></html>"
    )
    return Response(html, status_code=status, media_type="text/html; charset=utf-8", headers=_HEADERS)


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


class Gallery:
    """The gallery's routes over a job store.

    Args:
        store: the server's jobs.
        api_key: returns the accepted key (None: the pages are open, like the API).
        shown_id / stored_id: a job's id as clients see it and back (gateway mode rewrites ids).
    """

    def __init__(
        self,
        store: JobStore,
        api_key: Callable[[], str | None],
        *,
        shown_id: Callable[[str], str] = str,
        stored_id: Callable[[str], str] = str,
    ) -> None:
        self.store, self.api_key = store, api_key
        self.shown_id, self.stored_id = shown_id, stored_id
        self.sessions: dict[str, float] = {}  # token -> expiry (monotonic)
        self.routes = [
            Route("/", self.index, methods=["GET"]),
            Route("/login", self.login_form, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/jobs/{video_id:path}/content", self.content, methods=["GET"]),
            Route("/jobs/{video_id:path}", self.job_page, methods=["GET"]),
        ]

    # --- who is asking ------------------------------------------------------------------------
    def _allowed(self, request: Request) -> bool:
        key = self.api_key()
        if key is None:
            return True
        given = request.headers.get("api-key", "")
        bearer = request.headers.get("authorization", "")
        if bearer[:7].lower() == "bearer ":
            given = given or bearer[7:].strip()
        if given:
            return secrets.compare_digest(given.encode(), key.encode())
        token = request.cookies.get(COOKIE, "")
        expiry = self.sessions.get(token) if token else None
        if expiry is None:
            return False
        if expiry < time.monotonic():
            self.sessions.pop(token, None)
            return False
        return True

    def _login_page(self, request: Request, *, status: int = 401, error: str = "") -> Response:
        target = request.url.path if request.url.path != "/login" else "/"
        notice = f'<p class="failed">{escape(error)}</p>' if error else ""
        body = (
            "<h1>Local Videos server</h1><p>This server needs its API key.</p>"
            f'{notice}<form method="post" action="/login">'
            f'<input type="hidden" name="next" value="{escape(target)}">'
            '<label>API key <input type="password" name="api_key" autocomplete="current-password" '
            'required autofocus></label> <button type="submit">Log in</button></form>'
        )
        return _page("Log in: local Videos server", body, status=status)

    async def login_form(self, request: Request) -> Response:
        if self._allowed(request):
            return RedirectResponse("/", status_code=303)
        return self._login_page(request, status=200)

    async def login(self, request: Request) -> Response:
        form = await request.form()
        given = str(form.get("api_key") or "")
        target = str(form.get("next") or "/")
        if not target.startswith("/") or target.startswith(("//", "/\\")):
            target = "/"  # only a page of this server
        key = self.api_key()
        if key is not None and not secrets.compare_digest(given.encode(), key.encode()):
            return self._login_page(request, error="Wrong API key.")
        now = time.monotonic()
        self.sessions = {t: expiry for t, expiry in self.sessions.items() if expiry > now}  # pruned
        token = secrets.token_urlsafe(32)
        self.sessions[token] = now + SESSION_SECONDS
        reply = RedirectResponse(target, status_code=303)
        reply.set_cookie(COOKIE, token, max_age=SESSION_SECONDS, httponly=True, samesite="strict", path="/")
        return reply

    async def logout(self, request: Request) -> Response:
        self.sessions.pop(request.cookies.get(COOKIE, ""), None)
        reply = RedirectResponse("/login", status_code=303)
        reply.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return reply

    # --- pages --------------------------------------------------------------------------------
    def _href(self, job: Job, variant: str | None = None) -> str:
        path = f"/jobs/{quote(self.shown_id(job.id), safe='')}"
        return f"{path}/content?variant={variant}" if variant else path

    def _available(self, job: Job, now: float) -> bool:
        status, _ = job.state(now)
        return status == COMPLETED and now < job.expires_at

    def _logout_button(self) -> str:
        if self.api_key() is None:
            return ""
        return '<form class="inline" method="post" action="/logout"><button>Log out</button></form>'

    async def index(self, request: Request) -> Response:
        if not self._allowed(request):
            return self._login_page(request)
        now = self.store.clock()
        jobs, more = self.store.page(after=None, limit=LISTED, descending=True)
        rows = []
        for job in jobs:
            status, progress = job.state(now)
            thumb = (
                f'<img class="thumb" alt="thumbnail" src="{escape(self._href(job, "thumbnail"))}">'
                if self._available(job, now)
                else ""
            )
            prompt = job.prompt if len(job.prompt) <= _PROMPT_IN_LIST else job.prompt[:_PROMPT_IN_LIST] + "…"
            rows.append(
                f"<tr><td>{thumb}</td>"
                f'<td><a href="{escape(self._href(job))}">{escape(self.shown_id(job.id))}</a></td>'
                f'<td class="{escape(status)}">{escape(status)}</td>'
                f'<td><progress max="100" value="{progress}"></progress> {progress}%</td>'
                f'<td class="prompt">{escape(prompt)}</td><td>{escape(job.model)}</td>'
                f"<td>{escape(job.size)}</td><td>{escape(job.seconds)}</td>"
                f"<td>{escape(_when(job.created_at))}</td></tr>"
            )
        table = (
            "<table><thead><tr><th></th><th>Job</th><th>Status</th><th>Progress</th><th>Prompt</th>"
            "<th>Model</th><th>Size</th><th>Seconds</th><th>Created</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>"
            if rows
            else "<p>No jobs yet.</p>"
        )
        more_note = f"<p>The newest {LISTED} jobs are shown.</p>" if more else ""
        running = any(job.state(now)[0] != COMPLETED and not job.fail_code for job in jobs)
        body = f"<h1>Video jobs</h1>{self._logout_button()}{table}{more_note}"
        return _page("Video jobs", body, refresh=running)

    def _find(self, request: Request) -> Job | None:
        try:
            return self.store.get(self.stored_id(request.path_params["video_id"]))
        except ValueError:  # not an id of this server (gateway mode decodes it)
            return None

    async def job_page(self, request: Request) -> Response:
        if not self._allowed(request):
            return self._login_page(request)
        job = self._find(request)
        if job is None:
            body = '<h1>No such job</h1><p><a href="/">All jobs</a></p>'
            return _page("No such job", body, status=404)
        now = self.store.clock()
        status, progress = job.state(now)
        shown = self.shown_id(job.id)
        facts = [
            ("Status", f'<span class="{escape(status)}">{escape(status)}</span> ({progress}%)'),
            ("Kind", escape(job.kind)),
            ("Model", escape(job.model)),
            ("Size", escape(job.size)),
            ("Seconds", escape(job.seconds)),
            ("Created", escape(_when(job.created_at))),
        ]
        if job.source_id:
            source = self.store.get(job.source_id)
            link = escape(self._href(source)) if source is not None else ""
            name = escape(self.shown_id(job.source_id))
            facts.append(("Source", f'<a href="{link}">{name}</a>' if link else name))
        if status != COMPLETED and job.fail_code:
            facts.append(("Error", escape(f"{job.fail_code}: {job.fail_message or ''}")))
        details = "".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in facts)
        if self._available(job, now):
            player = (
                f'<video id="player" controls preload="metadata" '
                f'src="{escape(self._href(job, "video"))}"></video>'
            )
            links = " · ".join(
                f'<a href="{escape(self._href(job, variant))}">{escape(variant)}</a>' for variant in VARIANTS
            )
            media_part = f"{player}<p>Files: {links}</p>"
        elif status == COMPLETED:
            media_part = "<p>The assets of this job have expired.</p>"
        else:
            media_part = f"<p>The video is not ready ({escape(status)}).</p>"
        body = (
            f'<p><a href="/">All jobs</a> {self._logout_button()}</p><h1>{escape(shown)}</h1>'
            f'<p class="prompt">{escape(job.prompt)}</p>{media_part}<dl>{details}</dl>'
        )
        return _page(f"Video job {shown}", body, refresh=status not in (COMPLETED,) and not job.fail_code)

    async def content(self, request: Request) -> Response:
        if not self._allowed(request):
            return Response("Log in first (or send the API key).", status_code=401, headers=_HEADERS)
        job = self._find(request)
        variant = request.query_params.get("variant", "video")
        if job is None or variant not in VARIANTS or not self._available(job, self.store.clock()):
            return Response("No such file.", status_code=404, headers=_HEADERS)
        try:
            files = await anyio.to_thread.run_sync(self.store.ensure_media, job)
        except media.MediaError:
            return Response("Rendering failed.", status_code=500, headers=_HEADERS)
        path = {"video": files.video, "thumbnail": files.thumbnail, "spritesheet": files.spritesheet}[variant]
        if not path.exists():
            return Response("No such file.", status_code=404, headers=_HEADERS)
        content_type = "video/mp4" if variant == "video" else media.image_format()[1]
        return FileResponse(path, media_type=content_type, headers={"Cache-Control": "no-store"})
