"""PostgreSQL and Redis for the distributed e2e deployment, started by the test session itself.

Each is Debian's server (``postgresql``, ``redis-server``), run as a fresh instance of its own in
a temporary folder, on a free port on 127.0.0.1, and stopped (its process group killed) when the
session ends. Where a server is missing it is installed with ``apt-get`` when running as root; as
another user, outside CI, the distributed tests are skipped with the reason (under ``CI=true``
they fail instead). PostgreSQL refuses to run as root: as root, ``initdb`` and ``postgres`` run as
the ``postgres`` user (``runuser``), the data folder chowned to it.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from glob import glob
from pathlib import Path

APT_PACKAGES = {"postgres": "postgresql", "redis": "redis-server"}
_RUNNING: list[_Server] = []  # stopped at exit too, should the session end abnormally
atexit.register(lambda: [server.stop() for server in list(_RUNNING)])


class ServiceUnavailable(RuntimeError):
    """The server is not installed and cannot be (not root): the caller skips or fails."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def postgres_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding ``initdb`` and ``postgres``."""
    found = [Path(p).parent for p in glob("/usr/lib/postgresql/*/bin/initdb")]
    found = [d for d in found if (d / "postgres").exists()]
    return max(found, key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else 0) if found else None


def redis_server_bin() -> str | None:
    return shutil.which("redis-server") or next(iter(glob("/usr/bin/redis-server")), None)


def _run_step(what: str, cmd: list[str], **kwargs: object) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise RuntimeError(
            f"{what} failed (rc={proc.returncode}): {' '.join(cmd)}\n{proc.stdout}{proc.stderr}"
        )


def apt_install(*services: str) -> None:
    """Install the Debian packages of the missing ``services`` ("postgres", "redis"), as root."""
    packages = [APT_PACKAGES[s] for s in services]
    if os.geteuid() != 0:
        raise ServiceUnavailable(
            f"{', '.join(packages)} not installed, and not root to install it: "
            f"run `apt-get install {' '.join(packages)}` as root"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run_step("apt-get update (installing " + " ".join(packages) + ")", ["apt-get", "update"], env=env)
    _run_step(
        "apt-get install " + " ".join(packages),
        ["apt-get", "install", "-y", "--no-install-recommends", *packages],
        env=env,
    )


def ensure_installed() -> None:
    missing = [
        s for s, found in (("postgres", postgres_bin_dir()), ("redis", redis_server_bin())) if not found
    ]
    if missing:
        apt_install(*missing)
    if postgres_bin_dir() is None or redis_server_bin() is None:
        raise RuntimeError("apt-get install ran, yet initdb/postgres or redis-server is still missing")


class _Server:
    name = "server"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = root / f"{self.name}.log"

    def _popen(self, cmd: list[str]) -> None:
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen(
                cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        _RUNNING.append(self)

    def _wait(self, ready: object, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited (rc={self.proc.returncode}):\n{self.log_tail()}")
            if ready():  # type: ignore[operator]
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not ready within {timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.2)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=15)
                break
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # whatever of the group outlived its leader
        self.proc = None
        if self in _RUNNING:
            _RUNNING.remove(self)


class PostgresServer(_Server):
    """A PostgreSQL cluster of its own (``initdb`` in a temporary folder), database ``airflow``."""

    name = "postgres"
    user = "airflow"

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        found = postgres_bin_dir()
        if found is None:
            raise ServiceUnavailable("PostgreSQL (initdb, postgres) is not installed")
        self.bin = found
        self.data = root / "pgdata"
        self.url = f"postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/airflow"
        self.dsn = f"postgresql://{self.user}@127.0.0.1:{self.port}/airflow"

    def _as_owner(self, cmd: list[str]) -> list[str]:
        # postgres refuses to run as root: run it as the postgres user, which owns the folder.
        return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd

    def start(self, timeout: float = 60.0) -> None:
        self.data.mkdir(mode=0o700)
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            for path in (self.root, self.data):
                os.chown(path, pw.pw_uid, pw.pw_gid)
        _run_step(
            "initdb",
            self._as_owner(
                [
                    str(self.bin / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    self.user,
                    "--auth=trust",
                    "-E",
                    "UTF8",
                ]
            ),
        )
        self._popen(
            self._as_owner(
                [
                    str(self.bin / "postgres"),
                    "-D",
                    str(self.data),
                    "-p",
                    str(self.port),
                    "-h",
                    "127.0.0.1",
                    "-k",
                    str(self.data),  # its unix socket: not the system's /var/run/postgresql
                    "-c",
                    "max_connections=300",
                    "-c",
                    "fsync=off",  # a throw-away cluster: speed over durability
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                ]
            )
        )
        self._wait(self._ready, timeout)
        self.psql("CREATE DATABASE airflow", database="postgres")

    def _ready(self) -> bool:
        probe = [str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user]
        return subprocess.run(probe, capture_output=True, check=False).returncode == 0

    def psql(self, sql: str, database: str = "airflow") -> str:
        cmd = [
            str(self.bin / "psql"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            self.user,
            "-d",
            database,
        ]
        proc = subprocess.run(
            [*cmd, "-v", "ON_ERROR_STOP=1", "-X", "-q", "-A", "-t", "-c", sql],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"psql {sql!r} failed: {proc.stderr}")
        return proc.stdout

    def dump(self) -> str:
        """Every table's data, as ``pg_dump --data-only`` writes it (COPY blocks)."""
        cmd = [str(self.bin / "pg_dump"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user]
        proc = subprocess.run([*cmd, "--data-only", "airflow"], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"pg_dump failed: {proc.stderr}")
        return proc.stdout


class RedisServer(_Server):
    """A Redis server of its own: no persistence, loopback only."""

    name = "redis"

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        found = redis_server_bin()
        if found is None:
            raise ServiceUnavailable("redis-server is not installed")
        self.bin = found
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 30.0) -> None:
        cmd = [self.bin, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self._popen([*cmd, "--dir", str(self.root), "--daemonize", "no"])
        self._wait(self._ready, timeout)

    def _ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False


class Services:
    """PostgreSQL and Redis, started together (installed first where missing) and stopped together."""

    def __init__(self) -> None:
        ensure_installed()
        self.root = Path(tempfile.mkdtemp(prefix="airflow-e2e-services-"))
        os.chmod(self.root, 0o755)  # the postgres user must reach its data folder below it
        (self.root / "pg").mkdir()
        (self.root / "redis").mkdir()
        self.postgres = PostgresServer(self.root / "pg")
        self.redis = RedisServer(self.root / "redis")

    def start(self) -> Services:
        try:
            self.postgres.start()
            self.redis.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self.redis.stop()
        self.postgres.stop()
        if os.environ.get("E2E_AIRFLOW_KEEP_HOME") != "1":
            shutil.rmtree(self.root, ignore_errors=True)
