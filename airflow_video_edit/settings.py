"""Settings: everything a connection says about how to reach one Videos API backend.

``ClientSettings`` is what the senders (:mod:`airflow_video_edit.clients`) are built from;
``settings_from_connection`` turns an Airflow connection's fields into it. Pure: nothing here
talks to Airflow or the network, so the Hook's sync and async paths share it.
"""

from __future__ import annotations

import json
import math
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from airflow_video_edit.errors import InvalidInputError

AuthStyle = Literal["bearer", "api-key"]
StatusChecks = Literal["auto", "list", "per-id"]
STATUS_CHECKS: tuple[str, ...] = ("auto", "list", "per-id")
USER_AGENT = "airflow-video-edit"
DEFAULT_BASE_URL = "https://api.openai.com/v1"


@dataclass(frozen=True)
class ModelPrice:
    """What one model bills per second of video: ``per_second``, or a rate for a size."""

    per_second: float | None = None
    per_size: tuple[tuple[str, float], ...] = ()

    def rate(self, size: str | None) -> float | None:
        """The per-second rate for ``size`` (its own, else ``per_second``); None: no price."""
        return dict(self.per_size).get(size or "", self.per_second)


@dataclass(frozen=True)
class PriceTable:
    """The connection extra ``prices``: a currency and each model's price. There are no built-in
    prices (OpenAI's went with its API; gateways bill their own): the user's table is the truth.

    ``{"currency": "USD", "models": {"sora-2": {"per_second": 0.10},
    "sora-2-pro": {"per_second": 0.30, "per_size": {"1792x1024": 0.50}}}}``
    """

    currency: str
    models: tuple[tuple[str, ModelPrice], ...]

    def price(self, model: str) -> ModelPrice | None:
        return dict(self.models).get(model)

    @property
    def model_names(self) -> list[str]:
        return [name for name, _ in self.models]


@dataclass(frozen=True)
class ClientSettings:
    """How to reach one Videos API backend. Hashable, so equal settings can share one pool.

    ``api_key`` is excluded from ``repr`` (and so from any log line or traceback that prints it).
    """

    base_url: str = DEFAULT_BASE_URL
    api_key: str | None = field(default=None, repr=False)
    auth_style: AuthStyle = "bearer"
    organization: str | None = None
    project: str | None = None
    extra_headers: tuple[tuple[str, str], ...] = ()
    extra_query: tuple[tuple[str, str], ...] = ()
    default_model: str | None = None
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    max_retries: int = 4
    max_retry_seconds: float = 120.0
    # Cap on a server-requested Retry-After; longer waits are clipped to this.
    max_retry_after: float = 60.0
    # Retry a job-creating POST after an ambiguous failure: set directly (may pay twice), or
    # because the backend honours the Idempotency-Key every such POST carries (then it is safe).
    retry_job_creation: bool = False
    verify: bool | str = True
    proxy: str | None = None
    # One pool per settings per process: at most this many connections and requests in flight.
    max_connections: int = 64
    # Idle connections are kept at least as long as a typical poll interval (httpx default: 5 s).
    keepalive_expiry: float = 120.0
    # What jobs cost (connection extra ``prices``); not part of a pool's identity.
    prices: PriceTable | None = field(default=None, compare=False)
    # How waiting triggers check their jobs (connection extra ``status_checks``): "auto" (list
    # pages shared by the waits of a triggerer, per-id where the backend cannot list), "list"
    # (list pages, no fall-back) or "per-id" (one request per job). See airflow_video_edit.watcher.
    status_checks: StatusChecks = "auto"
    # The "Video job" link's URL, with ``{video_id}`` (connection extra ``job_url_template``).
    job_url_template: str | None = field(default=None, compare=False)

    def headers(self) -> dict[str, str]:
        headers = {"User-Agent": USER_AGENT}
        if self.api_key:
            if self.auth_style == "api-key":
                headers["api-key"] = self.api_key
            else:
                headers["Authorization"] = f"Bearer {self.api_key}"
        if self.organization:
            headers["OpenAI-Organization"] = self.organization
        if self.project:
            headers["OpenAI-Project"] = self.project
        headers.update(dict(self.extra_headers))
        return headers

    def ssl_verify(self) -> bool | ssl.SSLContext:
        """``verify`` for httpx: a CA bundle path becomes an SSL context (httpx wants no paths)."""
        if isinstance(self.verify, str):
            return ssl.create_default_context(cafile=self.verify)
        return self.verify

    def httpx_kwargs(self) -> dict[str, Any]:
        """Keyword arguments shared by ``httpx.Client`` and ``httpx.AsyncClient``."""
        return {
            "base_url": self.base_url.rstrip("/") + "/",
            "headers": self.headers(),
            "params": dict(self.extra_query),
            "timeout": httpx.Timeout(
                self.read_timeout, connect=self.connect_timeout, pool=max(self.read_timeout, 60.0)
            ),
            "limits": httpx.Limits(
                max_connections=self.max_connections,
                max_keepalive_connections=self.max_connections,
                keepalive_expiry=self.keepalive_expiry,
            ),
            "verify": self.ssl_verify(),
            "proxy": self.proxy,
            "follow_redirects": True,
        }


def _as_mapping(value: Any, name: str) -> dict[str, str]:
    """Extra headers / query parameters: a JSON object, given as a dict or as JSON text."""
    if value in (None, "", {}):
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise InvalidInputError(f"connection extra {name!r} is not a JSON object", param=name) from None
    if not isinstance(value, Mapping):
        raise InvalidInputError(f"connection extra {name!r} must be a JSON object", param=name)
    return {str(key): str(item) for key, item in value.items()}


def _invalid(name: str, problem: str) -> InvalidInputError:
    return InvalidInputError(f"connection extra {name!r} {problem}", param="prices")


def _rate(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _invalid(name, f"must be a number (a price per second of video), got {value!r}")
    try:
        rate = float(value)
    except ValueError:
        raise _invalid(name, f"must be a number (a price per second of video), got {value!r}") from None
    if not math.isfinite(rate) or rate < 0:
        raise _invalid(name, f"must be a non-negative number, got {value!r}")
    return rate


def _fields(value: Any, name: str, allowed: set[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _invalid(name, f"must be a JSON object, got {value!r}")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise _invalid(name, f"has unknown field(s) {unknown}; expected {sorted(allowed)}")
    return value


def _prices(value: Any) -> PriceTable | None:
    """The extra ``prices`` (a JSON object or its text), checked; every error names the field."""
    if value in (None, "", {}):
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise _invalid("prices", "is not valid JSON") from None
    table = _fields(value, "prices", {"currency", "models"})
    currency = table.get("currency")
    if not isinstance(currency, str) or not currency.strip():
        raise _invalid("prices.currency", f"must be a currency code such as 'USD', got {currency!r}")
    models = table.get("models")
    if not isinstance(models, Mapping) or not models:
        raise _invalid("prices.models", "must be a non-empty JSON object: {model: {per_second: ...}}")
    priced: list[tuple[str, ModelPrice]] = []
    for model, spec in models.items():
        where = f"prices.models.{model}"
        spec = _fields(spec, where, {"per_second", "per_size"})
        per_second = (
            None if spec.get("per_second") is None else _rate(spec["per_second"], f"{where}.per_second")
        )
        sizes = spec.get("per_size") or {}
        if not isinstance(sizes, Mapping):
            raise _invalid(f"{where}.per_size", f"must be a JSON object {{size: rate}}, got {sizes!r}")
        per_size = tuple((str(size), _rate(rate, f"{where}.per_size.{size}")) for size, rate in sizes.items())
        if per_second is None and not per_size:
            raise _invalid(where, "needs per_second, per_size or both")
        priced.append((str(model), ModelPrice(per_second, per_size)))
    return PriceTable(currency.strip(), tuple(priced))


def _as_bool(value: Any, default: bool) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _verify(value: Any) -> bool | str:
    """``verify``: true (the default, also for empty or null), false, or a CA bundle file."""
    if value is None or value == "":
        return True
    if isinstance(value, bool):
        return value
    text = str(value).strip()
    if text.lower() in ("true", "false", "1", "0", "yes", "no", "on", "off"):
        return _as_bool(text, True)
    if not os.path.isfile(text):
        raise InvalidInputError(
            f"connection extra 'verify' must be true, false or the path of a CA bundle file; "
            f"{text!r} is not a file",
            param="verify",
        )
    return text  # a CA bundle path


def _job_url_template(value: Any) -> str | None:
    """``job_url_template``: a URL with ``{video_id}`` (the "Video job" link); empty: no link."""
    if value is None or value == "":
        return None
    text = str(value).strip()
    try:
        example = text.format(video_id="video_x")
    except (KeyError, IndexError, ValueError):
        example = ""
    if "{video_id}" not in text or not example.startswith(("http://", "https://")):
        raise InvalidInputError(
            "connection extra 'job_url_template' must be an http(s) URL with {video_id} and no "
            f"other {{...}} field, e.g. https://portal.example.com/videos/{{video_id}}; got {text!r}",
            param="job_url_template",
        )
    return text


def _base_url(host: str | None, port: int | None, schema: str | None, extra: Mapping[str, Any]) -> str:
    """``host`` is the base URL. A URI-style connection (host, port, schema) is also understood."""
    if not host:
        return DEFAULT_BASE_URL
    if "://" in host:
        return host.rstrip("/")
    scheme = str(extra.get("scheme") or "https")
    url = f"{scheme}://{host}"
    if port:
        url += f":{port}"
    if schema:
        url += "/" + schema.strip("/")
    return url


def settings_from_connection(
    *,
    host: str | None,
    port: int | None,
    schema: str | None,
    password: str | None,
    extra: Mapping[str, Any],
) -> ClientSettings:
    """Build client settings from a connection's fields. Pure: shared by the sync and async paths."""
    defaults = ClientSettings()
    auth_style = str(extra.get("auth_style") or "bearer").lower()
    if auth_style not in ("bearer", "api-key"):
        raise InvalidInputError(
            f"connection extra 'auth_style' must be 'bearer' or 'api-key', got {auth_style!r}",
            param="auth_style",
        )

    def number(name: str, default: float) -> float:
        value = extra.get(name)  # empty or null: the default
        if value in (None, ""):
            return default
        try:
            return float(value)
        except (TypeError, ValueError):
            raise InvalidInputError(
                f"connection extra {name!r} must be a number, got {value!r}", param=name
            ) from None

    return ClientSettings(
        base_url=_base_url(host, port, schema, extra),
        api_key=password or None,
        auth_style="api-key" if auth_style == "api-key" else "bearer",
        organization=extra.get("organization") or None,
        project=extra.get("project") or None,
        extra_headers=tuple(_as_mapping(extra.get("extra_headers"), "extra_headers").items()),
        extra_query=tuple(_as_mapping(extra.get("extra_query"), "extra_query").items()),
        default_model=extra.get("default_model") or None,
        connect_timeout=number("connect_timeout", defaults.connect_timeout),
        read_timeout=number("read_timeout", defaults.read_timeout),
        max_retries=int(number("max_retries", defaults.max_retries)),
        max_retry_seconds=number("max_retry_seconds", defaults.max_retry_seconds),
        retry_job_creation=_as_bool(extra.get("retry_job_creation"), False)
        or _as_bool(extra.get("idempotency_keys"), False),
        verify=_verify(extra.get("verify")),
        proxy=extra.get("proxy") or None,
        prices=_prices(extra.get("prices")),
        status_checks=_status_checks(extra.get("status_checks")),
        job_url_template=_job_url_template(extra.get("job_url_template")),
    )


def _status_checks(value: Any) -> StatusChecks:
    text = "auto" if value in (None, "") else str(value).strip().lower()
    if text not in STATUS_CHECKS:
        raise InvalidInputError(
            f"connection extra 'status_checks' must be one of {', '.join(STATUS_CHECKS)}, got {value!r}",
            param="status_checks",
        )
    return text  # type: ignore[return-value]
