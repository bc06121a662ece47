"""Helpers shared by the hook benchmarks: a test file, the server process, a fresh client process."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
GIB = 1024**3
MIB = 1024**2


def make_file(path: Path, size: int = GIB) -> Path:
    """A file of ``size`` bytes shaped as an MP4 (``ftyp``, ``moov``, then an ``mdat`` of
    non-repeating-looking bytes, not sparse): downloads check the type and the box walk. Reused
    if already there."""
    head = _box(b"ftyp", b"isom\x00\x00\x02\x00isomiso2mp41") + _box(b"moov", b"\x00" * 100)
    head += (size - len(head)).to_bytes(4, "big") + b"mdat"
    if path.exists() and path.stat().st_size == size:
        with path.open("rb") as handle:
            if handle.read(len(head)) == head:
                return path
    block = os.urandom(4 * MIB)
    with path.open("wb") as handle:
        handle.write(head)
        left = size - len(head)
        for _ in range(left // len(block)):
            handle.write(block)
        handle.write(block[: left % len(block)])
    return path


def _box(kind: bytes, payload: bytes) -> bytes:
    return (8 + len(payload)).to_bytes(4, "big") + kind + payload


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serve(file: Path) -> Iterator[str]:
    """Run server.py in its own process; yield its base URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(HERE / "server.py"), str(port), str(file)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        if process.stdout.readline().strip() != "ready":
            raise RuntimeError("benchmark server did not start")
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        process.wait(timeout=10)


def run_child(code: str, *args: str, env: dict[str, str] | None = None) -> dict[str, float]:
    """Run ``code`` in a fresh interpreter; it prints one JSON object as its last line."""
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **(env or {})},
    )
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
