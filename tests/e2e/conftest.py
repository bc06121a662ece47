"""End-to-end harness: a real Airflow 3.3 deployment started by the test session.

The session-scoped ``airflow_deployment`` fixture creates a fresh temporary ``AIRFLOW_HOME`` with a
SQLite metadata DB (``airflow db migrate``) and starts **separate processes**::

    airflow api-server --host 127.0.0.1 --port <free port>
    airflow scheduler          (LocalExecutor: tasks run in real worker subprocesses)
    airflow dag-processor
    airflow triggerer          (runs the triggers of deferrable operators)

SQLite + LocalExecutor is allowed in Airflow 3 (SequentialExecutor was removed in 3.0; Airflow enables
WAL mode for SQLite). Startup blocks until ``/api/v2/monitor/health`` reports scheduler, dag-processor
and triggerer healthy and every DAG file in the DAGs folder has been parsed (as a DAG or an import error).

Override points (session-scoped fixtures, override them in a test module or a conftest):

* ``airflow_dags_folder`` -> Path. Default: ``--airflow-dags-folder`` option, else the
  ``E2E_AIRFLOW_DAGS_FOLDER`` env var, else ``<repo>/dags``.
* ``airflow_extra_env`` -> dict[str, str], merged into the process environment before the processes
  start (e.g. ``AIRFLOW_CONN_...`` connections, ``AIRFLOW__SECTION__KEY`` config overrides).

The deployment is started once per session and shared. If a later module overrides these fixtures
differently, an autouse guard restarts it in place with that config (one more startup), so override them
in one place when possible. Tests marked ``e2e_any_config`` never force a restart (and run last).
DAG files a single test needs go through ``airflow_deployment.add_dag_file(name, source)``: a second
LocalDagBundle (``e2e-extra-dags``) served from ``<home>/e2e-extra-dags``, parsed within seconds.

Env knobs: ``E2E_AIRFLOW_STARTUP_TIMEOUT`` (seconds, default 180), ``E2E_AIRFLOW_KEEP_HOME=1`` keeps the
temporary AIRFLOW_HOME (logs!) after the session, ``E2E_AIRFLOW_PYCACHE=0`` disables the shared bytecode
cache (``PYTHONPYCACHEPREFIX``, default ``$TMPDIR/airflow-e2e-pycache-<uid>``, or
``E2E_AIRFLOW_PYCACHE_DIR``) used by the Airflow child processes.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DAGS_FOLDER = REPO / "dags"
AIRFLOW_BIN = str(Path(sys.executable).with_name("airflow"))

TERMINAL_RUN_STATES = frozenset({"success", "failed"})
TERMINAL_TI_STATES = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})
HEALTH_COMPONENTS = ("metadatabase", "scheduler", "dag_processor", "triggerer")
POLL_INTERVAL = 0.25
NO_DAG_GRACE = 10.0
# `airflow db migrate`, then (same interpreter, no second airflow import) list the DAG files exactly as
# Airflow's discovery does, so readiness knows which files to wait for.
_MIGRATE_AND_LIST = """
import json, sys
out, dags = sys.argv[1], sys.argv[2]
sys.argv = ["airflow", "db", "migrate"]
from airflow.__main__ import main
main()
from airflow.utils.file import list_py_file_paths
with open(out, "w") as fh:
    json.dump(list_py_file_paths(dags), fh)
"""
MAIN_BUNDLE = "dags-folder"  # the configurable DAGs folder (AIRFLOW__CORE__DAGS_FOLDER)
EXTRA_BUNDLE = "e2e-extra-dags"  # <home>/e2e-extra-dags, filled at runtime by add_dag_file()
LOCAL_BUNDLE = "airflow.dag_processing.bundles.local.LocalDagBundle"

# Processes started in this interpreter, so that an abnormal exit still kills them.
_LIVE_PROCS: list[subprocess.Popen[bytes]] = []
# The session's SQLite deployment (if started), stopped before the distributed one starts.
_DEPLOYMENTS: list[AirflowDeployment] = []


def _kill_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)  # each process is the leader of its own session/group


def _stop_processes(procs: list[subprocess.Popen[bytes]], grace: float = 20.0) -> None:
    for p in procs:
        if p.poll() is None:
            _kill_group(p, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
    for p in procs:
        # SIGKILL the whole group even if the leader exited: children (task runners, trigger
        # subprocess, uvicorn workers) may have survived it.
        _kill_group(p, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=5)
        if p in _LIVE_PROCS:
            _LIVE_PROCS.remove(p)


atexit.register(lambda: _stop_processes(list(_LIVE_PROCS), grace=5.0))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class AirflowStartupError(RuntimeError):
    pass


class AirflowDeployment:
    """A running Airflow deployment (api-server, scheduler, dag-processor, triggerer)."""

    PROCESSES: dict[str, list[str]] = {
        "scheduler": ["scheduler"],
        "dag-processor": ["dag-processor"],
        "triggerer": ["triggerer"],
    }

    def __init__(self, home: Path, dags_folder: Path, extra_env: Mapping[str, str] | None = None) -> None:
        self._configure(home, dags_folder, extra_env)

    def _configure(self, home: Path, dags_folder: Path, extra_env: Mapping[str, str] | None) -> None:
        self.home = Path(home)
        self.dags_folder = Path(dags_folder).resolve()
        self.extra_env: dict[str, str] = {str(k): str(v) for k, v in (extra_env or {}).items()}
        # Second LocalDagBundle, for DAG files that tests add at runtime (``add_dag_file``).
        self.extra_dags_folder = self.home / "e2e-extra-dags"
        self.port = _free_port()
        self.api_url = f"http://127.0.0.1:{self.port}"
        self.log_dir = self.home / "e2e-process-logs"
        self._dag_file_list = self.home / "e2e-dag-files.json"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        old_client = getattr(self, "client", None)
        if old_client is not None:
            old_client.close()
        self.client: httpx.Client = httpx.Client(base_url=self.api_url, timeout=30.0)
        self.startup_seconds: float | None = None
        self.startup_phases: dict[str, float] = {}  # phase -> seconds since start() began
        self.env: dict[str, str] = self._base_env()
        self.env.update(self.extra_env)

    def matches(self, dags_folder: Path, extra_env: Mapping[str, str]) -> bool:
        return Path(dags_folder).resolve() == self.dags_folder and all(
            self.env.get(k) == str(v) for k, v in extra_env.items()
        )

    def restart_with(self, dags_folder: Path, extra_env: Mapping[str, str], timeout: float) -> None:
        """Stop, then start a fresh deployment (new home, port, DB) with another config, in place."""
        self.stop()
        _remove_home(self.home)
        self._configure(Path(tempfile.mkdtemp(prefix="airflow-e2e-")), dags_folder, extra_env)
        self.start(timeout)

    # ------------------------------------------------------------------ setup
    def _base_env(self) -> dict[str, str]:
        # Hermetic: drop any AIRFLOW* from the caller's environment.
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        pythonpath = [str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
        if os.environ.get("E2E_AIRFLOW_PYCACHE", "1") != "0":
            # Venvs built by uv (and PYTHONDONTWRITEBYTECODE=1) have no .pyc files: every airflow
            # process would then re-compile all of airflow (~3x slower startup). Let the child
            # processes write bytecode to a shared cache outside the venv/repo instead.
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = os.environ.get("E2E_AIRFLOW_PYCACHE_DIR") or str(
                Path(tempfile.gettempdir()) / f"airflow-e2e-pycache-{os.getuid()}"
            )
        env.update(
            {
                "PYTHONPATH": os.pathsep.join(pythonpath),
                "PYTHONUNBUFFERED": "1",
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(
                    [
                        {"name": MAIN_BUNDLE, "classpath": LOCAL_BUNDLE, "kwargs": {}},
                        {
                            "name": EXTRA_BUNDLE,
                            "classpath": LOCAL_BUNDLE,
                            "kwargs": {"path": str(self.extra_dags_folder)},
                        },
                    ]
                ),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                # Few concurrent SQLite writers, and only 2 cores in CI.
                "AIRFLOW__CORE__PARALLELISM": "4",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__CORE__FERNET_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home / 'airflow.db'}",
                # Workers (task supervisors) reach the Execution API of *our* api-server.
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
                "AIRFLOW__API__BASE_URL": self.api_url,
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__WORKERS": "1",
                # Must be identical in all processes: the scheduler signs task JWTs, api-server checks them.
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
                "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
                "AIRFLOW__CORE__AUTH_MANAGER": (
                    "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
                ),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                # New files are listed every 2 s and parsed at once; unchanged files re-parsed every 30 s
                # only (re-parsing steals CPU from the tests on 2 cores).
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "2",
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
                "AIRFLOW__DAG_PROCESSOR__BUNDLE_REFRESH_CHECK_INTERVAL": "2",
                "AIRFLOW__DAG_PROCESSOR__PRINT_STATS_INTERVAL": "300",
                "AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL": "2",
                # Snappy scheduling loop and health heartbeats.
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
                "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "1",
                "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
                "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
                "AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL": "5",
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
                # Log servers of scheduler/triggerer default to fixed ports 8793/8794: avoid clashes.
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(_free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(_free_port()),
                "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            }
        )
        return env

    def _migrate_and_list_dag_files(self, timeout: float) -> None:
        log = self.log_dir / "db-migrate.log"
        with log.open("ab") as fh:
            cmd = [sys.executable, "-c", _MIGRATE_AND_LIST, str(self._dag_file_list), str(self.dags_folder)]
            rc = subprocess.run(
                cmd, env=self.env, cwd=self.home, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout
            ).returncode
        if rc != 0:
            raise AirflowStartupError(f"`airflow db migrate` failed (rc={rc}):\n{_tail(log, 60)}")

    def process_env(self, name: str) -> dict[str, str]:
        """Environment just for process ``name`` (on top of ``env``); none here, see subclasses."""
        return {}

    def _wait_ready(self, deadline: float) -> None:
        """Readiness beyond the health endpoint (called once healthy); nothing here, see subclasses."""

    def _spawn(self, name: str, args: list[str]) -> None:
        fh = (self.log_dir / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [AIRFLOW_BIN, *args],
            env={**self.env, **self.process_env(name)},
            cwd=self.home,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        fh.close()
        self.procs[name] = proc
        _LIVE_PROCS.append(proc)

    def start(self, timeout: float = 180.0) -> None:
        t0 = time.monotonic()
        deadline = t0 + timeout
        self.home.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.extra_dags_folder.mkdir(parents=True, exist_ok=True)
        # (The api-server refuses to start before the schema exists: "Database migration required".)
        self._migrate_and_list_dag_files(timeout)
        self.startup_phases["db_migrate"] = time.monotonic() - t0
        # The api-server is the slowest to boot (~15 s of imports + FastAPI app creation): spawn it first.
        self._spawn("api-server", ["api-server", "--host", "127.0.0.1", "--port", str(self.port)])
        for name, args in self.PROCESSES.items():
            self._spawn(name, args)
        try:
            self._wait_healthy(deadline)
            self._wait_ready(deadline)
            self.startup_phases["healthy"] = time.monotonic() - t0
            self._authenticate()
            self._wait_files_parsed(self.dag_files(), deadline)
            self.startup_phases["dags_parsed"] = time.monotonic() - t0
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        phases = {k: round(v, 1) for k, v in self.startup_phases.items()}
        print(
            f"\n[e2e] Airflow deployment ready at {self.api_url} in {self.startup_seconds:.1f}s {phases} "
            f"(dags={self.dags_folder}, home={self.home})"
        )

    def _check_alive(self) -> None:
        for name, p in self.procs.items():
            if p.poll() is not None:
                raise AirflowStartupError(
                    f"airflow {name} exited early (rc={p.returncode}).\n{self.log_tails()}"
                )

    def _wait_healthy(self, deadline: float) -> None:
        last: Any = None
        while True:
            self._check_alive()
            try:
                r = self.client.get("/api/v2/monitor/health", timeout=5)
                last = r.text
                if r.status_code == 200:
                    body = r.json()
                    if all((body.get(c) or {}).get("status") == "healthy" for c in HEALTH_COMPONENTS):
                        return
            except httpx.HTTPError as e:
                last = repr(e)
            if time.monotonic() > deadline:
                raise AirflowStartupError(
                    f"Airflow not healthy before timeout; last health answer: {last}\n{self.log_tails()}"
                )
            time.sleep(POLL_INTERVAL)

    def _authenticate(self) -> None:
        # all_admins: GET /auth/token mints an admin token without credentials.
        r = self.client.get("/auth/token")
        r.raise_for_status()
        self.client.headers["Authorization"] = f"Bearer {r.json()['access_token']}"

    def dag_files(self) -> list[tuple[str, str]]:
        """(bundle name, relative path) of the DAG files Airflow's own discovery finds in the DAGs folder
        (.airflowignore + safe-mode heuristic), as listed by the migrate step."""
        listed = json.loads(self._dag_file_list.read_text()) if self._dag_file_list.exists() else []
        return [(MAIN_BUNDLE, Path(f).relative_to(self.dags_folder).as_posix()) for f in listed]

    def import_errors(self) -> list[dict[str, Any]]:
        return list(self._paged("/api/v2/importErrors", "import_errors"))

    def _parsed_files(self) -> set[tuple[str, str]]:
        roots = {MAIN_BUNDLE: self.dags_folder, EXTRA_BUNDLE: self.extra_dags_folder}

        def key(bundle: str | None, path: str) -> tuple[str, str]:
            bundle = bundle or MAIN_BUNDLE
            root = roots.get(bundle)
            if root is not None and os.path.isabs(path):
                with contextlib.suppress(ValueError):
                    path = Path(path).relative_to(root).as_posix()
            return (bundle, path)

        seen: set[tuple[str, str]] = set()
        for d in self._paged("/api/v2/dags", "dags"):
            seen.add(key(d.get("bundle_name"), d.get("relative_fileloc") or d["fileloc"]))
        for e in self.import_errors():
            seen.add(key(e.get("bundle_name"), e["filename"]))
        return seen

    def _processor_log(self, bundle: str, rel: str) -> Path:
        return self.home / "logs" / "dag_processor" / "latest" / bundle / f"{rel}.log"

    def _wait_files_parsed(self, expected: list[tuple[str, str]], deadline: float) -> None:
        """Wait until each file shows up as a DAG or an import error.

        A file that contains no DAG at all (a helper module passing the safe-mode heuristic) never shows
        up; it is accepted once the dag-processor has been parsing it for NO_DAG_GRACE seconds.
        """
        missing = expected
        first_parse: dict[tuple[str, str], float] = {}
        while True:
            self._check_alive()
            try:
                seen = self._parsed_files()
                now = time.monotonic()
                missing = []
                for f in expected:
                    if f in seen:
                        continue
                    if self._processor_log(*f).exists():
                        first_parse.setdefault(f, now)
                        if now - first_parse[f] >= NO_DAG_GRACE:
                            continue
                    missing.append(f)
                if not missing:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AirflowStartupError(f"DAG files never parsed: {missing}\n{self.log_tails()}")
            time.sleep(POLL_INTERVAL)

    def add_dag_file(self, filename: str, source: str, timeout: float = 60.0) -> None:
        """Drop a DAG file into the extra bundle of the *running* deployment and wait until it is parsed.

        Raises if the file produced an import error (with Airflow's stack trace).
        """
        target = self.extra_dags_folder / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(source)
        tmp.replace(target)  # atomic: the dag-processor never sees a half-written file
        rel = target.relative_to(self.extra_dags_folder).as_posix()
        self._wait_files_parsed([(EXTRA_BUNDLE, rel)], time.monotonic() + timeout)
        for e in self.import_errors():
            if (e.get("bundle_name"), e["filename"]) in {(EXTRA_BUNDLE, rel), (EXTRA_BUNDLE, str(target))}:
                raise AssertionError(f"import error in {filename}:\n{e.get('stack_trace')}")

    # ------------------------------------------------------------------ teardown
    def stop(self) -> None:
        _stop_processes(list(self.procs.values()))

    # ------------------------------------------------------------------ REST helpers
    def _paged(self, url: str, key: str, params: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        offset = 0
        base = {k: v for k, v in (params or {}).items() if v is not None}
        while True:
            r = self.client.get(url, params={**base, "limit": 100, "offset": offset})
            r.raise_for_status()
            body = r.json()
            items = body.get(key, [])
            yield from items
            offset += len(items)
            if not items or offset >= body.get("total_entries", 0):
                return

    def get_dag(self, dag_id: str) -> dict[str, Any] | None:
        r = self.client.get(f"/api/v2/dags/{dag_id}")
        if r.status_code == 404:
            return None
        r.raise_for_status()
        return dict(r.json())

    def wait_for_dag(self, dag_id: str, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            dag = self.get_dag(dag_id)
            if dag is not None:
                return dag
            if time.monotonic() > deadline:
                errors = list(self._paged("/api/v2/importErrors", "import_errors"))
                raise TimeoutError(f"DAG {dag_id!r} not found after {timeout}s; import errors: {errors}")
            time.sleep(POLL_INTERVAL)

    def unpause(self, dag_id: str) -> None:
        r = self.client.patch(f"/api/v2/dags/{dag_id}", json={"is_paused": False})
        r.raise_for_status()

    def trigger_dag(
        self,
        dag_id: str,
        conf: dict[str, Any] | None = None,
        *,
        unpause: bool = True,
        run_id: str | None = None,
    ) -> str:
        """Trigger a manual run via POST /api/v2/dags/{dag_id}/dagRuns; returns the dag_run_id."""
        self.wait_for_dag(dag_id)
        if unpause:
            self.unpause(dag_id)
        # A run id of our own, so that a POST retried after SQLite's "database is locked" (a 500
        # whose transaction rolled back, seen on a loaded machine) cannot start a second run.
        run_id = run_id or f"manual__e2e_{secrets.token_hex(6)}"
        body: dict[str, Any] = {"logical_date": None, "conf": conf or {}, "dag_run_id": run_id}
        for attempt in range(3):
            r = self.client.post(f"/api/v2/dags/{dag_id}/dagRuns", json=body)
            if r.status_code == 409 and attempt > 0:
                return run_id  # an earlier attempt did create it
            if r.status_code < 500 or "Database error" not in r.text:
                break
            time.sleep(1.0)  # the metadata database was busy: the same request once more
        if r.status_code >= 400:
            raise AssertionError(f"trigger {dag_id} failed: {r.status_code} {r.text}")
        return str(r.json()["dag_run_id"])

    def get_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        r = self.client.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
        r.raise_for_status()
        return dict(r.json())

    def wait_for_run(
        self, dag_id: str, run_id: str, timeout: float = 120.0, states: Iterable[str] = TERMINAL_RUN_STATES
    ) -> str:
        """Poll until the run is in one of ``states`` (default: success/failed); returns the state."""
        wanted = set(states)
        deadline = time.monotonic() + timeout
        state = None
        while True:
            state = self.get_run(dag_id, run_id)["state"]
            if state in wanted:
                return str(state)
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"run {dag_id}/{run_id} still {state!r} after {timeout}s; task instances: "
                    f"{[(t['task_id'], t['state']) for t in self.task_instances(dag_id, run_id)]}"
                )
            time.sleep(POLL_INTERVAL)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return list(self._paged(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", "task_instances"))

    def task_instance(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[str, Any]:
        url = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
        if map_index >= 0:
            url += f"/{map_index}"
        r = self.client.get(url)
        r.raise_for_status()
        return dict(r.json())

    def wait_for_task_state(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        states: Iterable[str] | str,
        timeout: float = 120.0,
        map_index: int = -1,
    ) -> dict[str, Any]:
        """Poll until the TI is in one of ``states``; returns the TI dict.

        Fails fast if the TI reaches a terminal state that is not wanted.
        """
        wanted = {states} if isinstance(states, str) else set(states)
        deadline = time.monotonic() + timeout
        while True:
            ti = self.task_instance(dag_id, run_id, task_id, map_index)
            if ti["state"] in wanted:
                return ti
            if ti["state"] in TERMINAL_TI_STATES:
                raise AssertionError(f"task {task_id} ended {ti['state']!r}, wanted {sorted(wanted)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"task {task_id} still {ti['state']!r} after {timeout}s")
            time.sleep(POLL_INTERVAL)

    def xcom(
        self, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1
    ) -> Any:
        """Deserialized XCom value (GET .../xcomEntries/{key}?deserialize=true)."""
        r = self.client.get(
            f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}",
            params={"map_index": map_index, "deserialize": True, "stringify": False},
        )
        r.raise_for_status()
        return r.json()["value"]

    def task_log(
        self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1
    ) -> str:
        """One try's log (the worker's and the triggerer's parts), a line per record:
        ``<timestamp> [<level>] <logger>: <event>``.

        Airflow 3's log endpoint answers JSON or NDJSON only (``Accept: text/plain`` is a 406).
        """
        r = self.client.get(
            f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
            params={"map_index": map_index, "full_content": True},
            headers={"Accept": "application/json"},
        )
        r.raise_for_status()
        lines = []
        for record in r.json()["content"]:
            parts = [str(record["timestamp"])] if record.get("timestamp") else []
            parts += [f"[{record['level']}]"] if record.get("level") else []
            parts += [f"{record['logger']}:"] if record.get("logger") else []
            lines.append(" ".join([*parts, str(record.get("event", ""))]))
        return "\n".join(lines)

    # ------------------------------------------------------------------ debugging
    def log_tails(self, lines: int = 40) -> str:
        parts = []
        for f in sorted(self.log_dir.glob("*.log")):
            parts.append(f"----- {f.name} (last {lines} lines) -----\n{_tail(f, lines)}")
        return "\n".join(parts)

    def logs_text(self, include_task_logs: bool = True) -> str:
        """All process logs (and task log files under AIRFLOW_HOME/logs) concatenated."""
        files = sorted(self.log_dir.glob("*.log"))
        if include_task_logs:
            files += sorted(p for p in (self.home / "logs").rglob("*") if p.is_file())
        return "\n".join(f"===== {f} =====\n{f.read_text(errors='replace')}" for f in files)


# ---------------------------------------------------------------------- distributed mode
_HOSTNAME_MODULE = '''
"""Hostname callable of the distributed e2e deployment: each worker and triggerer names itself."""
import os
import socket


def hostname():
    return os.environ.get("E2E_PROCESS_HOSTNAME") or socket.getfqdn()
'''
_WORKER_CONCURRENCY = 2  # task slots per Celery worker (module level: the class's comprehension reads it)
TRIGGER_LOG = re.compile(
    r"dag_id=(?P<dag_id>[^/]+)/run_id=(?P<run_id>[^/]+)/task_id=(?P<task_id>[^/]+)/"
    r"(?:map_index=(?P<map_index>\d+)/)?attempt=(?P<try_number>\d+)\.log\.trigger\.(?P<job_id>\d+)\.log$"
)


class DistributedAirflowDeployment(AirflowDeployment):
    """The same deployment on PostgreSQL with the CeleryExecutor (Redis broker), two Celery workers
    and two triggerers (plus api-server, scheduler, dag-processor).

    ``services`` (:class:`e2e_services.Services`) are the running PostgreSQL and Redis. Each worker
    and triggerer names itself (``[core] hostname_callable``): ``worker-1``, ``triggerer-2``, ...,
    as the task instance's ``hostname`` and the triggerer job's ``hostname`` then say.
    """

    WORKERS = ("worker-1", "worker-2")
    TRIGGERERS = ("triggerer-1", "triggerer-2")
    WORKER_CONCURRENCY = _WORKER_CONCURRENCY
    PROCESSES: dict[str, list[str]] = {
        "scheduler": ["scheduler"],
        "dag-processor": ["dag-processor"],
        **{name: ["triggerer"] for name in TRIGGERERS},
        **{
            name: [
                "celery",
                "worker",
                "--celery-hostname",
                f"{name}@%h",
                "--concurrency",
                str(_WORKER_CONCURRENCY),
            ]
            for name in WORKERS
        },
    }

    def __init__(
        self, home: Path, dags_folder: Path, extra_env: Mapping[str, str] | None, services: Any
    ) -> None:
        self.services = services
        self._log_ports = {name: _free_port() for name in (*self.WORKERS, *self.TRIGGERERS)}
        super().__init__(home, dags_folder, extra_env)

    def _base_env(self) -> dict[str, str]:
        env = super()._base_env()
        pg, redis = self.services.postgres, self.services.redis
        env.update(
            {
                "PYTHONPATH": os.pathsep.join([str(self.home), env["PYTHONPATH"]]),
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": "e2e_hostname.hostname",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": pg.url,
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                # Every VideoJobOperator waits in a triggerer (the examples leave deferrable unset).
                "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",
                "AIRFLOW__CELERY__BROKER_URL": redis.url,
                "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + pg.url,
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.WORKER_CONCURRENCY),
                "AIRFLOW__CELERY__SYNC_PARALLELISM": "1",
                "AIRFLOW__CELERY__OPERATION_TIMEOUT": "30",
                "AIRFLOW__CORE__PARALLELISM": "8",
                "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "64",
                # A task whose worker died is failed (and retried) 30 s after its last heartbeat.
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
                # Few triggers each, a few per loop: they spread over both triggerers.
                "AIRFLOW__TRIGGERER__CAPACITY": "12",
                "AIRFLOW__TRIGGERER__MAX_TRIGGER_TO_SELECT_PER_LOOP": "4",
                # A triggerer silent this long is dead: its triggers go to the other one.
                # (Airflow's default, 30 s: on 2 busy cores both triggerers' heartbeats were seen
                # to lag 17 s at once, and a lower threshold moved healthy triggers.)
                "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "30",
            }
        )
        return env

    def process_env(self, name: str) -> dict[str, str]:
        if name in self.WORKERS:
            return {
                "E2E_PROCESS_HOSTNAME": name,
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self._log_ports[name]),
            }
        if name in self.TRIGGERERS:
            return {
                "E2E_PROCESS_HOSTNAME": name,
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self._log_ports[name]),
            }
        return {}

    def start(self, timeout: float = 180.0) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "e2e_hostname.py").write_text(_HOSTNAME_MODULE)
        super().start(timeout)

    def _wait_ready(self, deadline: float) -> None:
        """Both triggerers heartbeat, and both Celery workers are ready (their logs say so)."""
        while True:
            self._check_alive()
            triggerers = set(self.alive_triggerers().values())
            workers = {name for name in self.WORKERS if f"{name}@" in self._ready_line(name)}
            if triggerers >= set(self.TRIGGERERS) and workers == set(self.WORKERS):
                return
            if time.monotonic() > deadline:
                raise AirflowStartupError(
                    f"not all ready: triggerers {sorted(triggerers)}, workers {sorted(workers)}\n"
                    f"{self.log_tails()}"
                )
            time.sleep(1.0)

    def _ready_line(self, name: str) -> str:
        """Celery's ``<name>@<host> ready.`` line in the worker's log, or ''."""
        log = self.log_dir / f"{name}.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        return next((line for line in text.splitlines() if f"{name}@" in line and " ready." in line), "")

    # ------------------------------------------------------------------ processes
    def signal(self, name: str, sig: int) -> None:
        """Send ``sig`` to process ``name`` and all its children (its process group)."""
        _kill_group(self.procs[name], sig)

    def kill(self, name: str) -> None:
        """SIGKILL process ``name`` with its children, and reap it."""
        self.signal(name, signal.SIGKILL)
        self.procs[name].wait(timeout=30)
        _LIVE_PROCS.remove(self.procs[name])

    def restart(self, name: str) -> None:
        """Start process ``name`` again (after :meth:`kill`), appending to the same log file."""
        assert self.procs[name].poll() is not None, f"{name} still runs"
        self._spawn(name, self.PROCESSES[name])

    # ------------------------------------------------------------------ observations
    def alive_triggerers(self) -> dict[int, str]:
        """Triggerer job id -> process name (its hostname), of the triggerers whose job runs."""
        rows = self.services.postgres.psql(
            "SELECT id, hostname FROM job WHERE job_type = 'TriggererJob' AND state = 'running' "
            "AND latest_heartbeat > now() - interval '10 seconds'"
        )
        return {int(i): host for i, _, host in (row.partition("|") for row in rows.split()) if i}

    def triggerer_names(self) -> dict[int, str]:
        """Every triggerer job id (alive or not) -> its process name."""
        rows = self.services.postgres.psql("SELECT id, hostname FROM job WHERE job_type = 'TriggererJob'")
        return {int(i): host for i, _, host in (row.partition("|") for row in rows.split()) if i}

    def task_log_file(
        self, dag_id: str, run_id: str, task_id: str, map_index: int = -1, try_number: int = 1
    ) -> str:
        """One try's log file as the worker wrote it (JSON lines), or '' if none."""
        folder = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        if map_index >= 0:
            folder = folder / f"map_index={map_index}"
        path = folder / f"attempt={try_number}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def resumes(
        self, dag_id: str, run_id: str, task_id: str, map_index: int = -1, try_number: int = 1
    ) -> int:
        """How often the try ran again after deferring: the trigger events it was given."""
        text = self.task_log_file(dag_id, run_id, task_id, map_index, try_number)
        return text.count("::group::Pre Execute") - 1 if text.count("Pausing task as DEFERRED") else 0

    def trigger_logs(self, dag_id: str, run_id: str) -> dict[tuple[str, int, int], dict[str, dict[str, int]]]:
        """Per (task_id, map_index, try): per triggerer name, how often the trigger started there
        (``trigger ... starting``) and how many events it fired (``Trigger fired event``), from the
        triggerers' per-task log files (``attempt=N.log.trigger.<triggerer job id>.log``)."""
        names = self.triggerer_names()
        found: dict[tuple[str, int, int], dict[str, dict[str, int]]] = {}
        for path in (self.home / "logs").rglob("*.log.trigger.*.log"):
            m = TRIGGER_LOG.search(path.as_posix())
            if not m or m["dag_id"] != dag_id or m["run_id"] != run_id:
                continue
            text = path.read_text(errors="replace")
            key = (m["task_id"], int(m["map_index"] or -1), int(m["try_number"]))
            where = names.get(int(m["job_id"]), f"triggerer job {m['job_id']}")
            found.setdefault(key, {})[where] = {
                "starts": len(re.findall(r"trigger \S.* starting", text)),
                "events": text.count("Trigger fired event"),
            }
        return found


# ---------------------------------------------------------------------- pytest plumbing
def pytest_addoption(parser: pytest.Parser) -> None:
    # Only registered when this conftest is an "initial" conftest (pytest tests/e2e ...);
    # the env var E2E_AIRFLOW_DAGS_FOLDER works everywhere.
    with contextlib.suppress(ValueError):
        parser.addoption("--airflow-dags-folder", default=None, help="DAGs folder for the e2e deployment")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: end-to-end test against a real Airflow deployment")
    config.addinivalue_line(
        "markers", "e2e_any_config: e2e test that works with any airflow_dags_folder/airflow_extra_env"
    )
    config.addinivalue_line(
        "markers",
        "e2e_distributed: e2e test on the distributed deployment (PostgreSQL, Celery, two triggerers)",
    )


@pytest.fixture(scope="session")
def airflow_dags_folder(pytestconfig: pytest.Config) -> Path:
    opt = pytestconfig.getoption("--airflow-dags-folder", default=None)
    return Path(opt or os.environ.get("E2E_AIRFLOW_DAGS_FOLDER") or DEFAULT_DAGS_FOLDER).resolve()


@pytest.fixture(scope="session")
def e2e_video_server() -> Iterator[tuple[Any, str]]:
    """The bundled local Videos API server, with a distinctive key, for the whole e2e session.

    Jobs last 20 s: longer than the few seconds after deferral in which Airflow 3.3's scheduler
    can race a firing trigger (apache/airflow#72716).
    """
    from airflow_video_edit.server import LocalVideosServer

    api_key = "sk-e2e-" + secrets.token_hex(12)
    with LocalVideosServer(api_key=api_key, job_seconds=20, poll_after_ms=1000) as server:
        yield server, api_key


@pytest.fixture(scope="session")
def e2e_output_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("video-edit-out")


@pytest.fixture(scope="session")
def e2e_openlineage_events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the deployment's OpenLineage events go (file transport, one JSON event a line), when
    the openlineage provider is installed (tests/e2e/test_lineage_events.py)."""
    return tmp_path_factory.mktemp("openlineage") / "events.jsonl"


@pytest.fixture(scope="session")
def airflow_extra_env(
    e2e_video_server: tuple[Any, str], e2e_output_dir: Path, e2e_openlineage_events: Path
) -> dict[str, str]:
    """The connection to the local server and where the example DAGs write, for every process."""
    server, api_key = e2e_video_server
    connection = {
        "conn_type": "openai_videos",
        "host": server.url,
        "password": api_key,
        # The "Video job" link of the tasks: the local server's own job pages.
        "extra": {"job_url_template": server.job_url_template},
    }
    return {
        "AIRFLOW_CONN_OPENAI_VIDEOS_DEFAULT": json.dumps(connection),
        # The UI's Test button (tests/e2e/test_browser.py).
        "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "e2e",
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(e2e_openlineage_events), "append": True}
        ),
        "VIDEO_EDIT_OUTPUT_DIR": str(e2e_output_dir),
        "VIDEO_EDIT_POLL_INTERVAL": "2",
    }


def _startup_timeout() -> float:
    return float(os.environ.get("E2E_AIRFLOW_STARTUP_TIMEOUT", "180"))


def _remove_home(home: Path) -> None:
    if os.environ.get("E2E_AIRFLOW_KEEP_HOME") == "1":
        print(f"\n[e2e] kept AIRFLOW_HOME {home}")
    else:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def airflow_deployment(
    airflow_dags_folder: Path, airflow_extra_env: dict[str, str]
) -> Iterator[AirflowDeployment]:
    dep = AirflowDeployment(
        Path(tempfile.mkdtemp(prefix="airflow-e2e-")), airflow_dags_folder, airflow_extra_env
    )
    _DEPLOYMENTS.append(dep)
    try:
        dep.start(timeout=_startup_timeout())
        yield dep
    finally:
        dep.stop()
        dep.client.close()
        _remove_home(dep.home)


@pytest.fixture(autouse=True)
def _airflow_deployment_config_guard(request: pytest.FixtureRequest) -> None:
    """Keep the session deployment in line with the overrides visible to the current test.

    ``airflow_deployment`` is session-scoped: it is started with the ``airflow_dags_folder`` /
    ``airflow_extra_env`` seen by the first test using it. If a later test module overrides them
    differently, the deployment is restarted in place with that module's config (costs one startup).
    Tests marked ``@pytest.mark.e2e_any_config`` accept whatever deployment runs (and are moved to the
    end of the session so that they never force a restart).
    """
    if "airflow_deployment" not in request.fixturenames or request.node.get_closest_marker("e2e_any_config"):
        return
    dep = request.getfixturevalue("airflow_deployment")
    folder = Path(request.getfixturevalue("airflow_dags_folder"))
    extra = request.getfixturevalue("airflow_extra_env")
    if not dep.matches(folder, extra):
        print(f"\n[e2e] {request.node.nodeid}: different airflow_dags_folder/airflow_extra_env -> restart")
        dep.restart_with(folder, extra, _startup_timeout())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Config-agnostic e2e tests run last: they reuse whatever deployment the other tests configured.
    # The distributed ones after all: they stop the SQLite deployment to have the cores to themselves.
    items.sort(
        key=lambda item: (
            item.get_closest_marker("e2e_distributed") is not None,
            item.get_closest_marker("e2e_any_config") is not None,
        )
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """On failure of a test using the deployment, attach the process log tails to the report."""
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and "airflow_deployment" in getattr(item, "fixturenames", ()):
        dep = getattr(item, "funcargs", {}).get("airflow_deployment")
        if isinstance(dep, AirflowDeployment):
            rep.sections.append(("airflow process logs (tails)", dep.log_tails(80)))


# ---------------------------------------------------------------------- distributed fixtures
@pytest.fixture(scope="session")
def distributed_services() -> Iterator[Any]:
    """PostgreSQL and Redis of their own (installed with apt where missing, as root).

    Not installable (not root), outside CI: the distributed tests skip, saying why; under
    ``CI=true`` they fail instead. Missing Python packages (the ``test`` extra) likewise.
    """
    from e2e_services import Services, ServiceUnavailable

    def unavailable(reason: str) -> None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"distributed e2e deployment: {reason}", pytrace=False)
        pytest.skip(f"distributed e2e deployment: {reason}")

    for module in ("airflow.providers.celery", "psycopg2"):
        try:
            __import__(module)
        except ImportError:
            unavailable(f"{module} is not installed (pip install -e '.[test]')")
    try:
        services = Services()
    except ServiceUnavailable as e:
        unavailable(str(e))
    services.start()
    try:
        yield services
    finally:
        services.stop()


@pytest.fixture(scope="session")
def distributed_deployment(
    distributed_services: Any,
    airflow_dags_folder: Path,
    e2e_video_server: tuple[Any, str],
    e2e_output_dir: Path,
) -> Iterator[DistributedAirflowDeployment]:
    """The distributed deployment, with the local server's connection stored in its database (no
    ``AIRFLOW_CONN_...`` variable: the key is in the ``connection`` table only, encrypted)."""
    for other in _DEPLOYMENTS:  # the SQLite deployment: its tests have run (these run last)
        other.stop()
    server, api_key = e2e_video_server
    extra_env = {"VIDEO_EDIT_OUTPUT_DIR": str(e2e_output_dir), "VIDEO_EDIT_POLL_INTERVAL": "2"}
    dep = DistributedAirflowDeployment(
        Path(tempfile.mkdtemp(prefix="airflow-e2e-distributed-")),
        airflow_dags_folder,
        extra_env,
        distributed_services,
    )
    try:
        dep.start(timeout=max(_startup_timeout(), 300.0))
        r = dep.client.post(
            "/api/v2/connections",
            json={
                "connection_id": "openai_videos_default",
                "conn_type": "openai_videos",
                "host": server.url,
                "password": api_key,
            },
        )
        assert r.status_code == 201, r.text
        yield dep
    finally:
        dep.stop()
        dep.client.close()
        _remove_home(dep.home)
