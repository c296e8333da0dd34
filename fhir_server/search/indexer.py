"""Index rows for a resource, extracted once when it is written (never at search time)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..searchparams import SearchParamRegistry
from .kinds import PARAM_TYPES, REFERENCE
from .paths import Node, PathFn
from .reference import localise
from .types import IndexRow

__all__ = ["Indexer"]

# (parameter code, kind name, its path, its extractor): a flat plan per resource type keeps the hot loop lean
_Plan = list[tuple[str, str, PathFn, Callable[[list[Node]], list[IndexRow]]]]


class Indexer:
    """Turns a resource into rows for each index table, tagged with its compartment patients."""

    def __init__(self, registry: SearchParamRegistry):
        self.registry = registry
        self._plans: dict[str, _Plan] = {}

    def _plan(self, resource_type: str) -> _Plan:
        plan = self._plans.get(resource_type)
        if plan is None:
            plan = [
                (code, param.type, param.path, PARAM_TYPES[param.type].extract)
                for code, param in self.registry.for_type(resource_type).items()
                if code not in ("_id", "_lastUpdated")  # searched on the resource row's own columns
            ]
            self._plans[resource_type] = plan
        return plan

    def compartment_patients(self, resource: dict[str, Any], base_url: str | None = None) -> list[str]:
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
                row = localise(row, base_url) if base_url else row
                if row["target_type"] == "Patient" and row["url"] is None and row["target_id"] not in patients:
                    patients.append(row["target_id"])
        return patients

    def rows(self, session: str, resource: dict[str, Any], base_url: str | None = None) -> dict[str, list[IndexRow]]:
        """All index rows of ``resource`` in ``session``, by parameter kind; ``base_url`` is the FHIR base the
        resource was written to, so that absolute references to this server index as local ones."""
        resource_type, resource_id = resource["resourceType"], resource["id"]
        patients: list[str | None] = list(self.compartment_patients(resource, base_url)) or [None]
        out: dict[str, list[IndexRow]] = {}
        for code, kind, path, extract in self._plan(resource_type):
            if path.requires is not None and path.requires.isdisjoint(resource):
                continue  # most parameters: the resource has no element they read
            try:
                nodes = path.evaluate(resource)
                if not nodes:
                    continue
                values = extract(nodes)
            except (TypeError, AttributeError, KeyError, ValueError):
                continue  # a shape the expression did not expect: not indexed, as a FHIRPath engine would yield {}
            if not values:
                continue
            if base_url and kind == "reference":
                values = [localise(v, base_url) for v in values]
            if len(values) > 1:  # the same value reached twice (e.g. a code in two codings) is one row
                values = list({tuple(v.values()): v for v in values}.values())
            target = out.setdefault(kind, [])
            for patient in patients:
                for value in values:
                    value = {
                        "session": session,
                        "type": resource_type,
                        "id": resource_id,
                        "param": code,
                        "patient": patient,
                        **value,
                    }
                    target.append(value)
        return out
