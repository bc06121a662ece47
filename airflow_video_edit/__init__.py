"""Apache Airflow provider for AI video jobs over the OpenAI-compatible Videos API.

This module is imported on every Airflow start and DAG parse: it holds the version and
``get_provider_info()`` only, and imports nothing heavy.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_STR = {"type": ["string", "null"]}


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
        "connection-types": [
            {
                "hook-class-name": "airflow_video_edit.hooks.OpenAIVideosHook",
                "hook-name": "OpenAI-compatible Videos API",
                "connection-type": "openai_videos",
                "conn-fields": {
                    "auth_style": {
                        "label": "Auth header style",
                        "description": "bearer: 'Authorization: Bearer <key>' (OpenAI, LiteLLM); "
                        "api-key: 'api-key: <key>' (Azure AI Foundry)",
                        "schema": {"type": ["string", "null"], "enum": ["bearer", "api-key", None]},
                    },
                    "organization": {"label": "Organization (OpenAI-Organization header)", "schema": _STR},
                    "project": {"label": "Project (OpenAI-Project header)", "schema": _STR},
                    "default_model": {
                        "label": "Default model",
                        "description": "Sent on every job request that names no model "
                        "(gateways such as the LiteLLM proxy route by model)",
                        "schema": _STR,
                    },
                    "extra_headers": {
                        "label": "Extra headers (JSON object)",
                        "schema": {"type": ["object", "null"]},
                    },
                    "extra_query": {
                        "label": "Extra query parameters (JSON object, e.g. Azure api-version)",
                        "schema": {"type": ["object", "null"]},
                    },
                    "connect_timeout": {
                        "label": "Connect timeout (s)",
                        "schema": {"type": ["number", "null"], "default": 10},
                    },
                    "read_timeout": {
                        "label": "Read timeout (s)",
                        "schema": {"type": ["number", "null"], "default": 60},
                    },
                    "max_retries": {
                        "label": "Retries per request",
                        "schema": {"type": ["integer", "null"], "default": 4},
                    },
                    "max_retry_seconds": {
                        "label": "Retry budget per request (s)",
                        "schema": {"type": ["number", "null"], "default": 120},
                    },
                    "retry_job_creation": {
                        "label": "Retry job-creating POSTs after ambiguous failures (may pay twice)",
                        "schema": {"type": ["boolean", "null"], "default": False},
                    },
                    "idempotency_keys": {
                        "label": "The backend honours Idempotency-Key (lost submit replies are then retried)",
                        "schema": {"type": ["boolean", "null"], "default": False},
                    },
                    "verify": {
                        "label": "TLS verification: true, false, or a CA bundle path",
                        "schema": _STR,
                    },
                    "proxy": {"label": "Proxy URL", "schema": _STR},
                    "prices": {
                        "label": "Prices per second of video (JSON object; no built-in prices)",
                        "description": 'For estimated_cost and max_cost: {"currency": "USD", '
                        '"models": {"sora-2": {"per_second": 0.10}, "sora-2-pro": {"per_second": '
                        '0.30, "per_size": {"1792x1024": 0.50}}}}',
                        "schema": {"type": ["object", "null"]},
                    },
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
