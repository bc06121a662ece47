"""Apache Airflow provider for AI video jobs over the OpenAI-compatible Videos API.

This module is imported on every Airflow start and DAG parse: it holds the version and
``get_provider_info()`` only, and imports nothing heavy.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_STR = {"type": ["string", "null"]}
_NUMBER = {"type": ["number", "null"]}
_OBJECT = {"type": ["object", "null"]}
_BOOLEAN = {"type": ["boolean", "null"]}


def _field(label: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"label": label, "description": description, "schema": schema}


def get_provider_info() -> dict[str, Any]:
    """Provider metadata read by Airflow's ProvidersManager (entry point ``apache_airflow_provider``)."""
    return {
        "package-name": "airflow-video-edit",
        "name": "Video Edit (OpenAI-compatible Videos API)",
        "description": "Submit, wait for and download AI video jobs (edit, create, remix, extend) "
        "on any OpenAI-compatible Videos API: Azure AI Foundry, the LiteLLM proxy, Bifrost, "
        "or the bundled local server.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "OpenAI-compatible Videos API",
                "external-doc-url": "https://platform.openai.com/docs/api-reference/videos",
                "tags": ["software"],
            }
        ],
        "hooks": [
            {
                "integration-name": "OpenAI-compatible Videos API",
                "python-modules": ["airflow_video_edit.hooks"],
            }
        ],
        "operators": [
            {
                "integration-name": "OpenAI-compatible Videos API",
                "python-modules": ["airflow_video_edit.operators"],
            }
        ],
        "sensors": [
            {
                "integration-name": "OpenAI-compatible Videos API",
                "python-modules": ["airflow_video_edit.sensors"],
            }
        ],
        "triggers": [
            {
                "integration-name": "OpenAI-compatible Videos API",
                "python-modules": ["airflow_video_edit.triggers"],
            }
        ],
        "extra-links": ["airflow_video_edit.links.VideoJobLink"],
        "connection-types": [
            {
                "hook-class-name": "airflow_video_edit.hooks.OpenAIVideosHook",
                "hook-name": "OpenAI-compatible Videos API",
                "connection-type": "openai_videos",
                # The form's extra fields (the UI renders each from its JSON schema): short labels,
                # the explanation in the description, no schema ``default`` (the UI would make it
                # the initial value, and every saved connection would freeze the provider's
                # defaults). Empty or null means the default, which each description names.
                "conn-fields": {
                    "auth_style": _field(
                        "Auth header style",
                        "bearer (the default, when empty): 'Authorization: Bearer <key>' (OpenAI, LiteLLM); "
                        "api-key: 'api-key: <key>' (Azure AI Foundry)",
                        {"type": ["string", "null"], "enum": ["bearer", "api-key"]},
                    ),
                    "organization": _field("Organization", "Sent as the OpenAI-Organization header", _STR),
                    "project": _field("Project", "Sent as the OpenAI-Project header", _STR),
                    "default_model": _field(
                        "Default model",
                        "Sent on every job request that names no model (gateways such as the LiteLLM proxy "
                        "route by model); empty: the backend's default",
                        _STR,
                    ),
                    "extra_headers": _field(
                        "Extra headers", "A JSON object of headers sent on every request", _OBJECT
                    ),
                    "extra_query": _field(
                        "Extra query parameters",
                        'A JSON object added to every URL, e.g. {"api-version": "preview"} for Azure',
                        _OBJECT,
                    ),
                    "connect_timeout": _field("Connect timeout", "Seconds; default 10", _NUMBER),
                    "read_timeout": _field("Read timeout", "Seconds; default 60", _NUMBER),
                    "max_retries": _field(
                        "Retries per request",
                        "Retries of a failed request; default 4",
                        {"type": ["integer", "null"]},
                    ),
                    "max_retry_seconds": _field(
                        "Retry budget", "Seconds a request may spend in retries; default 120", _NUMBER
                    ),
                    "retry_job_creation": _field(
                        "Retry job creation",
                        "Retry job-creating POSTs after ambiguous failures (a lost reply): "
                        "may pay twice. Default false",
                        _BOOLEAN,
                    ),
                    "idempotency_keys": _field(
                        "Idempotency keys",
                        "The backend honours Idempotency-Key: lost submit replies are then "
                        "retried safely. Default false",
                        _BOOLEAN,
                    ),
                    "verify": _field(
                        "TLS verification",
                        "true, false, or the path of a CA bundle file; default true",
                        _STR,
                    ),
                    "proxy": _field("Proxy URL", "e.g. http://proxy.internal:3128; default none", _STR),
                    "prices": _field(
                        "Prices",
                        "Per second of video, for estimated_cost and max_cost (no built-in "
                        'prices): {"currency": "USD", "models": {"sora-2": {"per_second": 0.10}, '
                        '"sora-2-pro": {"per_second": 0.30, "per_size": {"1792x1024": 0.50}}}}',
                        _OBJECT,
                    ),
                    "status_checks": _field(
                        "Status checks",
                        "How the triggerer checks waiting jobs. auto (the default, when empty): shared "
                        "list pages, per job where the backend cannot list; list: always list pages; "
                        "per-id: one request per job and poll",
                        {"type": ["string", "null"], "enum": ["auto", "list", "per-id"]},
                    ),
                    "job_url_template": _field(
                        "Job page URL",
                        'The "Video job" link of each task: a URL with {video_id}, e.g. '
                        "https://portal.example.com/videos/{video_id}; empty: no link (the local server's is "
                        "<server>/jobs/{video_id})",
                        _STR,
                    ),
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "login"],
                    "relabeling": {"host": "Base URL", "password": "API key"},
                    "placeholders": {
                        "host": "https://api.openai.com/v1",
                        "password": "sk-...",
                        "extra": '{"auth_style": "api-key", "extra_query": {"api-version": "preview"}}',
                    },
                },
            }
        ],
    }
