"""The price table (connection extra ``prices``) and the estimate of each job kind, without a server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from airflow_video_edit import calls, costs
from airflow_video_edit.errors import CostLimitError, InvalidInputError, NotFoundError
from airflow_video_edit.models import Video
from airflow_video_edit.settings import ModelPrice, PriceTable, settings_from_connection

SOURCE_CLIP = str(Path(__file__).resolve().parents[2] / "dags" / "data" / "source_clip.mp4")
PRICES = {
    "currency": "USD",
    "models": {
        "sora-2": {"per_second": 0.10},
        "sora-2-pro": {"per_second": 0.30, "per_size": {"1792x1024": 0.50}},
    },
}


def settings(prices: Any) -> Any:
    return settings_from_connection(
        host=None, port=None, schema=None, password=None, extra={"prices": prices}
    )


def table() -> PriceTable:
    prices = settings(PRICES).prices
    assert prices is not None
    return prices


# --- the extra --------------------------------------------------------------------------------------
def test_the_price_table_is_parsed_once_in_settings() -> None:
    prices = table()
    assert prices.currency == "USD"
    assert prices.price("sora-2") == ModelPrice(0.10)
    pro = prices.price("sora-2-pro")
    assert pro is not None
    assert pro.rate("1792x1024") == 0.50
    assert pro.rate("720x1280") == 0.30
    assert settings(json.dumps(PRICES)).prices == prices  # the form may hand it over as text
    assert settings(None).prices is None
    assert settings_from_connection(host=None, port=None, schema=None, password=None, extra={}).prices is None


def test_settings_with_other_prices_share_a_pool() -> None:
    assert settings(PRICES) == settings(None)
    assert hash(settings(PRICES)) == hash(settings(None))


@pytest.mark.parametrize(
    ("prices", "field"),
    [
        ("{not json", "'prices' is not valid JSON"),
        ([1], "'prices' must be a JSON object"),
        ({"currency": "USD", "models": {}, "tax": 1}, "'prices' has unknown field(s) ['tax']"),
        ({"models": {"sora-2": {"per_second": 1}}}, "'prices.currency'"),
        ({"currency": "USD"}, "'prices.models'"),
        ({"currency": "USD", "models": {"sora-2": 0.1}}, "'prices.models.sora-2' must be a JSON object"),
        ({"currency": "USD", "models": {"sora-2": {"per_sec": 0.1}}}, "'prices.models.sora-2' has unknown"),
        (
            {"currency": "USD", "models": {"sora-2": {"per_second": "cheap"}}},
            "'prices.models.sora-2.per_second'",
        ),
        ({"currency": "USD", "models": {"sora-2": {"per_second": -1}}}, "'prices.models.sora-2.per_second'"),
        (
            {"currency": "USD", "models": {"sora-2": {"per_second": True}}},
            "'prices.models.sora-2.per_second'",
        ),
        ({"currency": "USD", "models": {"sora-2": {"per_size": {"720x1280": None}}}}, "per_size.720x1280'"),
        ({"currency": "USD", "models": {"sora-2": {}}}, "'prices.models.sora-2' needs per_second"),
    ],
)
def test_a_bad_price_table_names_the_field(prices: Any, field: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        settings(prices)
    assert field in str(info.value)
    assert info.value.param == "prices"


def test_the_form_declares_the_prices_field() -> None:
    import airflow_video_edit

    (connection,) = airflow_video_edit.get_provider_info()["connection-types"]
    field = connection["conn-fields"]["prices"]
    assert field["schema"]["type"] == ["object", "null"]
    assert "per_second" in field["description"]


# --- the estimate of each kind ---------------------------------------------------------------------
def test_a_create_uses_the_spec_defaults() -> None:
    estimate = costs.estimate(calls.create_video("a boat"), table(), default_model=None)
    assert (estimate.model, estimate.size, estimate.seconds) == ("sora-2", "720x1280", 4.0)
    assert estimate.value() == {"currency": "USD", "amount": 0.4}


def test_a_create_uses_its_model_size_and_seconds_and_a_size_rate() -> None:
    call = calls.create_video("a boat", model="sora-2-pro", size="1792x1024", seconds=8)
    assert costs.estimate(call, table(), default_model=None).value() == {"currency": "USD", "amount": 4.0}
    other_size = calls.create_video("a boat", model="sora-2-pro", size="1280x720", seconds=12)
    assert costs.estimate(other_size, table(), default_model=None).amount == pytest.approx(3.6)


def test_the_connections_default_model_is_priced() -> None:
    estimate = costs.estimate(calls.create_video("a boat", seconds=8), table(), default_model="sora-2-pro")
    assert estimate.model == "sora-2-pro"
    assert estimate.amount == pytest.approx(2.4)


@pytest.mark.parametrize("prices", [None, "unpriced"])
def test_no_price_no_estimate(prices: str | None) -> None:
    call = calls.create_video("a boat", model="veo-3")
    estimate = costs.estimate(call, None if prices is None else table(), default_model=None)
    assert estimate.value() is None
    assert estimate.unknown is not None
    assert ("no price table" if prices is None else "no price for model 'veo-3'") in estimate.unknown


def test_an_edit_of_a_file_bills_the_files_length() -> None:
    estimate = costs.estimate(calls.edit_video(SOURCE_CLIP, "grade"), table(), default_model=None)
    assert (estimate.size, estimate.seconds) == ("720x1280", 4.0)
    assert estimate.amount == pytest.approx(0.4)


def test_an_edit_of_an_upstream_job_bills_its_length_without_a_read() -> None:
    upstream = {
        "id": "video_1",
        "status": "completed",
        "model": "sora-2-pro",
        "size": "1792x1024",
        "seconds": "8",
    }

    def read(video_id: str) -> Video:
        raise AssertionError("no read needed")

    call = calls.edit_video(upstream, "grade")
    estimate = costs.estimate(call, table(), default_model=None, source_argument=upstream, read=read)
    assert (estimate.model, estimate.amount) == ("sora-2-pro", 4.0)


def test_a_remix_of_an_id_reads_the_source() -> None:
    seen: list[str] = []

    def read(video_id: str) -> Video:
        seen.append(video_id)
        return Video(id=video_id, status="completed", model="sora-2", size="720x1280", seconds="12")

    call = calls.remix_video("video_abc", "at night")
    estimate = costs.estimate(call, table(), default_model=None, source_argument="video_abc", read=read)
    assert seen == ["video_abc"]
    assert estimate.amount == pytest.approx(1.2)
    # Without a price table there is nothing to estimate, and the source is not read.
    assert (
        costs.estimate(call, None, default_model=None, source_argument="video_abc", read=read).amount is None
    )
    assert seen == ["video_abc"]


def test_a_source_that_cannot_be_read_gives_no_estimate() -> None:
    def read(video_id: str) -> Video:
        raise NotFoundError("No video found", status_code=404)

    call = calls.edit_video("video_gone", "grade")
    estimate = costs.estimate(call, table(), default_model=None, source_argument="video_gone", read=read)
    assert estimate.amount is None
    assert "video_gone could not be read" in str(estimate.unknown)


def test_an_extension_bills_its_new_segment() -> None:
    upstream = {
        "id": "video_1",
        "status": "completed",
        "model": "sora-2",
        "size": "720x1280",
        "seconds": "12",
    }
    call = calls.extend_video(upstream, "then the sea", 8)
    estimate = costs.estimate(call, table(), default_model=None, source_argument=upstream)
    assert (estimate.seconds, estimate.amount) == (8.0, 0.8)


def test_a_file_whose_length_cannot_be_read_gives_no_estimate(tmp_path: Path) -> None:
    clip = tmp_path / "clip.webm"
    clip.write_bytes(b"\x1a\x45\xdf\xa3 not an mp4 at all")
    estimate = costs.estimate(calls.edit_video(str(clip), "grade"), table(), default_model=None)
    assert estimate.amount is None
    assert "clip.webm" in str(estimate.unknown)


# --- the cap ---------------------------------------------------------------------------------------
def test_the_cap() -> None:
    estimate = costs.estimate(calls.create_video("a boat", seconds=8), table(), default_model=None)
    costs.check_cap(estimate, None, "video create job")
    costs.check_cap(estimate, 0.8, "video create job")
    costs.check_cap(estimate, "1.5", "video create job")  # a rendered template
    with pytest.raises(
        CostLimitError, match=r"0\.8 USD .* exceeds max_cost=0\.5 USD\. Nothing was submitted"
    ):
        costs.check_cap(estimate, 0.5, "video create job")
    unknown = costs.estimate(calls.create_video("a boat", model="veo-3"), table(), default_model=None)
    with pytest.raises(CostLimitError, match=r"cannot be estimated: .*no price for model 'veo-3'"):
        costs.check_cap(unknown, 10, "video create job")
    with pytest.raises(InvalidInputError, match="max_cost: must be a non-negative number"):
        costs.check_cap(estimate, "lots", "video create job")
