"""The JSON Schema of facts files, generated from ``preflight.facts``.

``python -m preflight.facts_schema`` rewrites ``preflight/facts.schema.json``; a test fails when
the shipped file and the dataclasses disagree.
"""

from __future__ import annotations

import json
from pathlib import Path

from preflight.facts import SCHEMA_VERSION, NodeFacts
from preflight.typed_json import json_schema

SCHEMA_PATH = Path(__file__).with_name("facts.schema.json")


def facts_schema() -> dict:
    schema = json_schema(
        NodeFacts,
        title=f"preflight node facts, schema version {SCHEMA_VERSION}",
        schema_id=f"https://github.com/preflight-ml/preflight/schemas/facts-v{SCHEMA_VERSION}.json",
    )
    schema["properties"]["schema_version"] = {"type": "integer", "const": SCHEMA_VERSION}
    return schema


def render() -> str:
    return json.dumps(facts_schema(), indent=2) + "\n"


if __name__ == "__main__":
    SCHEMA_PATH.write_text(render(), encoding="utf-8")
    print(f"wrote {SCHEMA_PATH}")
