"""Benchmark 3: what importing the provider's DAG-facing modules adds to ``import airflow.sdk``.

Each measurement is a fresh interpreter: ``import airflow.sdk`` first (the baseline every DAG file
pays), then the modules under test; wall time by ``time.perf_counter`` around the second step and
peak RSS (``ru_maxrss``) after each step. Median of ``--runs`` processes.
Budget: +30 ms and +3 MiB for airflow_video_edit.operators + airflow_video_edit.hooks.

Usage: .venv/bin/python benchmarks/hook/bench_import.py [--runs 5] [module ...]
       (default modules: airflow_video_edit.operators airflow_video_edit.hooks; missing ones are
       skipped with a note; --compare adds airflow.providers.standard.operators.python)
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import median, run_child

CHILD = r"""
import json, resource, sys, time
rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
def current_kib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
start = time.perf_counter()
import airflow.sdk
base_seconds = time.perf_counter() - start
base_rss = rss()
base_now = current_kib()
start = time.perf_counter()
for name in sys.argv[1:]:
    __import__(name)
seconds = time.perf_counter() - start
print(json.dumps({"base_ms": base_seconds * 1000, "base_rss_kib": base_rss, "ms": seconds * 1000,
                  "rss_kib": rss() - base_rss, "now_kib": current_kib() - base_now,
                  "modules": len(sys.modules)}))
"""


# Deployed interpreters import from cached bytecode. The environment may disable writing it
# (PYTHONDONTWRITEBYTECODE), which would make every run compile every module from source, so the
# children cache bytecode under a private prefix, outside the repository and the venv.
PYC_ENV = {
    "PYTHONDONTWRITEBYTECODE": "",
    "PYTHONPYCACHEPREFIX": str(Path(tempfile.gettempdir()) / "airflow-video-edit-bench" / "pycache"),
}


def measure(modules: list[str], runs: int) -> dict[str, float]:
    run_child(CHILD, *modules, env=PYC_ENV)  # warm-up: writes the bytecode cache
    results = [run_child(CHILD, *modules, env=PYC_ENV) for _ in range(runs)]
    return {key: median([r[key] for r in results]) for key in results[0]}


def heaviest(modules: list[str], top: int = 12) -> list[str]:
    """The slowest imports (cumulative) under ``-X importtime``, after airflow.sdk is loaded."""
    code = "import airflow.sdk, sys; sys.stderr.write('---MARK---\\n'); " + "; ".join(
        f"import {m}" for m in modules
    )
    stderr = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **PYC_ENV},
    ).stderr
    rows = []
    for line in stderr.split("---MARK---", 1)[1].splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cumulative, name = (part.strip() for part in line[len("import time:") :].split("|"))
            if cumulative.isdigit():
                rows.append((int(cumulative), name))
    return [f"{us / 1000:7.1f} ms  {name}" for us, name in sorted(rows, reverse=True)[:top]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "modules", nargs="*", default=["airflow_video_edit.operators", "airflow_video_edit.hooks"]
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--compare", default="airflow.providers.standard.operators.python")
    args = parser.parse_args()
    modules = []
    for module in args.modules:
        if importlib.util.find_spec(module) is None:
            print(f"note: {module} is not installed/does not exist yet; skipped")
        else:
            modules.append(module)
    baseline = measure([], args.runs)
    print(
        f"import airflow.sdk alone: {baseline['base_ms']:.0f} ms, "
        f"peak RSS {baseline['base_rss_kib'] / 1024:.1f} MiB"
    )
    groups = [modules] + [[m] for m in modules if len(modules) > 1]
    if args.compare and importlib.util.find_spec(args.compare.rsplit(".", 1)[0]) is not None:
        groups.append([args.compare])
    for group in groups:
        result = measure(group, args.runs)
        print(
            f"+ {' + '.join(group)}: +{result['ms']:.1f} ms, +{result['rss_kib'] / 1024:.2f} MiB peak RSS, "
            f"+{result['now_kib'] / 1024:.2f} MiB current RSS "
            f"(+{result['modules'] - baseline['modules']:.0f} modules)"
        )
    if modules:
        print("heaviest imports after airflow.sdk (cumulative, one -X importtime run):")
        for row in heaviest(modules):
            print("   " + row)


if __name__ == "__main__":
    main()
