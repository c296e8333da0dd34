"""The JSON Schema of a scenario file, generated from the pydantic models (``schema.json`` is checked in; a test
fails when it is stale). Regenerate with ``python -m fhir_sandbox.scenarios.schema``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from .model import Scenario

__all__ = ["SCHEMA_PATH", "scenario_schema", "schema_text"]

SCHEMA_PATH = Path(__file__).resolve().parent / "schema.json"


def scenario_schema() -> dict[str, Any]:
    schema = Scenario.model_json_schema(mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://github.com/fhir-sandbox/fhir-sandbox/scenarios/schema.json",
        **schema,
    }


def schema_text() -> str:
    return orjson.dumps(scenario_schema(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode() + "\n"


if __name__ == "__main__":
    SCHEMA_PATH.write_text(schema_text(), encoding="utf-8")
    print(f"wrote {SCHEMA_PATH}")
