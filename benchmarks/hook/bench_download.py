"""Benchmark 1: download a 1 GiB content reply from 127.0.0.1 to disk.

Compares ``OpenAIVideosHook.download_content`` (a fresh process each run, the connection from an
``AIRFLOW_CONN_*`` variable) with ``curl -o`` against the same server and target directory.
Budget: client peak RSS growth <= 64 MiB; throughput >= 0.8 x curl. Median of ``--runs`` runs.

Usage: .venv/bin/python benchmarks/hook/bench_download.py [--runs 3] [--dir /tmp/bench] [--via hook|client]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

from _common import GIB, MIB, make_file, median, run_child, serve

# Runs in a fresh interpreter: imports first, then the baseline RSS, then the download.
CHILD = r"""
import json, resource, sys, time
via, base_url, destination = sys.argv[1:4]
from airflow_video_edit import calls, clients
from airflow_video_edit.settings import ClientSettings
from airflow_video_edit.hooks import OpenAIVideosHook
if via == "hook":
    hook = OpenAIVideosHook()
    hook.settings  # resolve the connection before the baseline
    download = lambda: hook.download_content("video_bench", destination)
else:
    client = clients.VideosClient(ClientSettings(base_url=base_url, api_key="sk-bench"))
    download = lambda: client.download(calls.download_content("video_bench"), destination)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
result = download()
seconds = time.perf_counter() - start
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "bytes": result.bytes,
                  "rss_before_kib": before, "rss_after_kib": after}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "airflow-video-edit-bench")
    parser.add_argument("--via", choices=["hook", "client"], default="hook")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    source = make_file(args.dir / "source-1gib.bin")
    target = args.dir / "downloaded.mp4"
    rates: dict[str, list[float]] = {"curl": [], args.via: []}
    growths = []
    with serve(source) as base_url:
        env = {
            "AIRFLOW_CONN_OPENAI_VIDEOS_DEFAULT": json.dumps(
                {"conn_type": "openai_videos", "host": base_url, "password": "sk-bench"}
            )
        }
        url = f"{base_url}/videos/video_bench/content?variant=video"
        for run in range(1, args.runs + 1):
            # Each transfer starts with no dirty pages pending (sync), and the order alternates, so
            # no side pays for another's writeback.
            sides = ["curl", "client"]
            for side in sides if run % 2 else sides[::-1]:
                target.unlink(missing_ok=True)
                subprocess.run(["sync"], check=True)
                if side == "curl":
                    start = time.perf_counter()
                    subprocess.run(["curl", "-sS", "--fail", "-o", str(target), url], check=True)
                    rates["curl"].append(GIB / MIB / (time.perf_counter() - start))
                else:
                    child = run_child(CHILD, args.via, base_url, str(target), env=env)
                    assert child["bytes"] == GIB
                    rates[args.via].append(GIB / MIB / child["seconds"])
                    growths.append((child["rss_after_kib"] - child["rss_before_kib"]) / 1024)
                assert target.stat().st_size == GIB
            target.unlink()
            print(f"run {run}: " + "  ".join(f"{k} {v[-1]:.1f} MiB/s" for k, v in rates.items()))
    medians = {name: median(values) for name, values in rates.items()}
    print("median MiB/s: " + ", ".join(f"{name} {value:.1f}" for name, value in medians.items()))
    print(f"ratio {args.via} / curl: {medians[args.via] / medians['curl']:.2f} (budget >= 0.8)")
    print(
        f"client peak RSS growth: median {median(growths):.1f} MiB, max {max(growths):.1f} MiB (budget <= 64)"
    )


if __name__ == "__main__":
    main()
