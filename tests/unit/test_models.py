"""The API models: the spec's examples parse, and other backends' values are tolerated."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import pytest

from airflow_video_edit import models

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = Path(__file__).with_name("spec_facts.json")


def _spec_path() -> Path | None:
    """The official OpenAPI text: ``$VIDEOS_OPENAPI_SPEC``, else ``../shared/spec`` if it is there."""
    if os.environ.get("VIDEOS_OPENAPI_SPEC"):
        return Path(os.environ["VIDEOS_OPENAPI_SPEC"])
    beside = ROOT.parent / "shared" / "spec" / "openai-videos.openapi.yaml"
    return beside if beside.is_file() else None


def _extractor() -> Any:
    spec = importlib.util.spec_from_file_location("spec_facts", ROOT / "scripts" / "spec_facts.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def facts() -> dict[str, Any]:
    """The spec's facts: read from the spec when it is there, else the fixture kept in the repo."""
    path = _spec_path()
    if path is None:
        return dict(json.loads(FIXTURE.read_text()))
    return dict(_extractor().facts_from_file(path))


def test_the_kept_facts_match_the_spec() -> None:
    """tests/unit/spec_facts.json is what scripts/spec_facts.py makes of the spec (CI has the spec)."""
    path = _spec_path()
    if path is None:
        pytest.skip("no spec here (../shared/spec or $VIDEOS_OPENAPI_SPEC): the kept facts are used")
    assert _extractor().facts_from_file(path) == json.loads(FIXTURE.read_text()), (
        "tests/unit/spec_facts.json is stale: python scripts/spec_facts.py SPEC > tests/unit/spec_facts.json"
    )


def test_spec_response_examples_parse(facts: dict[str, Any]) -> None:
    examples = facts["response_examples"]
    assert len(examples) >= 3
    for example in examples:
        route, method, body = example["route"], example["method"], example["body"]
        if body.get("object") == "list":
            page = models.VideoList.model_validate(body)
            assert page.data
            assert all(isinstance(video, models.Video) for video in page.data)
        else:
            video = models.Video.model_validate(body)
            assert video.id == body["id"], (route, method)
            assert video.status == body["status"]
            # Unknown fields (e.g. "quality") are kept, not rejected.
            for key in body.keys() - models.Video.model_fields.keys():
                assert getattr(video, key) == body[key]


def test_spec_schema_examples_parse(facts: dict[str, Any]) -> None:
    enums = facts["enums"]
    statuses = enums["VideoStatus"]
    assert set(statuses) == {"queued", "in_progress", "completed", "failed"}
    assert set(enums["VideoSize"]) == set(models.KNOWN_SIZES)
    assert set(enums["VideoSeconds"]) == set(models.KNOWN_SECONDS)
    for status in statuses:
        video = models.Video.model_validate({"id": "video_1", "status": status})
        assert video.is_terminal == (status in ("completed", "failed"))


def test_every_spec_model_is_known(facts: dict[str, Any]) -> None:
    assert facts["enums"]["VideoModel"]
    assert set(facts["enums"]["VideoModel"]) == set(models.KNOWN_MODELS)


def test_unknown_values_are_kept_as_strings() -> None:
    video = models.Video.model_validate(
        {
            "id": "veo-xyz",
            "status": "preprocessing",
            "model": "veo-3.1",
            "size": "1920x1080",
            "seconds": "25",
            "progress": None,
            "extra_field": {"a": 1},
        }
    )
    assert (video.model, video.size, video.seconds, video.status) == (
        "veo-3.1",
        "1920x1080",
        "25",
        "preprocessing",
    )
    assert video.progress == 0
    assert not video.is_terminal
    assert not video.succeeded
    assert not video.failed
    assert video.extra_field == {"a": 1}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("seconds", "expected"), [(8, "8"), (8.0, "8"), (12.5, "12.5"), ("4", "4"), (None, None)]
)
def test_numeric_seconds_become_strings(seconds: Any, expected: str | None) -> None:
    assert (
        models.Video.model_validate({"id": "v", "status": "queued", "seconds": seconds}).seconds == expected
    )


@pytest.mark.parametrize(("progress", "expected"), [(12.5, 12), (99.6, 100), (0, 0), (None, 0), (50, 50)])
def test_float_progress(progress: Any, expected: int) -> None:
    assert (
        models.Video.model_validate({"id": "v", "status": "in_progress", "progress": progress}).progress
        == expected
    )


def test_status_predicates() -> None:
    done = models.Video.model_validate({"id": "v", "status": "completed"})
    failed = models.Video.model_validate(
        {"id": "v", "status": "failed", "error": {"code": "moderation_blocked", "message": "blocked"}}
    )
    running = models.Video.model_validate({"id": "v", "status": "in_progress"})
    assert (done.is_terminal, done.succeeded, done.failed) == (True, True, False)
    assert (failed.is_terminal, failed.succeeded, failed.failed) == (True, False, True)
    assert (running.is_terminal, running.succeeded, running.failed) == (False, False, False)
    assert failed.error is not None
    assert failed.error.code == "moderation_blocked"


def test_video_error_tolerates_nulls() -> None:
    video = models.Video.model_validate(
        {"id": "v", "status": "failed", "error": {"code": None, "message": None}}
    )
    assert video.error is not None
    assert (video.error.code, video.error.message) == ("", "")


def test_video_requires_id_and_status() -> None:
    with pytest.raises(ValueError, match="id"):
        models.Video.model_validate({"status": "queued"})
    with pytest.raises(ValueError, match="status"):
        models.Video.model_validate({"id": "v"})


def test_video_list() -> None:
    page = models.VideoList.model_validate(
        {
            "object": "list",
            "data": [{"id": "a", "status": "completed"}, {"id": "b", "status": "queued"}],
            "first_id": "a",
            "last_id": "b",
            "has_more": True,
        }
    )
    assert [v.id for v in page.data] == ["a", "b"]
    assert page.has_more
    assert page.last_id == "b"
    empty = models.VideoList.model_validate({"object": "list"})
    assert empty.data == []
    assert not empty.has_more


def test_deleted_video_and_character() -> None:
    deleted = models.DeletedVideo.model_validate(
        {"id": "video_1", "object": "video.deleted", "deleted": True}
    )
    assert deleted.deleted
    assert deleted.id == "video_1"
    character = models.VideoCharacter.model_validate({"id": "char_1", "name": "Mossy", "created_at": 1})
    assert (character.id, character.name, character.created_at) == ("char_1", "Mossy", 1)
    assert models.VideoCharacter.model_validate({}).id is None


def test_error_body() -> None:
    body = models.ErrorBody.model_validate(
        {"error": {"message": "Rate limited", "type": "requests", "param": None, "code": 429}}
    )
    assert body.error.code == "429"
    assert body.error.message == "Rate limited"
    with pytest.raises(ValueError, match="error"):
        models.ErrorBody.model_validate({"message": "no envelope"})


def test_round_trip_keeps_extra_fields() -> None:
    body = {"id": "v", "status": "queued", "quality": "high"}
    dumped = models.Video.model_validate(body).model_dump(exclude_none=True)
    assert dumped["quality"] == "high"
    assert models.Video.model_validate(dumped).model_dump() == models.Video.model_validate(body).model_dump()
