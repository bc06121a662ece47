"""Throughput benchmarks of the local server, each against a baseline in the same run.

1. Retrieve (GET /v1/videos/{id}) vs a bare Starlette "hello JSON" app: both under uvicorn,
   one worker, log level warning, separate processes; load from ``wrk``.
2. Download of a 1 GiB file (GET /v1/videos/{id}/content) vs ``python -m http.server`` serving
   the same file; client ``curl -o /dev/null``; the server's peak RSS from /proc (VmHWM).

Usage: python benchmarks/server/bench.py [--duration 10] [--connections 32]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
PY = sys.executable
KEY = "sk-bench"


def wait_port(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def start(command: list[str], url: str, **kwargs: object) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs)  # type: ignore[call-overload]
    wait_port(url)
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    process.wait(10)


def wrk(url: str, duration: int, connections: int, headers: list[str]) -> float:
    args = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", *[a for h in headers for a in ("-H", h)], url]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(out)
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]


def serve_command(port: int, *extra: str) -> list[str]:
    return [
        PY,
        "-m",
        "airflow_video_edit.server",
        "--port",
        str(port),
        "--api-key",
        KEY,
        "--log-level",
        "warning",
        *extra,
    ]


def retrieve_bench(duration: int, connections: int) -> None:
    hello = start(
        [PY, "-m", "uvicorn", "hello_app:app", "--port", "8801", "--log-level", "warning", "--no-access-log"],
        "http://127.0.0.1:8801/hello",
        cwd=HERE,
    )
    try:
        base = wrk("http://127.0.0.1:8801/hello", duration, connections, [])
    finally:
        stop(hello)
    print(f"hello JSON (bare Starlette)        : {base:9.0f} req/s")
    variants = [("access log on (INFO)", ["--log-level", "info"]), ("access log off", ["--no-access-log"])]
    for label, extra in variants:
        command = serve_command(8802, *extra)
        server = start(command, "http://127.0.0.1:8802/_server/stats")
        try:
            auth = {"Authorization": f"Bearer {KEY}"}
            video = httpx.post(
                "http://127.0.0.1:8802/v1/videos", json={"prompt": "bench"}, headers=auth
            ).json()
            rate = wrk(
                f"http://127.0.0.1:8802/v1/videos/{video['id']}",
                duration,
                connections,
                [f"Authorization: Bearer {KEY}"],
            )
        finally:
            stop(server)
        print(f"retrieve, {label:24}: {rate:9.0f} req/s  ({rate / base:.2f}x)")


def curl_seconds(url: str, headers: list[str]) -> float:
    args = [
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{time_total}",
        *[a for h in headers for a in ("-H", h)],
        url,
    ]
    return float(subprocess.run(args, capture_output=True, text=True, check=True).stdout)


def peak_rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]


def download_bench(size_mib: int) -> None:
    from airflow_video_edit.server.jobs import JobStore

    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        big = Path(tmp) / "www" / "big.bin"
        big.parent.mkdir()
        with big.open("wb") as out:
            block = os.urandom(1024 * 1024)
            for _ in range(size_mib):
                out.write(block)
        store = JobStore(Path(tmp) / "data")
        video_id = store.import_video(big, link=True, previews=False)
        store.close()
        plain = start(
            [PY, "-m", "http.server", "8803", "--bind", "127.0.0.1", "--directory", str(big.parent)],
            "http://127.0.0.1:8803/",
        )
        try:
            curl_seconds("http://127.0.0.1:8803/big.bin", [])  # warm the page cache
            base = min(curl_seconds("http://127.0.0.1:8803/big.bin", []) for _ in range(3))
        finally:
            stop(plain)
        server = start(
            serve_command(8804, "--data-dir", str(Path(tmp) / "data"), "--no-access-log"),
            "http://127.0.0.1:8804/_server/stats",
        )
        try:
            rss_before = peak_rss_mib(server.pid)
            url = f"http://127.0.0.1:8804/v1/videos/{video_id}/content"
            ours = min(curl_seconds(url, [f"Authorization: Bearer {KEY}"]) for _ in range(3))
            rss = peak_rss_mib(server.pid)
        finally:
            stop(server)
    mib = size_mib
    print(f"download {mib} MiB, python -m http.server: {mib / base:7.0f} MiB/s ({base:.2f} s)")
    print(
        f"download {mib} MiB, local server        : {mib / ours:7.0f} MiB/s ({ours:.2f} s)  "
        f"({base / ours:.2f}x); server peak RSS {rss_before:.0f} MiB before, {rss:.0f} MiB after"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--only", choices=["retrieve", "download"])
    args = parser.parse_args()
    if args.only != "download":
        retrieve_bench(args.duration, args.connections)
    if args.only != "retrieve":
        download_bench(args.size_mib)


if __name__ == "__main__":
    main()
