"""Command line: ``airflow-video-edit serve ...`` runs the bundled local Videos server.

Its defaults are those of :mod:`airflow_video_edit.server.defaults`, shared with the in-process server.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence

from airflow_video_edit.server import defaults

API_KEY_ENV = "VIDEOS_SERVER_API_KEY"


# Longer than the client keeps idle connections (120 s), so pollers reuse them (uvicorn: 5 s).


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="airflow-video-edit", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="run the local OpenAI-compatible Videos server",
        description="Run the local OpenAI-compatible Videos server (base URL http://HOST:PORT/v1).",
    )
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8787, help="port to listen on (default 8787)")
    serve.add_argument("--data-dir", help="persist jobs and media here (default: in memory)")
    serve.add_argument(
        "--api-key",
        default=os.environ.get(API_KEY_ENV),
        help=f"the accepted API key (default ${API_KEY_ENV}; unset: any key is accepted)",
    )
    serve.add_argument(
        "--job-seconds",
        type=float,
        default=defaults.JOB_SECONDS,
        help=f"time from create to completed ({defaults.JOB_SECONDS:g})",
    )
    serve.add_argument(
        "--poll-after-ms",
        type=int,
        default=defaults.POLL_AFTER_MS,
        help=f"openai-poll-after-ms header ({defaults.POLL_AFTER_MS})",
    )
    serve.add_argument("--faults", help="JSON or YAML file of run-wide fault rules")
    serve.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="RULE",
        help="a run-wide fault rule, e.g. 'GET /v1/videos/{id} status=503;times=2' (repeatable)",
    )
    serve.add_argument(
        "--max-upload-bytes", type=int, default=defaults.MAX_UPLOAD_BYTES, help="request body limit (2 GiB)"
    )
    serve.add_argument(
        "--asset-ttl", type=float, default=defaults.ASSET_TTL, help="seconds assets stay downloadable"
    )
    serve.add_argument(
        "--keep-alive",
        type=int,
        default=defaults.KEEP_ALIVE_SECONDS,
        help=f"seconds an idle connection stays open ({defaults.KEEP_ALIVE_SECONDS:g}; "
        "longer than a poll interval)",
    )
    serve.add_argument("--no-access-log", action="store_true", help="no per-request log line")
    serve.add_argument(
        "--gateway-quirks",
        action="store_true",
        help="behave like an AI gateway (LiteLLM): long rewritten ids, variant ignored, model "
        "required, no list (400) or delete (405), a wrong key is a 400",
    )
    serve.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    return parser


def serve(args: argparse.Namespace) -> int:
    """Run the server until interrupted."""
    import uvicorn

    from airflow_video_edit.server.app import create_app
    from airflow_video_edit.server.faults import load_rules, parse_rules

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    rules = (load_rules(args.faults) if args.faults else []) + parse_rules(args.fault)
    app = create_app(
        api_key=args.api_key or None,
        job_seconds=args.job_seconds,
        poll_after_ms=args.poll_after_ms,
        data_dir=args.data_dir,
        max_upload_bytes=args.max_upload_bytes,
        asset_ttl=args.asset_ttl,
        access_log=not args.no_access_log,
        gateway_quirks=args.gateway_quirks,
    )
    app.faults.set_rules(rules)
    root = f"http://{args.host}:{args.port}"
    logging.getLogger("airflow_video_edit.server").info(
        "base URL %s/v1; job gallery %s/ (connection extra job_url_template: %s/jobs/{video_id})",
        root,
        root,
        root,
    )
    try:
        uvicorn.run(
            app,
            host=args.host,
            port=args.port,
            log_level=args.log_level,
            access_log=False,
            lifespan="off",
            log_config=None,
            timeout_keep_alive=args.keep_alive,
        )
    finally:
        app.store.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``airflow-video-edit`` script."""
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    raise SystemExit(main())
