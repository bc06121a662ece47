"""The job family against the bundled local server: create, edit, remix, extend, the sensor,
download and delete. Each kind is submitted, waited for (in the worker and deferred), resumed
after a killed try without a second job, and checked before any request is sent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import DAG, Asset, PokeReturnValue
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout, TaskDeferred

from airflow_video_edit.errors import InvalidInputError, VideoJobFailed
from airflow_video_edit.hooks import OpenAIVideosHook
from airflow_video_edit.operators import (
    VideoCreateOperator,
    VideoDeleteOperator,
    VideoDownloadOperator,
    VideoEditOperator,
    VideoExtendOperator,
    VideoJobOperator,
    VideoRemixOperator,
)
from airflow_video_edit.operators.outputs import VARIANT_SUFFIXES, destination_for, file_stem
from airflow_video_edit.sensors import VideoJobSensor
from airflow_video_edit.server import LocalVideosServer
from airflow_video_edit.triggers import VideoJobTrigger
from airflow_video_edit.waiting import timeout_event

from .task_fakes import (
    CONN_ID,
    FakeStore,
    jobs_created,
    make_context,
    probe,
    run_trigger,
)
from .task_fakes import local_server as local_server  # the "server" fixture: a real local server


def requests(server: LocalVideosServer) -> int:
    return sum(sum(codes.values()) for codes in server.stats()["requests"].values())


def completed_job(server: LocalVideosServer) -> dict[str, Any]:
    """A finished job to build on (remix, extend, download, delete), made through the Hook."""
    op = VideoCreateOperator(
        task_id="base", prompt="A lighthouse at dusk", conn_id=CONN_ID, poll_interval=0.1
    )
    op.deferrable = False
    result: dict[str, Any] = op.execute(make_context())
    return result


KINDS: dict[str, Any] = {
    "create": lambda upstream, **kw: VideoCreateOperator(
        prompt="A fox in snow", size="1280x720", seconds=4, **kw
    ),
    "edit": lambda upstream, **kw: VideoEditOperator(prompt="Warm grade", video=upstream, **kw),
    "remix": lambda upstream, **kw: VideoRemixOperator(prompt="Make it night", video=upstream, **kw),
    "extend": lambda upstream, **kw: VideoExtendOperator(
        prompt="The fox runs on", video=upstream["id"], seconds=8, **kw
    ),
}


def build(kind: str, upstream: dict[str, Any] | None, **kwargs: Any) -> VideoJobOperator:
    kwargs.setdefault("deferrable", False)
    bad = {name: kwargs.pop(name) for name in ("prompt", "video", "seconds") if name in kwargs}
    op: VideoJobOperator = KINDS[kind](upstream, task_id=kind, conn_id=CONN_ID, poll_interval=0.1, **kwargs)
    for name, value in bad.items():  # input a DAG author could template in: checked at run time
        setattr(op, name, value)
    return op


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_kind_runs_in_the_worker_and_downloads(
    server: LocalVideosServer, tmp_path: Path, kind: str
) -> None:
    upstream = completed_job(server) if kind != "create" else None
    before = jobs_created(server)
    asset = Asset(name=f"{kind}_clips", uri=f"file:///clips/{kind}")
    op = build(kind, upstream, destination=f"{tmp_path}/", variants=("video", "thumbnail"), asset=asset)
    context = make_context()
    result = op.execute(context)
    assert result["status"] == "completed"
    assert jobs_created(server) == before + 1
    ti = context["ti"]
    assert ti.values("video_id")[0] == result["id"]
    assert ti.values("job")[0]["id"] == result["id"]  # pushed at submit, before the wait
    outputs = ti.values("outputs")[-1]
    assert set(outputs) == {"video", "thumbnail"}
    assert probe(outputs["video"])[0] > 0
    assert Path(outputs["thumbnail"]).read_bytes()[8:12] == b"WEBP"
    extra = context["outlet_events"][asset].extra
    assert extra["video_id"] == result["id"]
    assert extra["path"] == outputs["video"]
    if kind == "remix":
        assert result["remixed_from_video_id"] == upstream["id"]  # type: ignore[index]
    if kind == "extend":
        assert result["seconds"] == "12"  # a 4 s source and an 8 s segment: the stitched total


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_kind_defers_to_the_trigger(server: LocalVideosServer, kind: str) -> None:
    upstream = completed_job(server) if kind != "create" else None
    op = build(kind, upstream, deferrable=True)
    context = make_context()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    trigger = deferred.value.trigger
    assert isinstance(trigger, VideoJobTrigger)
    assert trigger.video_id == context["ti"].values("video_id")[0]
    assert set(trigger.serialize()[1]) == {
        "video_id",
        "conn_id",
        "poll_interval",
        "deadline",
        "cancel_on_kill",
    }
    result = op.execute_complete(context, run_trigger(trigger))
    assert result["status"] == "completed"
    assert result["id"] == trigger.video_id


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_kind_resumes_after_a_killed_try(
    server: LocalVideosServer, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    upstream = completed_job(server) if kind != "create" else None
    before = jobs_created(server)
    store = FakeStore()
    first = build(kind, upstream)

    def killed(*args: Any, **kwargs: Any) -> Any:
        raise SystemExit("worker died after the submit")

    monkeypatch.setattr(first, "poll_until_complete", killed)
    with pytest.raises(SystemExit):
        first.execute(make_context(store))
    stored = store.get("video_id")
    assert stored
    second = build(kind, upstream)
    result = second.execute(make_context(store))
    assert result["id"] == stored
    assert jobs_created(server) == before + 1  # one paid job for two tries
    assert store.get("video_id") is None  # delivered: a clear submits anew


@pytest.mark.parametrize(
    ("kind", "bad", "argument"),
    [
        ("create", {"prompt": ""}, "prompt"),
        ("create", {"seconds": "four"}, "seconds"),
        ("edit", {"video": "no such/clip.mp4"}, "video"),
        ("remix", {"video": {"id": "has space"}}, "video"),
        ("remix", {"prompt": "  "}, "prompt"),
        ("extend", {"seconds": None}, "seconds"),
    ],
)
def test_bad_input_fails_before_any_request(
    server: LocalVideosServer, kind: str, bad: dict[str, Any], argument: str
) -> None:
    op = build(kind, {"id": "video_upstream"}, **bad)
    before = requests(server)
    with pytest.raises(InvalidInputError) as info:
        op.execute(make_context())
    assert info.value.param == argument
    assert argument in str(info.value)
    assert requests(server) == before


def test_every_kind_is_templated_and_mappable() -> None:
    assert {"prompt", "model", "size", "seconds", "input_reference", "destination"} <= set(
        VideoCreateOperator.template_fields
    )
    assert {"prompt", "video", "destination"} <= set(VideoRemixOperator.template_fields)
    assert {"prompt", "video", "seconds", "model", "destination"} <= set(VideoExtendOperator.template_fields)
    with DAG("mapped_family", schedule=None):
        for kind, mapped in [
            ("create", VideoCreateOperator.partial(task_id="c", size="1280x720").expand(prompt=["a", "b"])),
            ("remix", VideoRemixOperator.partial(task_id="r", prompt="p").expand(video=["v1", "v2"])),
            ("extend", VideoExtendOperator.partial(task_id="e", prompt="p", seconds=8).expand(video=["v1"])),
            ("download", VideoDownloadOperator.partial(task_id="d", destination="/x/").expand(video=["v1"])),
            ("delete", VideoDeleteOperator.partial(task_id="x").expand(video=["v1"])),
            ("sensor", VideoJobSensor.partial(task_id="s").expand(video_id=["v1"])),
        ]:
            assert type(mapped).__name__ == "MappedOperator", kind
    assert VideoCreateOperator.external_id_key == VideoEditOperator.external_id_key == "video_id"
    assert VideoRemixOperator.external_id_key == VideoExtendOperator.external_id_key == "video_id"


# --- the sensor -------------------------------------------------------------------------------
def test_sensor_pokes_until_the_job_completes(server: LocalVideosServer) -> None:
    job = OpenAIVideosHook(CONN_ID).create_video("A sensor's job")
    sensor = VideoJobSensor(task_id="wait", video_id={"id": job.id}, conn_id=CONN_ID, deferrable=False)
    context = make_context()
    assert sensor.poke(context) is False
    result = None
    for _ in range(200):
        result = sensor.poke(context)
        if result:
            break
        server.store.jobs[job.id].created_at -= 0.1  # time moves on for the job only
    assert isinstance(result, PokeReturnValue)
    assert result.xcom_value["status"] == "completed"
    assert context["ti"].values("video_id") == [job.id]


def test_sensor_executes_in_poke_mode(server: LocalVideosServer) -> None:
    job = OpenAIVideosHook(CONN_ID).create_video("A sensor's job")
    sensor = VideoJobSensor(
        task_id="wait", video_id=job.id, conn_id=CONN_ID, poke_interval=0.1, deferrable=False
    )
    assert sensor.execute(make_context())["id"] == job.id


def test_sensor_defers_with_the_same_trigger(server: LocalVideosServer) -> None:
    job = OpenAIVideosHook(CONN_ID).create_video("A deferred sensor's job")
    sensor = VideoJobSensor(
        task_id="wait", video_id=job.id, conn_id=CONN_ID, poke_interval=0.1, deferrable=True
    )
    context = make_context()
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context)
    trigger = deferred.value.trigger
    assert isinstance(trigger, VideoJobTrigger)
    assert trigger.video_id == job.id
    assert trigger.poll_interval == 0.1
    assert trigger.serialize()[1]["cancel_on_kill"] is False  # not its job: never deleted
    assert sensor.execute_complete(context, run_trigger(trigger))["status"] == "completed"
    # A job already finished: no deferral, the job at once.
    assert sensor.execute(make_context())["id"] == job.id


def test_sensor_failures(server: LocalVideosServer) -> None:
    job = OpenAIVideosHook(CONN_ID).create_video("Doomed [fail-job=moderation_blocked]")
    sensor = VideoJobSensor(
        task_id="wait", video_id=job.id, conn_id=CONN_ID, poke_interval=0.1, deferrable=True
    )
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(make_context())
    event = run_trigger(deferred.value.trigger)
    assert event["event"] == "failed"
    with pytest.raises(AirflowFailException, match="moderation_blocked"):
        sensor.execute_complete(make_context(), event)
    with pytest.raises(AirflowSensorTimeout, match="gave up waiting"):
        sensor.execute_complete(make_context(), timeout_event(job.id, None))


# --- download and delete ----------------------------------------------------------------------
def test_download_operator(server: LocalVideosServer, tmp_path: Path) -> None:
    job = completed_job(server)
    before = jobs_created(server)
    asset = Asset(name="downloads", uri="file:///downloads")
    op = VideoDownloadOperator(
        task_id="download",
        video=job,
        destination=str(tmp_path / "clip.mp4"),
        variants=["video", "spritesheet"],
        asset=asset,
        conn_id=CONN_ID,
    )
    context = make_context()
    outputs = op.execute(context)
    assert outputs == {
        "video": str(tmp_path / "clip.mp4"),
        "spritesheet": str(tmp_path / "clip_spritesheet.webp"),
    }
    assert probe(outputs["video"])[0] > 0
    assert context["outlet_events"][asset].extra["video_id"] == job["id"]
    assert jobs_created(server) == before  # no paid job
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "clip.mp4",
        "clip_spritesheet.webp",
    ]  # no .part left


def test_download_of_an_unfinished_job_says_so(server: LocalVideosServer, tmp_path: Path) -> None:
    job = OpenAIVideosHook(CONN_ID).create_video("Not yet")
    op = VideoDownloadOperator(task_id="download", video=job.id, destination=f"{tmp_path}/", conn_id=CONN_ID)
    with pytest.raises(VideoJobFailed, match="not completed"):
        op.execute(make_context())
    assert list(tmp_path.iterdir()) == []


def test_delete_operator_cleans_up_and_404_counts_as_done(server: LocalVideosServer) -> None:
    jobs = [completed_job(server), completed_job(server)]
    op = VideoDeleteOperator(task_id="cleanup", video=jobs, conn_id=CONN_ID)
    assert op.execute(make_context()) == [job["id"] for job in jobs]
    assert set(server.store.jobs).isdisjoint(job["id"] for job in jobs)
    assert op.execute(make_context()) == [job["id"] for job in jobs]  # a retry: already gone, done
    before = requests(server)
    with pytest.raises(InvalidInputError, match="video"):
        VideoDeleteOperator(task_id="x", video=[jobs[0], "bad id"], conn_id=CONN_ID).execute(make_context())
    assert requests(server) == before  # every id checked before the first delete


# --- file names for any id --------------------------------------------------------------------
# Like LiteLLM's rewritten ids: about 240 characters of base64 after the prefix.
LITELLM_ID = (
    "video_" + "bGl0ZWxsbTpjdXN0b21fbGxtX3Byb3ZpZGVyOmF6dXJlO21vZGVsX2lkOnNvcmEtMjt2aWRlb19pZDp2aWRl" * 3
)


@pytest.mark.parametrize(
    "video_id", [LITELLM_ID, 'video_a:b*c?d|e<f>g"h\\\\i', "CON", "..hidden", "vidéo_ünïcode", "x" * 97]
)
def test_file_names_fit_any_id(tmp_path: Path, video_id: str) -> None:
    names = {variant: destination_for(f"{tmp_path}/", video_id, variant).name for variant in VARIANT_SUFFIXES}
    for name in names.values():
        temporary = f".{name}.0123abcd.part"  # the atomic write's temporary name
        assert len(temporary.encode()) < 200
        assert all((c.isalnum() and c.isascii()) or c in "._-" for c in name), name
        assert not name.startswith(".")
        (tmp_path / name).write_bytes(b"ok")  # the filesystem takes it
    assert names == {v: destination_for(f"{tmp_path}/", video_id, v).name for v in VARIANT_SUFFIXES}
    assert len(set(names.values())) == len(names)
    assert file_stem(video_id) != file_stem(video_id + "2")


def test_plain_ids_keep_their_names(tmp_path: Path) -> None:
    assert destination_for(f"{tmp_path}/", "video_123", "video").name == "video_123.mp4"
    assert destination_for(f"{tmp_path}/", "video_123", "thumbnail").name == "video_123_thumbnail.webp"
