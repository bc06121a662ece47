"""The connection form's fields (as Airflow's UI renders them), the settings read from what it
saves, and the "Video job" extra link."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import TaskDeferred

import airflow_video_edit
from airflow_video_edit import errors
from airflow_video_edit.links import LINK_NAME, VideoJobLink, job_url
from airflow_video_edit.operators import VideoDeleteOperator, VideoDownloadOperator, VideoEditOperator
from airflow_video_edit.sensors import VideoJobSensor
from airflow_video_edit.server import LocalVideosServer
from airflow_video_edit.settings import ClientSettings, settings_from_connection

from .task_fakes import CONN_ID, KEY, SOURCE_CLIP, make_context, run_trigger
from .task_fakes import local_server as local_server  # the "server" fixture: a real local server

FIELDS: dict[str, Any] = airflow_video_edit.get_provider_info()["connection-types"][0]["conn-fields"]
LINK_KEY = VideoJobLink().xcom_key


def settings(**extra: Any) -> ClientSettings:
    return settings_from_connection(host=None, port=None, schema=None, password=None, extra=extra)


# --- the form ---------------------------------------------------------------------------------
def test_no_field_has_a_schema_default_the_ui_would_freeze_into_saved_connections() -> None:
    for name, field in FIELDS.items():
        assert "default" not in field["schema"], name


def test_every_field_has_a_short_label_and_a_description() -> None:
    for name, field in FIELDS.items():
        assert len(field["label"]) <= 24, (name, field["label"])
        assert "(" not in field["label"], (name, field["label"])
        assert field.get("description"), name


def test_auth_style_offers_bearer_and_api_key_only_and_names_the_default() -> None:
    field = FIELDS["auth_style"]
    assert field["schema"]["enum"] == ["bearer", "api-key"]
    assert None not in field["schema"]["enum"]
    assert "bearer (the default" in field["description"]


@pytest.mark.parametrize(
    ("name", "default"),
    [
        ("connect_timeout", 10),
        ("read_timeout", 60),
        ("max_retries", 4),
        ("max_retry_seconds", 120),
        ("retry_job_creation", "false"),
        ("idempotency_keys", "false"),
        ("verify", "true"),
    ],
)
def test_each_description_names_the_default_the_settings_use(name: str, default: Any) -> None:
    assert f"default {str(default).lower()}" in FIELDS[name]["description"].lower()
    # What the UI saves for an untouched field is null: that is the default, not a frozen copy.
    value = getattr(settings(**{name: None}), "retry_job_creation" if name == "idempotency_keys" else name)
    expected = {"true": True, "false": False}.get(str(default), default)
    assert value == expected


def test_a_connection_as_the_ui_saves_it_reads_as_the_defaults() -> None:
    saved = {name: None for name in FIELDS}  # the form writes every key, null when untouched
    assert settings(**saved) == ClientSettings()


def test_the_extra_link_is_registered_in_the_provider_info() -> None:
    (path,) = airflow_video_edit.get_provider_info()["extra-links"]
    module, _, name = path.rpartition(".")
    assert getattr(__import__(module, fromlist=[name]), name) is VideoJobLink


# --- settings the form cannot check -----------------------------------------------------------
@pytest.mark.parametrize("value", ["/no/such/ca-bundle.pem", "maybe", "ture"])
def test_verify_must_be_a_boolean_or_an_existing_ca_bundle(value: str) -> None:
    with pytest.raises(errors.InvalidInputError, match="'verify' must be true, false or the path") as info:
        settings(verify=value)
    assert info.value.param == "verify"


def test_verify_takes_an_existing_ca_bundle(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    assert settings(verify=f" {bundle} ").verify == str(bundle)
    assert settings(verify="off").verify is False


@pytest.mark.parametrize("value", ["ten", [1]])
def test_a_number_field_that_is_no_number_is_named(value: Any) -> None:
    with pytest.raises(errors.InvalidInputError, match="'read_timeout' must be a number") as info:
        settings(read_timeout=value)
    assert info.value.param == "read_timeout"


@pytest.mark.parametrize(
    "template",
    ["https://portal.example.com/videos", "portal/{video_id}", "https://x/{video_id}/{other}", "https://x/{"],
)
def test_a_job_url_template_needs_a_url_with_video_id_only(template: str) -> None:
    with pytest.raises(errors.InvalidInputError, match="job_url_template") as info:
        settings(job_url_template=template)
    assert info.value.param == "job_url_template"


# --- the link ---------------------------------------------------------------------------------
def test_job_url_quotes_the_id_and_is_none_without_a_template() -> None:
    portal = settings(job_url_template="https://portal.example.com/v/{video_id}?tab=1")
    assert job_url(portal, "video_abc") == "https://portal.example.com/v/video_abc?tab=1"
    # Gateway ids are base64 (with "/", "+", "="): one path segment, never a second one.
    assert job_url(portal, "litellm:a/b+c=") == "https://portal.example.com/v/litellm%3Aa%2Fb%2Bc%3D?tab=1"
    assert job_url(settings(), "video_abc") is None
    assert job_url(portal, None) is None


def test_every_operator_that_has_a_job_has_the_link_and_delete_has_none() -> None:
    for cls in (VideoEditOperator, VideoDownloadOperator, VideoJobSensor):
        assert [link.name for link in cls.operator_extra_links] == [LINK_NAME], cls
    assert list(VideoDeleteOperator.operator_extra_links) == []


def _with_template(monkeypatch: pytest.MonkeyPatch, server: LocalVideosServer) -> None:
    conn = {
        "conn_type": "openai_videos",
        "host": server.url,
        "password": KEY,
        "extra": {"job_url_template": server.job_url_template},
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))


def edit(**kwargs: Any) -> VideoEditOperator:
    return VideoEditOperator(
        task_id="edit", conn_id=CONN_ID, prompt="a grade", video=SOURCE_CLIP, poll_interval=0.1, **kwargs
    )


def test_the_link_is_in_xcom_before_the_job_waits_and_airflow_computes_it_at_deferral(
    server: LocalVideosServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _with_template(monkeypatch, server)
    ctx = make_context()
    op = edit(deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(ctx)
    (video_id,) = ctx["ti"].values("video_id")
    expected = f"{server.root_url}/jobs/{video_id}"
    assert ctx["ti"].values(LINK_KEY) == [expected]  # pushed with the id: shows while it waits
    # What Airflow's task runner stores at the end of this (deferred) process, and of the resumed one.
    assert op.operator_extra_links[0].get_link(op, ti_key=None) == expected  # type: ignore[arg-type]
    resumed, resumed_ctx = edit(deferrable=True), make_context()
    assert VideoJobLink().get_link(resumed, ti_key=None) == ""  # type: ignore[arg-type]
    resumed.execute_complete(resumed_ctx, run_trigger(deferred.value.trigger))
    assert VideoJobLink().get_link(resumed, ti_key=None) == expected  # type: ignore[arg-type]
    # The job XCom is the finished job now, not the submit-time snapshot.
    (job,) = resumed_ctx["ti"].values("job")
    assert (job["id"], job["status"], job["progress"]) == (video_id, "completed", 100)


def test_no_template_no_link(server: LocalVideosServer) -> None:
    ctx = make_context()
    op = edit(deferrable=False)
    op.execute(ctx)
    assert ctx["ti"].values(LINK_KEY) == []
    assert VideoJobLink().get_link(op, ti_key=None) == ""  # type: ignore[arg-type]
    assert ctx["ti"].values("job")[-1]["status"] == "completed"
