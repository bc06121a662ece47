"""OpenLineage of the operators, against the local server: what ``get_openlineage_facets_on_*``
return (the events Airflow's listener emits from them: tests/e2e/test_lineage_events.py).

Skipped where the ``openlineage`` extra is absent (Python 3.10: the provider needs 3.11)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("airflow.providers.openlineage", reason="the openlineage extra is not installed")

from airflow.sdk.exceptions import TaskDeferred
from test_server_support import API_KEY, Store, wait_until
from test_server_support import task_context as context

from airflow_video_edit.operators import VideoDownloadOperator, VideoEditOperator
from airflow_video_edit.server import LocalVideosServer

pytestmark = pytest.mark.integration

CONN_ID = "openai_videos_default"
SOURCE_CLIP = str(Path(__file__).resolve().parents[2] / "dags" / "data" / "source_clip.mp4")
PROMPT = "Add a warm sunset grade"


@pytest.fixture
def server(local_server: LocalVideosServer, monkeypatch: pytest.MonkeyPatch) -> LocalVideosServer:
    conn = {"conn_type": "openai_videos", "host": local_server.url, "password": API_KEY}
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
    return local_server


def edit(destination: Path, **kwargs: Any) -> VideoEditOperator:
    return VideoEditOperator(
        task_id="edit",
        conn_id=CONN_ID,
        prompt=PROMPT,
        video=SOURCE_CLIP,
        destination=f"{destination}/",
        variants=("video", "thumbnail"),
        poll_interval=0.1,
        deferrable=True,
        **kwargs,
    )


def names(datasets: list[Any]) -> list[tuple[str, str]]:
    return [(d.namespace, d.name) for d in datasets]


def test_a_deferred_edit_reports_its_source_files_and_job_after_resuming(
    server: LocalVideosServer, tmp_path: Path
) -> None:
    ctx = context(Store())
    first = edit(tmp_path)
    start = first.get_openlineage_facets_on_start()
    assert names(start.inputs) == [("file", SOURCE_CLIP)]
    assert start.outputs == []
    job = start.run_facets["videoJob"]
    assert job.promptSha256 == hashlib.sha256(PROMPT.encode()).hexdigest()
    assert PROMPT not in json.dumps(job.__dict__, default=str)  # hashed, never the prompt
    with pytest.raises(TaskDeferred) as deferred:
        first.execute(ctx)

    async def events() -> list[dict[str, Any]]:
        return [event.payload async for event in deferred.value.trigger.run()]

    (event,) = asyncio.run(events())
    # The task resumes in a new process: a new operator, with only its arguments and the event.
    resumed = edit(tmp_path)
    resumed.execute_complete(ctx, event)
    done = resumed.get_openlineage_facets_on_complete(None)
    video_id = event["video_id"]
    assert names(done.inputs) == [("file", SOURCE_CLIP)]
    # The final paths (never the temporary ".<name>.<hex>.part" the atomic write used).
    assert names(done.outputs) == [
        ("file", str(tmp_path / f"{video_id}.mp4")),
        ("file", str(tmp_path / f"{video_id}_thumbnail.webp")),
    ]
    assert all(Path(d.name).is_file() for d in done.outputs)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(Path(d.name).name for d in done.outputs)
    facet = done.run_facets["videoJob"]
    assert (facet.videoId, facet.jobKind, facet.model, facet.status) == (
        video_id,
        "edit",
        "sora-2",
        "completed",
    )
    assert done.run_facets["externalQuery"].externalQueryId == video_id
    assert done.run_facets["externalQuery"].source == server.url


def test_a_source_job_is_an_input_of_the_backend_namespace(server: LocalVideosServer, tmp_path: Path) -> None:
    import openai

    client = openai.OpenAI(base_url=server.url, api_key=API_KEY, max_retries=0)
    source = client.videos.create(prompt="a source clip")
    wait_until(lambda: client.videos.retrieve(source.id).status == "completed")
    download = VideoDownloadOperator(
        task_id="download", conn_id=CONN_ID, video=source.id, destination=str(tmp_path / "clip.mp4")
    )
    download.execute(context(Store()))
    done = download.get_openlineage_facets_on_complete(None)
    assert names(done.inputs) == [(server.url, f"videos/{source.id}")]
    assert names(done.outputs) == [("file", str(tmp_path / "clip.mp4"))]


def test_importing_the_operators_does_not_import_lineage() -> None:
    code = (
        "import sys, airflow_video_edit.operators, airflow_video_edit.sensors; "
        "print('airflow_video_edit.lineage' in sys.modules, 'openlineage.client' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_object_storage_paths_are_datasets_of_their_bucket(tmp_path: Path) -> None:
    from airflow.sdk import ObjectStoragePath

    from airflow_video_edit.lineage import file_dataset

    class S3Path:  # what an ObjectStoragePath of s3 shows (s3fs is not installed here)
        protocol = "s3"

        def __str__(self) -> str:
            return "s3://aws_default@media-bucket/clips/in.mp4"

    bucket = file_dataset(S3Path())
    assert (bucket.namespace, bucket.name) == ("s3://media-bucket", "clips/in.mp4")
    local = file_dataset(ObjectStoragePath(f"file://{tmp_path}/a.mp4"))
    assert (local.namespace, local.name) == ("file", f"{tmp_path}/a.mp4")
    assert (file_dataset("s3://b/k.mp4").namespace, file_dataset("s3://b/k.mp4").name) == ("s3://b", "k.mp4")
