"""The provider is registered in a real Airflow install (the package installed in the venv)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import airflow_video_edit

AIRFLOW = Path(sys.executable).with_name("airflow")


def _airflow(tmp_path: Path, *args: str) -> str:
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow-home"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "ERROR",
    }
    result = subprocess.run(
        [str(AIRFLOW), *args], capture_output=True, text=True, env=env, timeout=240, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("provider")


def test_airflow_providers_list_shows_the_package(home: Path) -> None:
    rows: list[dict[str, Any]] = json.loads(_airflow(home, "providers", "list", "--output", "json"))
    ours = [row for row in rows if row["package_name"] == "airflow-video-edit"]
    assert len(ours) == 1, [row["package_name"] for row in rows]
    assert ours[0]["version"] == airflow_video_edit.__version__


def test_airflow_providers_hooks_lists_the_connection_type(home: Path) -> None:
    rows: list[dict[str, Any]] = json.loads(_airflow(home, "providers", "hooks", "--output", "json"))
    ours = [row for row in rows if row.get("connection_type") == "openai_videos"]
    assert len(ours) == 1, rows
    assert ours[0]["class"] == "airflow_video_edit.hooks.OpenAIVideosHook"
    assert ours[0]["package_name"] == "airflow-video-edit"
    assert ours[0]["conn_id_attribute_name"] == "openai_videos_conn_id"


def test_providers_manager_knows_hook_and_fields() -> None:
    from airflow.providers_manager import ProvidersManager
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    manager = ProvidersManager()
    assert "airflow-video-edit" in manager.providers
    hook = ProvidersManagerTaskRuntime().hooks["openai_videos"]
    assert hook is not None
    assert hook.hook_class_name == "airflow_video_edit.hooks.OpenAIVideosHook"
    assert hook.connection_id_attribute_name == "openai_videos_conn_id"
    assert hook.package_name == "airflow-video-edit"

    widgets = {
        name.split("__")[-1]: info
        for name, info in manager.connection_form_widgets.items()
        if "openai_videos" in name
    }
    for field in (
        "auth_style",
        "organization",
        "project",
        "default_model",
        "extra_headers",
        "extra_query",
        "max_retries",
        "retry_job_creation",
        "verify",
        "proxy",
    ):
        assert field in widgets, sorted(widgets)
    behaviour = manager.field_behaviours["openai_videos"]
    assert behaviour["relabeling"] == {"host": "Base URL", "password": "API key"}
    assert "login" in behaviour["hidden_fields"]


def test_provider_info_declares_the_hook_module_and_conn_fields() -> None:
    info = airflow_video_edit.get_provider_info()
    assert info["package-name"] == "airflow-video-edit"
    assert info["versions"] == [airflow_video_edit.__version__]
    (connection,) = info["connection-types"]
    assert connection["connection-type"] == "openai_videos"
    module, _, name = connection["hook-class-name"].rpartition(".")
    assert getattr(__import__(module, fromlist=[name]), name).conn_type == "openai_videos"
    from airflow_video_edit.settings import settings_from_connection

    # Every declared extra is one the hook reads (a typo in either place would break this).
    extra = {field: None for field in connection["conn-fields"]}
    assert settings_from_connection(host=None, port=None, schema=None, password=None, extra=extra)


def test_importing_the_package_is_light() -> None:
    """``__init__`` is imported on every Airflow start: it must not pull in the client stack."""
    heavy = ("httpx", "tenacity", "pydantic", "airflow")
    code = (
        "import json, sys, airflow_video_edit; "
        f"print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
