"""The README's main command as a new user meets it: a fresh clone, nothing else.

The working tree (what git tracks, plus new files it does not ignore) is copied into a new folder
outside the repository, with no ``../shared`` beside it, and ``bash scripts/demo.sh`` runs there
with a PATH that has no ``uv`` and no virtual environment on it, and no Airflow settings in the
environment. It passes only if the demo prints the path of a valid published MP4 and the system
interpreter's ``site-packages`` (and user site) are exactly as they were.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.setup

_LISTING = (
    "import json, os, site; "
    "dirs = [*site.getsitepackages(), site.getusersitepackages()]; "
    "print(json.dumps({d: sorted(os.listdir(d)) if os.path.isdir(d) else None for d in dirs}))"
)


def _bare_path() -> str:
    """PATH without any folder that holds ``uv`` or belongs to a virtual environment."""
    kept = []
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        here = Path(folder)
        if not folder or (here / "uv").exists() or (here.parent / "pyvenv.cfg").exists():
            continue
        kept.append(folder)
    return os.pathsep.join(kept)


def _bare_env() -> dict[str, str]:
    dropped = ("AIRFLOW", "VIRTUAL_ENV", "PYTHON", "VIDEO", "VIDEOS_", "UV_", "E2E_")
    env = {key: value for key, value in os.environ.items() if not key.startswith(dropped)}
    env["PATH"] = _bare_path()
    return env


def _copy_working_tree(target: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the working tree is left out
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


@pytest.fixture
def fresh_clone() -> Iterator[Path]:
    parent = Path(tempfile.mkdtemp(prefix="airflow-video-edit-clone-"))
    clone = parent / "airflow-video-edit"
    clone.mkdir()
    _copy_working_tree(clone)
    try:
        yield clone
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def test_demo_in_a_fresh_clone_on_a_bare_path(fresh_clone: Path) -> None:
    env = _bare_env()
    python3 = shutil.which("python3", path=env["PATH"])
    assert python3, "no python3 on PATH"
    assert shutil.which("uv", path=env["PATH"]) is None
    assert not (fresh_clone.parent / "shared").exists()

    def listing() -> dict[str, list[str] | None]:
        out = subprocess.run([python3, "-c", _LISTING], env=env, capture_output=True, text=True, check=True)
        return dict(json.loads(out.stdout))

    before = listing()
    run = subprocess.run(
        ["bash", "scripts/demo.sh"],
        cwd=fresh_clone,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    report = f"exit {run.returncode}\n--- stdout\n{run.stdout[-4000:]}\n--- stderr\n{run.stderr[-4000:]}"
    assert run.returncode == 0, report
    assert listing() == before, "the set-up changed the system interpreter's site-packages"

    published = Path(run.stdout.strip().splitlines()[-1])
    assert published.is_file(), report
    assert published.is_relative_to(fresh_clone / "out" / "published"), report
    assert (fresh_clone / ".venv" / "bin" / "python").exists()
    # Checked with PyAV from the test's own venv, not the clone's: a valid H.264 MP4 with frames.
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, av\n"
            "with av.open(sys.argv[1]) as c:\n"
            "    s = c.streams.video[0]\n"
            "    frames = sum(1 for _ in c.decode(s))\n"
            "    print(s.codec_context.name, s.width, s.height, frames)\n",
            str(published),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    codec, width, height, frames = probe.stdout.split()
    assert codec == "h264"
    assert int(width) > 0
    assert int(height) > 0
    assert int(frames) > 0
