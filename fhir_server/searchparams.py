"""The search parameters the server indexes, built from the official R4 SearchParameter definitions.

Every parameter of a served resource type whose kind we support (token, string, date, number, quantity,
reference, uri) and whose expression compiles is indexed, searchable and advertised in the
CapabilityStatement; composite and special parameters are not (they are listed in ``unsupported``).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from functools import cache

from .definitions import compartment_definition, search_parameter_bundle
from .search.paths import PathFn, UnsupportedExpression, compile_expression, expression_parts

__all__ = ["SearchParam", "SearchParamRegistry", "registry"]

SUPPORTED_KINDS = frozenset({"token", "string", "date", "number", "quantity", "reference", "uri"})


@dataclass(frozen=True)
class SearchParam:
    """One search parameter as it applies to one resource type."""

    code: str
    type: str
    resource_type: str
    expression: str
    url: str
    description: str
    targets: tuple[str, ...]
    path: PathFn = field(compare=False, repr=False)


@dataclass(eq=False)  # hashed by identity: capability statements are cached per registry
class SearchParamRegistry:
    """Parameters per served resource type, and the Patient compartment."""

    resource_types: list[str]
    params: dict[str, dict[str, SearchParam]]
    compartment: dict[str, tuple[str, ...]]
    unsupported: dict[tuple[str, str], str]  # (type, code) -> why it is not searchable
    # reference parameters through which a Patient reference puts the resource in that patient's compartment
    patient_links: dict[str, frozenset[str]] = field(default_factory=dict)

    def for_type(self, resource_type: str) -> dict[str, SearchParam]:
        return self.params.get(resource_type, {})

    def get(self, resource_type: str, code: str) -> SearchParam | None:
        return self.params.get(resource_type, {}).get(code)

    def why_unsupported(self, resource_type: str, code: str) -> str | None:
        """Why an R4 parameter of ``resource_type`` is not searchable here (None if it is, or is not R4)."""
        return self.unsupported.get((resource_type, code))


def _served_types() -> list[str]:
    served = []
    for entry in compartment_definition()["resource"]:
        name = entry["code"]
        # R4B dropped a few R4 types (MedicinalProduct*, EffectEvidenceSynthesis, ...): we cannot validate those
        if importlib.util.find_spec(f"fhir.resources.R4B.{name.lower()}") is not None:
            served.append(name)
    return sorted(served)


@cache
def registry() -> SearchParamRegistry:
    """Build (once) the registry from the shipped definitions."""
    types = _served_types()
    served = set(types)
    params: dict[str, dict[str, SearchParam]] = {t: {} for t in types}
    unsupported: dict[tuple[str, str], str] = {}
    for entry in search_parameter_bundle()["entry"]:
        definition = entry["resource"]
        bases = definition.get("base", [])
        applies = types if ("Resource" in bases or "DomainResource" in bases) else [b for b in bases if b in served]
        for resource_type in applies:
            code, kind = definition["code"], definition["type"]
            if kind not in SUPPORTED_KINDS:
                unsupported[(resource_type, code)] = f"{kind} parameters are not supported"
                continue
            if not definition.get("expression"):
                unsupported[(resource_type, code)] = "it has no expression to index (full-text or named-query search)"
                continue
            try:
                path = compile_expression(definition["expression"], resource_type)
            except UnsupportedExpression as exc:
                unsupported[(resource_type, code)] = str(exc)
                continue
            params[resource_type][code] = SearchParam(
                code=code,
                type=kind,
                resource_type=resource_type,
                expression=definition.get("expression") or "",
                url=definition.get("url", ""),
                description=(definition.get("description") or "").split("\n")[0][:300],
                targets=tuple(definition.get("target", [])),
                path=path,
            )
    compartment = {
        e["code"]: tuple(e.get("param", [])) for e in compartment_definition()["resource"] if e["code"] in served
    }
    compartment["Patient"] = ()
    links = {t: _patient_links(params[t], compartment.get(t, ()), t) for t in types}
    return SearchParamRegistry(types, params, compartment, unsupported, links)


def _patient_links(params: dict[str, SearchParam], compartment: tuple[str, ...], resource_type: str) -> frozenset[str]:
    """The compartment's own parameters, and those that narrow one (``Observation.patient`` is
    ``Observation.subject.where(resolve() is Patient)``, a narrowing of the compartment's ``subject``)."""
    roots = [
        part
        for code in compartment
        if code in params
        for part in expression_parts(params[code].expression, resource_type)
    ]
    links = set(compartment)
    for code, param in params.items():
        parts = expression_parts(param.expression, resource_type)
        if param.type == "reference" and parts and all(any(p.startswith(r) for r in roots) for p in parts):
            links.add(code)
    return frozenset(links)
