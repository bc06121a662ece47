"""The bundled local OpenAI-compatible Videos server (moto/LocalStack style), for demos and tests.

In process (uvicorn in a background thread)::

    from airflow_video_edit.server import LocalVideosServer

    with LocalVideosServer(api_key="sk-test", job_seconds=0.5) as server:
        client = OpenAI(base_url=server.url, api_key="sk-test")

With ``subprocess=True`` the server runs as ``python -m airflow_video_edit.server`` in a child
process instead (the same interface, except :attr:`LocalVideosServer.store`), for tests that need
a real restart or a crash (:meth:`LocalVideosServer.kill`).

This package never imports Airflow.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess as subprocess_module
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from . import defaults
from .app import VideosApp, create_app
from .jobs import JobStore

__all__ = ["JobStore", "LocalVideosServer", "VideosApp", "create_app"]

_START_TIMEOUT = 20.0


class LocalVideosServer:
    """Runs the local Videos server on ``host:port`` (``port=0``: a free port).

    Args:
        api_key: the accepted key; ``None`` accepts any key.
        job_seconds: time from create to completed of every job.
        poll_after_ms: ``openai-poll-after-ms`` header value on retrieve answers.
        data_dir: persist jobs and media there (survive a restart); ``None``: in memory.
        faults: run-wide fault rules (see :mod:`airflow_video_edit.server.faults`).
        port, host: where to listen.
        max_upload_bytes: largest accepted request body.
        asset_ttl: seconds a completed job's assets stay downloadable.
        access_log: one log line per request (logger ``airflow_video_edit.server``).
        subprocess: run the server in a child process instead of a thread.
        log_level: uvicorn's log level in a child process.
        gateway_quirks: behave like an AI gateway (see :mod:`airflow_video_edit.server.gateway`).
    """

    def __init__(
        self,
        api_key: str | None = None,
        job_seconds: float = defaults.JOB_SECONDS,
        poll_after_ms: int = defaults.POLL_AFTER_MS,
        data_dir: str | os.PathLike[str] | None = None,
        faults: Any = None,
        port: int = 0,
        host: str = "127.0.0.1",
        *,
        max_upload_bytes: int = defaults.MAX_UPLOAD_BYTES,
        asset_ttl: float = defaults.ASSET_TTL,
        access_log: bool = True,
        subprocess: bool = False,
        log_level: str = "warning",
        gateway_quirks: bool = False,
    ) -> None:
        self.api_key, self.job_seconds, self.poll_after_ms = api_key, job_seconds, poll_after_ms
        self.data_dir, self.faults, self.host, self.port = data_dir, faults, host, port
        self.max_upload_bytes, self.asset_ttl, self.access_log = max_upload_bytes, asset_ttl, access_log
        self.use_subprocess, self.log_level = subprocess, log_level
        self.gateway_quirks = gateway_quirks
        self.app: VideosApp | None = None
        self.process: subprocess_module.Popen[bytes] | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._faults_file: str | None = None

    # --- addresses ------------------------------------------------------------------------------
    @property
    def root_url(self) -> str:
        """``http://host:port`` (``/_server/*`` lives here)."""
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The base URL a client uses: ``http://host:port/v1``."""
        return f"{self.root_url}/v1"

    @property
    def job_url_template(self) -> str:
        """This server's job pages (the gallery), for the connection extra ``job_url_template``."""
        return f"{self.root_url}/jobs/{{video_id}}"

    @property
    def store(self) -> JobStore:
        """The job store (in-process servers only)."""
        if self.app is None:
            raise RuntimeError("the store is only reachable for a started in-process server")
        return self.app.store

    @property
    def started(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        return bool(self._server is not None and self._server.started)

    # --- life cycle -----------------------------------------------------------------------------
    def start(self) -> LocalVideosServer:
        """Start and wait until the port accepts connections."""
        if self.use_subprocess:
            self._start_process()
        else:
            self._start_thread()
        return self

    def _start_thread(self) -> None:
        import uvicorn

        self.app = create_app(
            api_key=self.api_key,
            job_seconds=self.job_seconds,
            poll_after_ms=self.poll_after_ms,
            data_dir=self.data_dir,
            faults=self.faults,
            max_upload_bytes=self.max_upload_bytes,
            asset_ttl=self.asset_ttl,
            access_log=self.access_log,
            gateway_quirks=self.gateway_quirks,
        )
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self._socket = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_config=None,
            access_log=False,
            lifespan="off",
            log_level="warning",
            timeout_keep_alive=defaults.KEEP_ALIVE_SECONDS,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="videos-server", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + _START_TIMEOUT
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the local videos server did not start")
            time.sleep(0.01)

    def _start_process(self) -> None:
        if self.port == 0:
            with socket.socket() as probe:
                probe.bind((self.host, 0))
                self.port = probe.getsockname()[1]
        command = [
            sys.executable,
            "-m",
            "airflow_video_edit.server",
            "--host",
            self.host,
            "--port",
            str(self.port),
        ]
        command += ["--job-seconds", str(self.job_seconds), "--poll-after-ms", str(self.poll_after_ms)]
        command += ["--max-upload-bytes", str(self.max_upload_bytes), "--asset-ttl", str(self.asset_ttl)]
        command += ["--log-level", self.log_level]
        if not self.access_log:
            command.append("--no-access-log")
        if self.gateway_quirks:
            command.append("--gateway-quirks")
        if self.data_dir is not None:
            command += ["--data-dir", str(self.data_dir)]
        if self.faults:
            handle, self._faults_file = tempfile.mkstemp(suffix=".json", prefix="faults-")
            with os.fdopen(handle, "w") as out:
                json.dump(self.faults, out)
            command += ["--faults", self._faults_file]
        env = dict(os.environ)
        if self.api_key is not None:
            env["VIDEOS_SERVER_API_KEY"] = self.api_key  # not on the command line (ps shows it)
        self.process = subprocess_module.Popen(command, env=env)  # noqa: S603 - our own interpreter
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the local videos server process did not start")
            try:
                httpx.get(f"{self.root_url}/_server/stats", timeout=1.0)
                return
            except httpx.TransportError:
                time.sleep(0.05)

    def stop(self) -> None:
        """Shut down cleanly (in-process: uvicorn's graceful exit; child: SIGTERM)."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(10)
                except subprocess_module.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            self.process = None
            if self._faults_file:
                Path(self._faults_file).unlink(missing_ok=True)
                self._faults_file = None
        if self._server is not None:
            self._server.should_exit = True
            if self._thread is not None:
                self._thread.join(10)
            self._server = self._thread = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        if self.app is not None:
            self.app.store.close()
            self.app = None

    def kill(self) -> None:
        """Crash a child-process server (SIGKILL): no clean shutdown, for restart tests."""
        if self.process is None:
            raise RuntimeError("kill() needs subprocess=True")
        self.process.kill()
        self.process.wait()
        self.stop()

    def __enter__(self) -> LocalVideosServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- control --------------------------------------------------------------------------------
    @property
    def control_headers(self) -> dict[str, str]:
        """Headers for ``/_server/*`` (the key, when one is set)."""
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key is not None else {}

    def _control(self, method: str, route: str, rules: Any = None) -> Any:
        url = f"{self.root_url}/_server/{route}"
        reply = httpx.request(method, url, json=rules, headers=self.control_headers, timeout=10)
        reply.raise_for_status()
        return reply.json()

    def stats(self) -> dict[str, Any]:
        """``GET /_server/stats``: requests by route and status, jobs created by kind."""
        if self.app is not None:
            return self.app.stats()
        data: dict[str, Any] = self._control("GET", "stats")
        return data

    def reset_stats(self) -> None:
        if self.app is not None:
            self.app.reset_stats()
        else:
            self._control("POST", "reset-stats")

    def set_faults(self, rules: Any) -> None:
        """Replace the run-wide fault rules (a list of strings/mappings, or ``[]`` for none)."""
        if self.app is not None:
            self.app.set_faults(rules)
        else:
            self._control("POST", "faults", rules)
