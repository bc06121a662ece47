"""What a person sees, in a real browser: headless Chromium (Debian's ``chromium`` package) driven
by Playwright's Python package (``executable_path``: Playwright downloads no browser), against the
session's e2e deployment (``airflow_deployment``) and its local Videos server.

Each test saves a screenshot into ``out/screenshots/`` (git ignores ``out/``).

Needs ``/usr/bin/chromium`` (or ``CHROMIUM=...``): ``scripts/test.sh`` installs it with apt when it
runs as root. Without it the tests skip, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from airflow_video_edit.links import LINK_NAME

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "out" / "screenshots"
DAG_ID = "video_edit_then_publish"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium() -> str:
    found = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if found and os.access(found, os.X_OK):
        return found
    reason = "no chromium on this machine (apt-get install chromium; scripts/test.sh does it as root)"
    if os.environ.get("CI") == "true" or os.geteuid() == 0:
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``condition`` until it is truthy (a deadline, not a sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.25)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = _chromium()
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the [test] extra")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


def shot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def open_ui(page: Any, deployment: Any, path: str) -> None:
    """The simple auth manager with all_admins: /auth/token/login sets the UI's token cookie."""
    target = quote(f"{deployment.api_url}{path}", safe="")
    page.goto(f"{deployment.api_url}/auth/token/login?next={target}")
    page.wait_for_load_state("networkidle")


def add_connection_form(page: Any, deployment: Any) -> Any:
    open_ui(page, deployment, "/connections")
    page.get_by_role("button", name="Add Connection").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("combobox").first.click(force=True)
    page.keyboard.type("OpenAI-compatible")
    page.keyboard.press("Enter")
    dialog.get_by_text("Base URL").wait_for()
    return dialog


def field_input(dialog: Any, label: str) -> Any:
    """The input of a labelled row of the form (Chakra: label and control share a field root)."""
    return dialog.locator(
        f"xpath=//label[normalize-space(.)='{label}']/ancestor::*[.//input or .//textarea][1]"
    )


@pytest.fixture(scope="module")
def finished_run(airflow_deployment: Any) -> str:
    run_id = airflow_deployment.trigger_dag(DAG_ID)
    assert airflow_deployment.wait_for_run(DAG_ID, run_id, timeout=240) == "success"
    return str(run_id)


def test_the_connection_form_shows_every_field_and_saves_what_was_typed(
    page: Any, airflow_deployment: Any, e2e_video_server: Any
) -> None:
    import airflow_video_edit

    server, api_key = e2e_video_server
    (conn_type,) = airflow_video_edit.get_provider_info()["connection-types"]
    dialog = add_connection_form(page, airflow_deployment)
    labels = [text.strip().rstrip("*").strip() for text in dialog.locator("label").all_inner_texts()]
    assert "Base URL" in labels
    assert "API key" in labels
    for hidden in ("Host", "Password", "Login", "Port", "Schema"):
        assert hidden not in labels
    conn_id = f"browser_{int(time.time())}"
    dialog.locator("input[name=connection_id]").fill(conn_id)
    dialog.locator("input[name=host]").fill(server.url)
    dialog.locator("input[name=password]").fill(api_key)

    dialog.get_by_role("button", name="Extra Fields", exact=True).click()
    dialog.locator("input[name=element_default_model]").wait_for()
    labels = [text.strip() for text in dialog.locator("label").all_inner_texts()]
    for name, field in conn_type["conn-fields"].items():
        assert field["label"] in labels, name
        assert dialog.get_by_text(field["description"], exact=True).count() == 1, name
    # Auth header style: bearer and api-key only (no literal "null"), nothing chosen = bearer.
    auth = field_input(dialog, "Auth header style")
    assert "null" not in auth.inner_text()
    auth.get_by_role("combobox").click(force=True)
    options = [o.strip() for o in page.get_by_role("option").all_inner_texts()]
    assert options == ["bearer", "api-key"]
    page.get_by_role("option", name="api-key", exact=True).click()
    dialog.locator("input[name=element_default_model]").fill("sora-2-pro")
    dialog.locator("input[name=element_job_url_template]").fill(server.job_url_template)
    dialog.locator("input[name=element_read_timeout]").fill("30")
    shot(page, "connection_form")
    dialog.get_by_role("button", name="Save").click()
    dialog.wait_for(state="hidden")

    stored = airflow_deployment.client.get(f"/api/v2/connections/{conn_id}")
    stored.raise_for_status()
    body = stored.json()
    assert body["conn_type"] == "openai_videos"
    assert body["host"] == server.url
    extra = {k: v for k, v in json.loads(body["extra"] or "{}").items() if v not in (None, "", {})}
    assert extra == {
        "auth_style": "api-key",
        "default_model": "sora-2-pro",
        "job_url_template": server.job_url_template,
        "read_timeout": 30,
    }
    # No provider default was frozen into the connection.
    for untouched in ("connect_timeout", "max_retries", "max_retry_seconds", "retry_job_creation"):
        assert json.loads(body["extra"] or "{}").get(untouched) in (None, ""), untouched

    # The row's Test button, on the connection saved through the form.
    open_ui(page, airflow_deployment, "/connections")
    row = page.get_by_role("row").filter(has_text=conn_id)
    with page.expect_response(lambda r: r.url.endswith("/api/v2/connections/test")) as tested:
        row.get_by_role("button", name="Test").click()
    reply = tested.value
    # Airflow 3.3's row button posts port 0 for a connection with no stored port, and core then
    # refuses to reuse the stored key: 400 "The host or port to test differs ...".
    assert reply.status == 400, reply.text()
    assert "differs from the stored connection" in reply.text()
    assert json.loads(reply.request.post_data or "{}")["port"] == 0
    page.get_by_text(re.compile("fail|differs|error", re.IGNORECASE)).first.wait_for()  # the UI's toast
    shot(page, "connection_test_button_400")
    # The workaround (README): store port 0 once (the Hook ignores a port when the Base URL is a
    # URL); then the row's Test button tests the stored connection, key and all.
    patched = airflow_deployment.client.patch(
        f"/api/v2/connections/{conn_id}",
        params={"update_mask": "port"},
        json={"connection_id": conn_id, "conn_type": "openai_videos", "port": 0},
    )
    assert patched.status_code == 200, patched.text
    page.reload()
    page.wait_for_load_state("networkidle")
    row = page.get_by_role("row").filter(has_text=conn_id)
    with page.expect_response(lambda r: r.url.endswith("/api/v2/connections/test")) as tested:
        row.get_by_role("button", name="Test").click()
    reply = tested.value
    assert reply.status == 200, reply.text()
    assert reply.json()["status"] is True, reply.json()
    page.get_by_text(reply.json()["message"]).first.wait_for()
    shot(page, "connection_test_button")
    # Nothing else of the connection changed.
    after = airflow_deployment.client.get(f"/api/v2/connections/{conn_id}").json()
    assert (after["host"], after["extra"], after["port"]) == (body["host"], body["extra"], 0)


def test_the_video_job_link_opens_the_job_page_and_the_video_plays(
    page: Any, airflow_deployment: Any, finished_run: str, e2e_video_server: Any
) -> None:
    server, _ = e2e_video_server
    video_id = airflow_deployment.xcom(DAG_ID, finished_run, "edit", key="video_id")
    job = airflow_deployment.xcom(DAG_ID, finished_run, "edit", key="job")
    assert job["status"] == "completed"  # the XCom job is the finished one
    links = airflow_deployment.client.get(
        f"/api/v2/dags/{DAG_ID}/dagRuns/{finished_run}/taskInstances/edit/links"
    ).json()["extra_links"]
    assert links == {LINK_NAME: server.job_url_template.replace("{video_id}", video_id)}

    open_ui(page, airflow_deployment, f"/dags/{DAG_ID}/runs/{quote(finished_run, safe='')}/tasks/edit")
    # Airflow 3.3 shows a task's extra links under its Details tab ("Extra Links").
    page.get_by_role("link", name="Details", exact=True).click()
    link = page.get_by_role("link", name=LINK_NAME, exact=True)
    link.wait_for()
    assert link.get_attribute("href") == links[LINK_NAME]
    shot(page, "task_extra_link")
    with page.context.expect_page() as opened:
        link.click()  # another origin: a new tab
    job_page = opened.value
    job_page.wait_for_load_state()
    # The server has a key: a person logs in once through its form, then lands on the job page.
    assert "/jobs/" in job_page.url or "/login" in job_page.url
    if job_page.locator("input[name=api_key]").count():
        job_page.locator("input[name=api_key]").fill(e2e_video_server[1])
        job_page.get_by_role("button", name="Log in").click()
    job_page.wait_for_url(f"**/jobs/{video_id}")
    assert e2e_video_server[1] not in job_page.url
    video = job_page.locator("video#player")
    video.wait_for()
    duration = wait_for(
        lambda: video.evaluate("v => v.readyState >= 1 && v.duration"), 30, "the video's metadata loaded"
    )
    assert abs(duration - float(job["seconds"])) < 0.5, (duration, job["seconds"])
    video.evaluate("v => { v.muted = true; return v.play(); }")
    wait_for(lambda: video.evaluate("v => v.currentTime > 0.2 && !v.paused"), 30, "the video plays")
    shot(job_page, "gallery_job_page")


def test_the_task_log_shows_progress_and_never_the_key(
    page: Any, airflow_deployment: Any, finished_run: str, e2e_video_server: Any
) -> None:
    _, api_key = e2e_video_server
    open_ui(page, airflow_deployment, f"/dags/{DAG_ID}/runs/{quote(finished_run, safe='')}/tasks/edit")
    page.get_by_role("tab", name="Logs").first.click() if page.get_by_role(
        "tab", name="Logs"
    ).count() else None
    text = wait_for(
        lambda: (body := page.locator("body").inner_text()) and "video job" in body and body,
        60,
        "the task log shows the job's lines",
    )
    shot(page, "task_log")
    video_id = airflow_deployment.xcom(DAG_ID, finished_run, "edit", key="video_id")
    assert f"submitted video edit job {video_id}" in text
    progress = re.findall(rf"video job {video_id}: in_progress (\d+)%", text)
    assert len(progress) >= 2, text  # the triggerer's lines, in the one log of the try
    assert [int(p) for p in progress] == sorted(int(p) for p in progress)
    assert f"video job {video_id}: completed" in text
    assert api_key not in text
    assert api_key not in page.content()
