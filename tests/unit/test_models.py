"""The API models: the spec's examples parse, and other backends' values are tolerated."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from airflow_video_edit import models

# The official OpenAPI subset lives in ../shared/spec beside the repository.
SPEC = Path(__file__).resolve().parents[3] / "shared" / "spec" / "openai-videos.openapi.yaml"


def _spec() -> dict[str, Any]:
    return dict(yaml.safe_load(SPEC.read_text()))


def _response_examples() -> list[tuple[str, str, Any]]:
    examples = []
    for route, operations in _spec()["paths"].items():
        for method, operation in operations.items():
            if not isinstance(operation, dict):
                continue
            text = operation.get("x-oaiMeta", {}).get("examples", {}).get("response")
            if isinstance(text, str) and text.strip():
                examples.append((route, method, json.loads(text)))
    return examples


def test_spec_response_examples_parse() -> None:
    examples = _response_examples()
    assert len(examples) >= 3
    for route, method, body in examples:
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


def test_spec_schema_examples_parse() -> None:
    schemas = _spec()["components"]["schemas"]
    statuses = schemas["VideoStatus"]["enum"]
    assert set(statuses) == {"queued", "in_progress", "completed", "failed"}
    assert set(schemas["VideoSize"]["enum"]) == set(models.KNOWN_SIZES)
    assert set(schemas["VideoSeconds"]["enum"]) == set(models.KNOWN_SECONDS)
    for status in statuses:
        video = models.Video.model_validate({"id": "video_1", "status": status})
        assert video.is_terminal == (status in ("completed", "failed"))


def test_every_spec_model_is_known() -> None:
    schemas = _spec()["components"]["schemas"]
    enums = [option["enum"] for option in schemas["VideoModel"]["anyOf"] if "enum" in option]
    assert enums
    assert set(enums[0]) == set(models.KNOWN_MODELS)


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
