"""The official R4 definitions the server is built from, shipped as package data (see SOURCE.md)."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

__all__ = ["compartment_definition", "search_parameter_bundle"]


def _load(name: str) -> Any:
    return json.loads(resources.files(__name__).joinpath(name).read_text(encoding="utf-8"))


@cache
def search_parameter_bundle() -> dict[str, Any]:
    """The R4 SearchParameter Bundle (1,378 definitions)."""
    return _load("search-parameters.json")  # type: ignore[no-any-return]


@cache
def compartment_definition() -> dict[str, Any]:
    """The R4 Patient CompartmentDefinition."""
    return _load("compartmentdefinition-patient.json")  # type: ignore[no-any-return]
