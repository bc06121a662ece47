"""Benchmark 2: edit by upload of a 1 GiB file to a server on 127.0.0.1 that discards the body.

``VideosClient.request(calls.edit_video(path, "prompt"))`` in a fresh process; budget: client peak
RSS growth <= 64 MiB. Median of ``--runs`` runs.

Usage: .venv/bin/python benchmarks/hook/bench_upload.py [--runs 3] [--dir /tmp/airflow-video-edit-bench]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _common import GIB, MIB, make_file, median, run_child, serve

CHILD = r"""
import json, resource, sys, time
base_url, source = sys.argv[1:3]
from airflow_video_edit import calls, clients
from airflow_video_edit.settings import ClientSettings
client = clients.VideosClient(ClientSettings(base_url=base_url, api_key="sk-bench", read_timeout=600))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
video = client.request(calls.edit_video(source, "prompt"))
seconds = time.perf_counter() - start
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "received": video.received_bytes, "rss_before_kib": before,
                  "rss_after_kib": after}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "airflow-video-edit-bench")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    source = make_file(args.dir / "source-1gib.bin")  # a path with "/" is an upload
    growths, rates = [], []
    with serve(source) as base_url:
        for run in range(1, args.runs + 1):
            child = run_child(CHILD, base_url, str(source))
            # The multipart body is the file plus the form fields and boundaries.
            assert GIB < child["received"] < GIB + 4096, child
            growth = (child["rss_after_kib"] - child["rss_before_kib"]) / 1024
            rate = GIB / MIB / child["seconds"]
            growths.append(growth)
            rates.append(rate)
            print(
                f"run {run}: {rate:.1f} MiB/s, RSS growth {growth:.1f} MiB "
                f"(baseline {child['rss_before_kib'] / 1024:.0f} MiB)"
            )
    print(
        f"median: {median(rates):.1f} MiB/s, client peak RSS growth {median(growths):.1f} MiB "
        f"(max {max(growths):.1f}; budget <= 64)"
    )


if __name__ == "__main__":
    main()
