"""What a job will cost, before it is submitted: the request's terms times the connection's prices.

There are no built-in prices (OpenAI's went with its API, and gateways bill their own): the
connection extra ``prices`` (:class:`~airflow_video_edit.settings.PriceTable`) is the only source.
An estimate is ``rate(model, size) x seconds``, where the request says:

- a create: its ``model`` (else the connection's ``default_model``, else the spec's ``sora-2``),
  ``size`` (else ``720x1280``) and ``seconds`` (else 4);
- an extension: the new segment's ``seconds`` (what it bills), the model as for a create (else the
  source's), the source's size;
- an edit or a remix: the source's length and size (an edit keeps them; a remix also keeps the
  model). The source is read where it is known: an upstream job's dict (``other.output``) says
  them; an id is looked up (``GET /videos/{id}``: a read, it costs nothing), only when a price
  table is configured; an uploaded MP4/MOV file is read locally (its ``mvhd`` and ``tkhd``
  boxes). A source whose length cannot be known (a WebM, a failed read) gives no estimate.

No price for the model (or its size), no table, or an unknown length: no estimate (``None``),
and ``max_cost`` then refuses to submit: an unknown cost cannot be bounded.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import unquote

from airflow_video_edit import models
from airflow_video_edit.errors import CostLimitError, InvalidInputError, VideoAPIError

if TYPE_CHECKING:
    from airflow_video_edit.calls import Call, UploadSource
    from airflow_video_edit.settings import PriceTable

# Reads a source job by id: the Hook's ``get_video``.
ReadVideo = Callable[[str], models.Video]


@dataclass(frozen=True)
class Source:
    """What is known of a job's source video."""

    model: str | None = None
    size: str | None = None
    seconds: float | None = None
    # Why the length is unknown, when it is.
    unknown: str | None = None


@dataclass(frozen=True)
class Estimate:
    """A job's estimated cost, or why there is none (``amount`` is None, ``unknown`` says why)."""

    model: str
    size: str | None
    seconds: float | None
    currency: str | None = None
    rate: float | None = None
    amount: float | None = None
    unknown: str | None = None

    def value(self) -> dict[str, Any] | None:
        """What XCom, the Asset extra and manifests carry: ``{"currency", "amount"}``."""
        return None if self.amount is None else {"currency": self.currency, "amount": self.amount}

    def describe(self) -> str:
        if self.amount is None:
            return f"unknown ({self.unknown})"
        terms = f"{self.model}, {self.size}, {self.seconds:g} s at {self.rate:g} {self.currency}/s"
        return f"{self.amount:g} {self.currency} ({terms})"


# --- the source -----------------------------------------------------------------------------------
def _seconds(value: Any) -> float | None:
    try:
        return None if value in (None, "") else float(value)
    except (TypeError, ValueError):
        return None


def source_of(call: Call[Any], argument: Any, read: ReadVideo | None) -> Source:
    """The source of an edit, remix or extension: from an upstream job's dict, a read of its id
    (``read``; None: not looked up), or the uploaded file itself."""
    if isinstance(argument, Mapping) and argument.get("seconds") not in (None, ""):
        return Source(argument.get("model"), argument.get("size"), _seconds(argument.get("seconds")))
    if call.upload is not None and call.upload[0] == "video":
        return probe(call.upload[1])
    source_id = source_id_of(call)
    if source_id is None:
        return Source(unknown="no source video in the request")
    if read is None:
        return Source(unknown=f"the source {source_id} was not looked up")
    try:
        video = read(source_id)
    except VideoAPIError as exc:
        return Source(unknown=f"the source {source_id} could not be read: {exc}")
    return Source(video.model, video.size, _seconds(video.seconds), None if video.seconds else "no seconds")


def source_id_of(call: Call[Any]) -> str | None:
    """The id of the source video a request names (a remix's path, an edit's ``video.id``)."""
    if call.path.endswith("/remix"):
        return unquote(call.path.split("/")[1])
    reference = (call.json or {}).get("video")
    return str(reference["id"]) if isinstance(reference, Mapping) and reference.get("id") else None


# --- an MP4/MOV file's length and size, read from its boxes -----------------------------------------
def _boxes(handle: IO[bytes], start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, end) of each box between ``start`` and ``end``."""
    position = start
    while position + 8 <= end:
        handle.seek(position)
        header = handle.read(8)
        if len(header) < 8:
            return
        size, kind = struct.unpack(">I4s", header)
        payload = position + 8
        if size == 1:
            size = struct.unpack(">Q", handle.read(8))[0]
            payload += 8
        elif size == 0:
            size = end - position
        if size < payload - position:
            return
        yield kind, payload, position + size
        position += size


def probe(upload: UploadSource) -> Source:
    """The length (``mvhd``) and the first video track's size (``tkhd``) of an MP4/MOV upload."""
    try:
        with upload.open() as handle:
            seconds, size = None, None
            for kind, start, end in _boxes(handle, 0, upload.size):
                if kind != b"moov":
                    continue
                for child, child_start, child_end in _boxes(handle, start, end):
                    handle.seek(child_start)
                    if child == b"mvhd":
                        version = handle.read(4)[0]
                        handle.seek(child_start + (20 if version == 1 else 12))
                        fmt = ">IQ" if version == 1 else ">II"
                        timescale, duration = struct.unpack(fmt, handle.read(struct.calcsize(fmt)))
                        seconds = duration / timescale if timescale else None
                    elif child == b"trak" and size is None:
                        size = _track_size(handle, child_start, child_end)
            if seconds is None:
                return Source(unknown=f"the length of {upload.filename} cannot be read (not an MP4/MOV)")
            return Source(size=size, seconds=round(seconds, 3))
    except (OSError, struct.error, IndexError) as exc:
        return Source(unknown=f"the length of {upload.filename} cannot be read: {exc}")


def _track_size(handle: IO[bytes], start: int, end: int) -> str | None:
    for kind, box_start, box_end in _boxes(handle, start, end):
        if kind == b"tkhd" and box_end - box_start >= 8:
            handle.seek(box_end - 8)
            width, height = struct.unpack(">II", handle.read(8))
            if width and height:
                return f"{width >> 16}x{height >> 16}"
    return None


# --- the estimate ---------------------------------------------------------------------------------
def estimate(
    call: Call[Any],
    prices: PriceTable | None,
    *,
    default_model: str | None,
    source_argument: Any = None,
    read: ReadVideo | None = None,
) -> Estimate:
    """The estimated cost of ``call`` (see the module's text for what is assumed)."""
    call = call.with_default_model(default_model)
    fields: dict[str, Any] = dict(call.json or call.form or {})
    model, size, seconds = fields.get("model"), fields.get("size"), _seconds(fields.get("seconds"))
    unknown: str | None = None
    if call.path == "videos":
        size = size or models.DEFAULT_SIZE
        seconds = seconds if seconds is not None else float(models.DEFAULT_SECONDS)
    elif prices is not None:  # a derived job: its source says the rest (read only when it matters)
        source = source_of(call, source_argument, read)
        remix = call.path.endswith("/remix")
        model = (source.model or model) if remix else (model or source.model)
        size = size or source.size
        if not call.path.endswith("extensions"):
            seconds, unknown = source.seconds, source.unknown
    model = str(model or models.DEFAULT_MODEL)
    result = Estimate(model=model, size=size, seconds=seconds)
    if prices is None:
        return _unknown(result, "the connection has no price table (extra 'prices')")
    price = prices.price(model)
    if price is None:
        priced = ", ".join(prices.model_names)
        return _unknown(result, f"the price table has no price for model {model!r} (priced: {priced})")
    rate = price.rate(size)
    if rate is None:
        return _unknown(result, f"model {model!r} has no price for size {size!r} and no per_second")
    if seconds is None:
        return _unknown(result, unknown or "the length of the video is unknown")
    amount = round(rate * seconds, 6)
    return Estimate(model, size, seconds, currency=prices.currency, rate=rate, amount=amount)


def _unknown(estimate: Estimate, why: str) -> Estimate:
    return Estimate(estimate.model, estimate.size, estimate.seconds, unknown=why)


def max_cost_value(max_cost: Any) -> float | None:
    """``max_cost`` as given (a number, or a rendered template's text), checked."""
    if max_cost is None or max_cost == "":
        return None
    try:
        value = float(max_cost)
    except (TypeError, ValueError):
        raise InvalidInputError(
            f"max_cost: must be a non-negative number, got {max_cost!r}", param="max_cost"
        ) from None
    if value < 0 or value != value:
        raise InvalidInputError(
            f"max_cost: must be a non-negative number, got {max_cost!r}", param="max_cost"
        )
    return value


def check_cap(estimate: Estimate, max_cost: Any, job: str) -> None:
    """Raise :class:`CostLimitError` (nothing is sent) if the estimate exceeds ``max_cost`` or
    cannot be made while ``max_cost`` is set."""
    cap = max_cost_value(max_cost)
    if cap is None:
        return
    if estimate.amount is None:
        raise CostLimitError(
            f"max_cost={cap:g} is set but the cost of this {job} cannot be estimated: {estimate.unknown}. "
            f"Nothing was submitted. Add a price for model {estimate.model!r} to the connection's "
            f"extra 'prices', or unset max_cost.",
            param="max_cost",
        )
    if estimate.amount > cap:
        raise CostLimitError(
            f"the estimated cost of this {job}, {estimate.describe()}, exceeds max_cost={cap:g} "
            f"{estimate.currency}. Nothing was submitted. Shorten the video, pick a cheaper model "
            f"or size, or raise max_cost.",
            param="max_cost",
        )


def describe_request(call: Call[Any], default_model: str | None) -> dict[str, Any]:
    """What a dry run says it would send: the method, the path, the fields and the upload."""
    call = call.with_default_model(default_model)
    request: dict[str, Any] = {
        "method": call.method,
        "path": call.path,
        "fields": dict(call.json or call.form or {}),
    }
    if call.upload is not None:
        name, upload = call.upload
        request["upload"] = {"field": name, "filename": upload.filename, "bytes": upload.size}
    return request


def request_text(request: Mapping[str, Any]) -> str:
    """One log line's worth of :func:`describe_request` (a long prompt cut short)."""
    fields = dict(request["fields"])
    prompt = str(fields.pop("prompt", ""))
    shown = [f"{name}={value!r}" for name, value in fields.items()]
    shown.append(f"prompt={prompt[:60]!r}{'...' if len(prompt) > 60 else ''} ({len(prompt)} characters)")
    text = f"{request['method']} {request['path']} {', '.join(shown)}"
    if "upload" in request:
        upload = request["upload"]
        text += f", upload {upload['field']}={upload['filename']} ({upload['bytes']} bytes)"
    return text
