"""Print the lowest version each of the project's dependencies allows, as ``name==version`` pins.

``scripts/test.sh`` installs these into the oldest-versions venv, so every floor declared in
``pyproject.toml`` (runtime and ``server`` extra) is a tested floor, not a guess.
Usage: python scripts/floors.py [pyproject.toml]
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = None  # type: ignore[assignment]


def requirements(pyproject: Path) -> list[str]:
    text = pyproject.read_text()
    if tomllib is not None:
        project = tomllib.loads(text)["project"]
        return [*project["dependencies"], *project["optional-dependencies"]["server"]]
    # Python 3.10 has no TOML parser: read the two arrays by their shape.
    found: list[str] = []
    for name in ("dependencies", "server"):
        block = re.search(rf"^{name} = \[(.*?)^\]", text, re.S | re.M)
        if block:
            found += re.findall(r'^\s*"([^"]+)"', block.group(1), re.M)
    return found


def floors(pyproject: Path) -> list[str]:
    pins = []
    for requirement in requirements(pyproject):
        match = re.match(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*>=\s*([0-9][^,;\s]*)", requirement)
        if match:
            pins.append(f"{match.group(1)}=={match.group(3)}")
    return pins


if __name__ == "__main__":
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "pyproject.toml"
    print("\n".join(floors(path)))
