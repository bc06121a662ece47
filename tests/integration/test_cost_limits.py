"""Cost made visible and bounded, against the real local server (its request counters are the
measure of "nothing was sent"): ``estimated_cost`` in XCom, the log and the Asset extra;
``max_cost`` refuses with no request; ``dry_run`` checks everything and submits nothing."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import Asset
from airflow.sdk.api.datamodels._generated import TaskInstanceState
from airflow.sdk.exceptions import TaskDeferred
from test_server_support import API_KEY, Store, retry_decision, wait_until
from test_server_support import task_context as context

from airflow_video_edit.errors import CostLimitError, InvalidInputError
from airflow_video_edit.operators import (
    VideoCreateOperator,
    VideoEditOperator,
    VideoExtendOperator,
    VideoRemixOperator,
)
from airflow_video_edit.server import LocalVideosServer

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::DeprecationWarning")]
CONN_ID = "openai_videos_costs"
SOURCE_CLIP = str(Path(__file__).resolve().parents[2] / "dags" / "data" / "source_clip.mp4")  # 4 s, 720x1280
PRICES = {
    "currency": "USD",
    "models": {
        "sora-2": {"per_second": 0.10},
        "sora-2-pro": {"per_second": 0.30, "per_size": {"1792x1024": 0.50}},
    },
}
COMMON = {"conn_id": CONN_ID, "poll_interval": 0.05, "deferrable": False}


def pushed(ctx: dict[str, Any], key: str) -> list[Any]:
    return [value for k, value in ctx["ti"].pushed if k == key]


def connect(monkeypatch: pytest.MonkeyPatch, server: LocalVideosServer, **extra: Any) -> None:
    conn = {"conn_type": "openai_videos", "host": server.url, "password": API_KEY, "extra": extra}
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))


@pytest.fixture
def server(local_server: LocalVideosServer, monkeypatch: pytest.MonkeyPatch) -> LocalVideosServer:
    connect(monkeypatch, local_server, prices=PRICES)
    return local_server


def requests(server: LocalVideosServer) -> int:
    return int(server.stats()["requests_total"])


def completed(seconds: int) -> Any:
    """A finished source job (a read of it costs nothing)."""
    from airflow_video_edit.hooks import OpenAIVideosHook

    with OpenAIVideosHook(CONN_ID) as hook:
        video = hook.create_video("a long shot", seconds=seconds)
        return wait_until(lambda: (v := hook.get_video(video.id)).status == "completed" and v)


def log_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().out.splitlines()


# --- estimated_cost: log, XCom, Asset extra ---------------------------------------------------------
def test_the_estimate_is_logged_before_the_submit_and_in_xcom_and_the_asset_extra(
    server: LocalVideosServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    asset = Asset("clips")
    ctx = context()
    edit = VideoEditOperator(
        task_id="edit", video=SOURCE_CLIP, prompt="grade", destination=f"{tmp_path}/", asset=asset, **COMMON
    )
    capsys.readouterr()
    result = edit.execute(ctx)
    assert result["status"] == "completed"
    cost = {"currency": "USD", "amount": 0.4}  # the 4 s clip at 0.10 USD/s (sora-2)
    assert pushed(ctx, "estimated_cost") == [cost]
    assert ctx["outlet_events"][asset].extra["estimated_cost"] == cost
    lines = log_lines(capsys)
    estimated = next(
        i for i, line in enumerate(lines) if "estimated cost of this video edit job: 0.4 USD" in line
    )
    submitted = next(i for i, line in enumerate(lines) if "submitted video edit job" in line)
    assert estimated < submitted


def test_a_deferred_task_takes_the_estimate_for_the_asset_extra_from_xcom(
    server: LocalVideosServer, tmp_path: Path
) -> None:
    asset = Asset("clips")
    ctx = context()
    create = VideoCreateOperator(
        task_id="create",
        prompt="a boat",
        model="sora-2-pro",
        size="1792x1024",
        seconds=8,
        destination=f"{tmp_path}/",
        asset=asset,
        **{**COMMON, "deferrable": True},
    )
    with pytest.raises(TaskDeferred) as deferred:
        create.execute(ctx)

    async def events() -> list[dict[str, Any]]:
        return [event.payload async for event in deferred.value.trigger.run()]

    (event,) = asyncio.run(events())
    resumed = VideoCreateOperator(
        task_id="create", prompt="a boat", destination=f"{tmp_path}/", asset=asset, **COMMON
    )
    resumed.execute_complete(ctx, event)  # a new process: the estimate comes from XCom
    assert ctx["outlet_events"][asset].extra["estimated_cost"] == {"currency": "USD", "amount": 4.0}


def test_no_price_for_the_model_no_estimate_and_the_job_runs(server: LocalVideosServer) -> None:
    ctx = context()
    result = VideoCreateOperator(
        task_id="create", prompt="a boat", model="sora-2-2025-12-08", **COMMON
    ).execute(ctx)
    assert result["status"] == "completed"
    assert pushed(ctx, "estimated_cost") == []


def test_a_remix_of_an_id_reads_the_source_for_its_length(server: LocalVideosServer) -> None:
    source = completed(12)
    ctx = context()
    VideoRemixOperator(task_id="remix", video=source.id, prompt="at night", **COMMON).execute(ctx)
    assert pushed(ctx, "estimated_cost") == [{"currency": "USD", "amount": 1.2}]


def test_an_extension_bills_its_new_segment(server: LocalVideosServer) -> None:
    source = completed(12)
    ctx = context()
    extend = VideoExtendOperator(
        task_id="extend", video=source.model_dump(), prompt="then", seconds=4, **COMMON
    )
    extend.execute(ctx)
    assert pushed(ctx, "estimated_cost") == [{"currency": "USD", "amount": 0.4}]


# --- max_cost -----------------------------------------------------------------------------------------
def test_max_cost_refuses_a_job_over_it_with_no_request(server: LocalVideosServer) -> None:
    store = Store()
    create = VideoCreateOperator(
        task_id="create", prompt="a boat", model="sora-2-pro", seconds=12, max_cost=3, retries=3, **COMMON
    )
    with pytest.raises(CostLimitError) as info:
        create.execute(context(store))
    message = str(info.value)
    assert "3.6 USD" in message
    assert "exceeds max_cost=3 USD" in message
    assert "Nothing was submitted" in message
    assert requests(server) == 0
    assert store == {}  # not even an intent
    assert retry_decision(create, info.value) == TaskInstanceState.FAILED  # the same estimate next try


def test_max_cost_with_an_unknown_cost_refuses(server: LocalVideosServer) -> None:
    create = VideoCreateOperator(
        task_id="create", prompt="a boat", model="sora-2-2025-12-08", max_cost=100, **COMMON
    )
    with pytest.raises(CostLimitError, match="cannot be estimated") as info:
        create.execute(context())
    assert "no price for model 'sora-2-2025-12-08'" in str(info.value)
    assert requests(server) == 0


def test_max_cost_without_a_price_table_refuses(
    local_server: LocalVideosServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect(monkeypatch, local_server)
    create = VideoCreateOperator(task_id="create", prompt="a boat", max_cost=100, **COMMON)
    with pytest.raises(CostLimitError, match=r"no price table \(extra 'prices'\)"):
        create.execute(context())
    assert requests(local_server) == 0


def test_a_job_within_max_cost_is_submitted(server: LocalVideosServer) -> None:
    create = VideoCreateOperator(task_id="create", prompt="a boat", seconds=8, max_cost=0.8, **COMMON)
    assert create.execute(context())["status"] == "completed"
    assert server.stats()["jobs_created"] == 1


def test_max_cost_is_templated(server: LocalVideosServer) -> None:
    assert "max_cost" in VideoEditOperator.template_fields
    create = VideoCreateOperator(
        task_id="create", prompt="a boat", max_cost="{{ var.value.budget }}", **COMMON
    )
    create.max_cost = "0.25"  # as rendered
    with pytest.raises(CostLimitError, match=r"exceeds max_cost=0\.25"):
        create.execute(context())
    assert requests(server) == 0
    with pytest.raises(ValueError, match="max_cost"):
        VideoCreateOperator(task_id="bad", prompt="a boat", max_cost=-1, **COMMON)


# --- dry_run ------------------------------------------------------------------------------------------
def test_a_dry_run_submits_nothing_and_says_what_it_would(
    server: LocalVideosServer, capsys: pytest.CaptureFixture[str]
) -> None:
    store = Store()
    ctx = context(store)
    create = VideoCreateOperator(
        task_id="create",
        prompt="a boat",
        model="sora-2-pro",
        size="1792x1024",
        seconds=8,
        max_cost=5,
        dry_run=True,
        **COMMON,
    )
    capsys.readouterr()
    result = create.execute(ctx)
    assert result == {
        "dry_run": True,
        "job_kind": "create",
        "request": {
            "method": "POST",
            "path": "videos",
            "fields": {"prompt": "a boat", "model": "sora-2-pro", "size": "1792x1024", "seconds": "8"},
        },
        "estimated_cost": {"currency": "USD", "amount": 4.0},
    }
    assert pushed(ctx, "estimated_cost") == [{"currency": "USD", "amount": 4.0}]
    assert requests(server) == 0
    assert store == {}
    (line,) = [line for line in log_lines(capsys) if "dry run: would submit" in line]
    assert "POST videos" in line
    assert "estimated 4 USD" in line


def test_a_dry_run_of_a_file_edit_sends_nothing(server: LocalVideosServer) -> None:
    result = VideoEditOperator(
        task_id="edit", video=SOURCE_CLIP, prompt="grade", dry_run=True, **COMMON
    ).execute(context())
    assert result["request"]["upload"] == {
        "field": "video",
        "filename": "source_clip.mp4",
        "bytes": Path(SOURCE_CLIP).stat().st_size,
    }
    assert result["estimated_cost"] == {"currency": "USD", "amount": 0.4}
    assert requests(server) == 0


def test_a_dry_run_of_an_id_edit_only_reads_the_source(server: LocalVideosServer) -> None:
    source = completed(8)
    server.reset_stats()
    result = VideoEditOperator(
        task_id="edit", video=source.id, prompt="grade", dry_run=True, **COMMON
    ).execute(context())
    assert result["estimated_cost"] == {"currency": "USD", "amount": 0.8}  # the source's 8 s
    assert server.stats()["requests"] == {"GET /v1/videos/{video_id}": {"200": 1}}  # a read, no POST
    assert server.stats()["jobs_created"] == 0


def test_a_dry_run_fails_for_a_model_not_in_the_price_table(server: LocalVideosServer) -> None:
    create = VideoCreateOperator(
        task_id="create", prompt="a boat", model="sora-2-2025-12-08", dry_run=True, **COMMON
    )
    with pytest.raises(InvalidInputError, match="model 'sora-2-2025-12-08' has no price") as info:
        create.execute(context())
    assert "priced: sora-2, sora-2-pro" in str(info.value)
    assert requests(server) == 0


def test_a_dry_run_fails_over_max_cost(server: LocalVideosServer) -> None:
    create = VideoCreateOperator(
        task_id="create", prompt="a boat", seconds=12, max_cost=1, dry_run=True, **COMMON
    )
    with pytest.raises(CostLimitError, match="exceeds max_cost=1"):
        create.execute(context())
    assert requests(server) == 0


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"prompt": ""}, "prompt: must be a non-empty string"),
        ({"video": "/no/such/clip.mp4"}, "no such file"),
    ],
)
def test_a_dry_run_checks_the_input(server: LocalVideosServer, kwargs: dict[str, Any], problem: str) -> None:
    kwargs = {"video": SOURCE_CLIP, "prompt": "grade", **kwargs}
    with pytest.raises(InvalidInputError, match=problem):
        VideoEditOperator(task_id="edit", dry_run=True, **kwargs, **COMMON).execute(context())
    assert requests(server) == 0


def test_a_dry_run_checks_the_connection(
    local_server: LocalVideosServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect(
        monkeypatch, local_server, prices={"currency": "USD", "models": {"sora-2": {"per_second": "free"}}}
    )
    with pytest.raises(InvalidInputError, match=r"'prices\.models\.sora-2\.per_second'"):
        VideoCreateOperator(task_id="create", prompt="a boat", dry_run=True, **COMMON).execute(context())
    assert requests(local_server) == 0


def test_a_dry_run_without_a_price_table_has_no_estimate(
    local_server: LocalVideosServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect(monkeypatch, local_server)
    result = VideoCreateOperator(
        task_id="create", prompt="a boat", model="any-model", dry_run=True, **COMMON
    ).execute(context())
    assert result["estimated_cost"] is None
    assert requests(local_server) == 0


# --- a gone job resubmitted: the warning says what it costs ------------------------------------------
def test_resubmitting_a_gone_job_warns_with_the_estimate(
    server: LocalVideosServer, capsys: pytest.CaptureFixture[str]
) -> None:
    store = Store()
    store.set("video_id", "video_forgotten")
    capsys.readouterr()
    result = VideoCreateOperator(task_id="create", prompt="a boat", resubmit_if_gone=True, **COMMON).execute(
        context(store)
    )
    assert result["status"] == "completed"
    (line,) = [line for line in log_lines(capsys) if "NEW paid" in line]
    assert "video_forgotten" in line
    assert "estimated cost: 0.4 USD" in line


def test_the_estimated_cost_submitted_is_counted(
    server: LocalVideosServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    counted: list[tuple[str, Any, Any]] = []
    monkeypatch.setattr(
        "airflow.sdk.observability.stats.incr",
        lambda stat, count=None, *a, tags=None, **kw: counted.append((stat, count, tags)),
    )
    VideoCreateOperator(task_id="create", prompt="a boat", seconds=8, **COMMON).execute(context())
    assert ("video_edit.estimated_cost_submitted_milli", 800, {"currency": "USD"}) in counted
