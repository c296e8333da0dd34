"""Index rows for a resource, extracted once when it is written (never at search time)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from ..searchparams import SearchParamRegistry
from .kinds import PARAM_TYPES, REFERENCE
from .types import IndexRow

__all__ = ["Indexer"]


class Indexer:
    """Turns a resource into rows for each index table, tagged with its compartment patients."""

    def __init__(self, registry: SearchParamRegistry, base_url: str | None = None):
        self.registry = registry
        REFERENCE.base_url = base_url

    def compartment_patients(self, resource: dict[str, Any]) -> list[str]:
        """Ids of the patients whose compartment holds ``resource`` (R4 CompartmentDefinition)."""
        resource_type = resource["resourceType"]
        if resource_type == "Patient":
            return [resource["id"]]
        patients: list[str] = []
        for code in self.registry.compartment.get(resource_type, ()):
            param = self.registry.get(resource_type, code)
            if param is None or param.type != "reference":
                continue
            for row in REFERENCE.extract(param.path(resource)):
                if row["target_type"] == "Patient" and row["url"] is None and row["target_id"] not in patients:
                    patients.append(row["target_id"])
        return patients

    def rows(self, session: str, resource: dict[str, Any]) -> dict[str, list[IndexRow]]:
        """All index rows of ``resource`` in ``session``, by parameter kind."""
        resource_type, resource_id = resource["resourceType"], resource["id"]
        patients: list[str | None] = list(self.compartment_patients(resource)) or [None]
        out: dict[str, list[IndexRow]] = defaultdict(list)
        for code, param in self.registry.for_type(resource_type).items():
            kind = PARAM_TYPES[param.type]
            try:
                values = kind.extract(param.path(resource))
            except (TypeError, AttributeError, KeyError, ValueError):
                continue  # a shape the expression did not expect: not indexed, as a FHIRPath engine would yield {}
            seen: set[tuple[Any, ...]] = set()
            for value in values:
                key = tuple(value.values())
                if key in seen:
                    continue
                seen.add(key)
                for patient in patients:
                    out[param.type].append(
                        {
                            "session": session,
                            "type": resource_type,
                            "id": resource_id,
                            "param": code,
                            "patient": patient,
                            **value,
                        }
                    )
        return out
