"""The facts the tests check the models against, taken from the official Videos API OpenAPI text.

The tests read the spec itself when it is there (``$VIDEOS_OPENAPI_SPEC``, else
``../shared/spec/openai-videos.openapi.yaml`` beside the repository) and otherwise these facts,
kept in ``tests/unit/spec_facts.json``. Regenerate that file after a spec update:

    .venv/bin/python scripts/spec_facts.py path/to/openai-videos.openapi.yaml > tests/unit/spec_facts.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml


def facts(spec: dict[str, Any]) -> dict[str, Any]:
    """Response examples of every operation and the enums the models mirror."""
    examples = []
    for route, operations in spec["paths"].items():
        for method, operation in operations.items():
            if not isinstance(operation, dict):
                continue
            text = operation.get("x-oaiMeta", {}).get("examples", {}).get("response")
            if isinstance(text, str) and text.strip():
                examples.append({"route": route, "method": method, "body": json.loads(text)})
    schemas = spec["components"]["schemas"]
    model_enums = [option["enum"] for option in schemas["VideoModel"]["anyOf"] if "enum" in option]
    return {
        "response_examples": examples,
        "enums": {
            "VideoStatus": schemas["VideoStatus"]["enum"],
            "VideoSize": schemas["VideoSize"]["enum"],
            "VideoSeconds": schemas["VideoSeconds"]["enum"],
            "VideoModel": model_enums[0] if model_enums else [],
        },
    }


def facts_from_file(path: Path) -> dict[str, Any]:
    return facts(dict(yaml.safe_load(path.read_text())))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python scripts/spec_facts.py SPEC.yaml > tests/unit/spec_facts.json")
    print(json.dumps(facts_from_file(Path(sys.argv[1])), indent=2, sort_keys=True))
