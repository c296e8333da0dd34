"""Index rows for a resource, extracted once when it is written (never at search time)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson

from ..searchparams import SearchParamRegistry
from .kinds import PARAM_TYPES
from .paths import Node, PathFn
from .reference import localise
from .types import IndexRow, IndexValue

__all__ = ["Indexer"]

Extract = Callable[[list[Node]], list[IndexValue]]
# a union part's path, and its key in the values one resource's parameters share (None when no other
# parameter of the type has that part: e.g. Organization ``name`` and ``phonetic`` share ``Organization.name``)
Parts = tuple[tuple[tuple[str, str] | None, PathFn], ...]
# (parameter code, kind name, its parts, its extractor, whether its Patient references put the resource in that
# patient's compartment): a flat plan per resource type keeps the hot loop lean
Plan = list[tuple[str, str, Parts, Extract, bool]]

_MAX_SHAPES = 4096  # plans kept for resource shapes (type, top-level and meta keys): a generated population has few
_MAX_EXTRACTED = 100_000  # values kept by their JSON text: codes, references and times recur across resources


class Indexer:
    """Turns a resource into rows for each index table, tagged with its compartment patients."""

    def __init__(self, registry: SearchParamRegistry):
        self.registry = registry
        self._plans: dict[str, Plan] = {}
        self._shapes: dict[tuple[str | None, ...], Plan] = {}
        # (kind, text) for a value, (kind, element, text) for a whole top-level element
        self._extracted: dict[tuple[str | bytes, ...], list[IndexValue]] = {}

    def _plan(self, resource_type: str) -> Plan:
        plan = self._plans.get(resource_type)
        if plan is None:
            compartment = self.registry.compartment_stored.get(resource_type, ())
            params = [
                param
                for code, param in self.registry.for_type(resource_type).items()
                # _id and _lastUpdated are searched on the resource row's own columns; a parameter that is not
                # stored is searched in the rows of those it derives from (``SearchParam.stored_as``)
                if code not in ("_id", "_lastUpdated") and param.stored
            ]
            uses = Counter((text, param.type) for param in params for text, _ in param.path.parts)
            plan = [
                (
                    param.code,
                    param.type,
                    tuple(
                        ((text, param.type) if uses[text, param.type] > 1 else None, path)
                        for text, path in param.path.parts
                    ),
                    PARAM_TYPES[param.type].extract,
                    param.code in compartment,
                )
                for param in params
            ]
            self._plans[resource_type] = plan
        return plan

    def _shape_plan(self, resource_type: str, resource: dict[str, Any]) -> Plan:
        """The plan of ``resource_type`` cut to the parts that can reach something in a resource with the
        top-level keys of ``resource`` and of its meta: most parameters read elements that most resources lack."""
        meta = resource.get("meta")
        # the keys of meta too: every stored resource has one, and most lack its profile, tag, security, source
        shape = (resource_type, *resource, None, *meta) if type(meta) is dict else (resource_type, *resource)
        plan = self._shapes.get(shape)
        if plan is None:
            plan = []
            for code, kind, parts, extract, links_patient in self._plan(resource_type):
                live = tuple(
                    (key, path)
                    for key, path in parts
                    if (path.requires is None or not path.requires.isdisjoint(resource))
                    and not (path.child is not None and path.child[0] == "meta" and _lacks(meta, path.child[1]))
                )
                if live:
                    plan.append((code, kind, live, extract, links_patient))
            if len(self._shapes) < _MAX_SHAPES:
                self._shapes[shape] = plan
        return plan

    def rows(self, session: str, resource: dict[str, Any], base_url: str | None = None) -> dict[str, list[IndexRow]]:
        """All index rows of ``resource`` in ``session``, by parameter kind, as tuples in their table's column
        order; ``base_url`` is the FHIR base the resource was written to, so that absolute references to this
        server index as local ones. Each row is tagged with a patient whose compartment holds the resource (R4
        CompartmentDefinition), one row per patient, or with None when it is in none."""
        resource_type, resource_id = resource["resourceType"], resource["id"]
        patients: list[str | None] = [resource_id] if resource_type == "Patient" else []
        found: list[tuple[str, str, list[IndexValue]]] = []
        shared: dict[tuple[str, str], list[IndexValue] | None] = {}
        for code, kind, parts, extract, links_patient in self._shape_plan(resource_type, resource):
            values: list[IndexValue] = []
            for key, path in parts:
                if key is None:
                    got = self._values(path, kind, extract, resource)
                elif key in shared:
                    got = shared[key]
                else:
                    got = shared[key] = self._values(path, kind, extract, resource)
                if got is None:  # a shape the expression did not expect: not indexed, as FHIRPath would yield {}
                    values = []
                    break
                values = values + got if values else got
            if not values:
                continue
            if base_url and kind == "reference":
                values = [localise(v, base_url) for v in values]
            if len(values) > 1:  # the same value reached twice (e.g. a code in two codings) is one row
                values = list(dict.fromkeys(values))
            if links_patient:
                for target_id, target_type, url, *_ in values:
                    if target_type == "Patient" and url is None and target_id not in patients:
                        patients.append(target_id)
            found.append((code, kind, values))
        out: dict[str, list[IndexRow]] = {}
        for code, kind, values in found:
            target = out.setdefault(kind, [])
            for patient in patients or (None,):
                head = (session, resource_type, resource_id, code, patient)
                target.extend([head + value for value in values])
        return out

    def _values(self, path: PathFn, kind: str, extract: Extract, resource: dict[str, Any]) -> list[IndexValue] | None:
        """The index values ``path`` reaches in ``resource``; None when it met a shape it did not expect.

        Each value reached is extracted once per distinct JSON text (an extractor reads only the JSON): a
        population repeats its codes, references and times across thousands of resources. The values may be
        the cached list itself: not to be changed."""
        try:
            if path.key is not None and path.key in resource:  # one top-level element: no path to walk
                value = resource[path.key]
                # the whole element's values by its text too: one look-up for all its items
                text = _text(value)
                got = self._extracted.get((kind, path.key, text)) if text is not None else None
                if got is None:
                    got = self._extract_each(value if isinstance(value, list) else [value], kind, extract)
                    if text is not None:
                        self._remember((kind, path.key, text), got)
                return got
            if path.child is not None and _lacks(resource.get(path.child[0]), path.child[1]):
                return []  # e.g. hospitalization.specialArrangement, on most hospitalizations
            return self._extract_each([node.value for node in path.evaluate(resource)], kind, extract)
        except (TypeError, AttributeError, KeyError, ValueError):
            return None

    def _extract_each(self, items: list[Any], kind: str, extract: Extract) -> list[IndexValue]:
        values: list[IndexValue] = []
        for item in items:
            text = _text(item)
            if text is None:
                values += extract([Node(item)])
                continue
            got = self._extracted.get((kind, text))
            if got is None:
                got = self._remember((kind, text), extract([Node(item)]))
            values += got
        return values

    def _remember(self, key: tuple[str | bytes, ...], values: list[IndexValue]) -> list[IndexValue]:
        if type(key[-1]) is bytes and b"null" in key[-1]:  # NaN and infinities are null in JSON text too
            return values  # so such a text is not cached (checked here, not at each look-up: the scan costs more)
        if len(self._extracted) >= _MAX_EXTRACTED:
            self._extracted.clear()
        self._extracted[key] = values
        return values


def _text(value: Any) -> str | bytes | None:
    """The JSON text by which ``value``'s index values are cached; None when it is not JSON (a decimal...)."""
    if type(value) is str:
        return value
    try:
        return orjson.dumps(value)
    except TypeError:
        return None


def _lacks(parent: Any, keys: frozenset[str]) -> bool:
    return isinstance(parent, dict) and keys.isdisjoint(parent)
