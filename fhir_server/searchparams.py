"""The search parameters the server indexes, built from the official R4 SearchParameter definitions.

Every parameter of a served resource type whose kind we support (token, string, date, number, quantity,
reference, uri) and whose expression compiles is indexed, searchable and advertised in the
CapabilityStatement; composite and special parameters are not (they are listed in ``unsupported``).

A parameter whose values are those of others is not stored twice: a union of other parameters
(``Observation.combo-code`` is ``code | component-code``) is searched in their index rows, and a narrowing of a
reference parameter to one target type (``Observation.patient`` is ``subject.where(resolve() is Patient)``) in
that parameter's rows of that target type. That is about a third fewer index rows in a generated population.
A narrowing's type is the one the reference index parsed (``Type/id`` with a valid id, or an absolute URL ending
in one), so where that parse and ``resolve() is T`` disagree the narrowing follows the index, as compartments do:
``Patient/not an id!`` (or ``Patient/``, ``Group/1/Patient/2``) is no Patient reference, and
``http://other.org/fhir/Patient/1/`` (a trailing slash) is one.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, field, replace
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
    # where its index rows are: its own code, or the parameters whose rows hold its values (it is their union,
    # or with ``stored_target`` their references to that type), for it is not stored itself
    stored_as: tuple[str, ...] = ()
    stored_target: str | None = None

    @property
    def stored(self) -> bool:
        """Whether the index holds rows under this parameter's own code."""
        return self.stored_as == (self.code,)


@dataclass(eq=False)  # hashed by identity: capability statements are cached per registry
class SearchParamRegistry:
    """Parameters per served resource type, and the Patient compartment."""

    resource_types: list[str]
    params: dict[str, dict[str, SearchParam]]
    compartment: dict[str, tuple[str, ...]]
    unsupported: dict[tuple[str, str], str]  # (type, code) -> why it is not searchable
    # reference parameters through which a Patient reference puts the resource in that patient's compartment
    patient_links: dict[str, frozenset[str]] = field(default_factory=dict)
    # the stored parameters whose Patient references are the compartment's (``compartment`` names some that are
    # not stored: ``Condition.patient`` is in ``subject``'s rows)
    compartment_stored: dict[str, tuple[str, ...]] = field(default_factory=dict)

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
    for resource_type in types:
        params[resource_type] = _storage(params[resource_type], resource_type)
    links = {t: _patient_links(params[t], compartment.get(t, ()), t) for t in types}
    stored = {t: _compartment_stored(params[t], compartment.get(t, ())) for t in types}
    return SearchParamRegistry(types, params, compartment, unsupported, links, stored)


_NARROWING = re.compile(r"^(?P<base>.+)\.where\(resolve\(\)\s+is\s+(?P<type>[A-Za-z]+)\)$")


def _storage(params: dict[str, SearchParam], resource_type: str) -> dict[str, SearchParam]:
    """``params`` with where each one's index rows are (``SearchParam.stored_as``).

    A parameter whose union parts are exactly those of other parameters of its kind reads their rows: the same
    parts reach the same values, extracted alike. One whose parts are all ``X.where(resolve() is T)``, for one
    ``T``, where the ``X`` are exactly the parts of other reference parameters, reads those parameters' rows whose
    target type is ``T``. The parameters read must themselves be stored (no chains of aliases)."""
    parts = {code: set(expression_parts(param.expression, resource_type)) for code, param in params.items()}
    derived: dict[str, tuple[tuple[str, ...], str | None]] = {}
    for code, param in params.items():
        if code in ("_id", "_lastUpdated"):
            continue
        wanted, target = parts[code], None
        narrowed = [_NARROWING.match(part) for part in wanted]
        if param.type == "reference" and narrowed and all(narrowed):
            targets = {match.group("type") for match in narrowed if match}
            if len(targets) != 1:
                continue
            wanted, target = {match.group("base") for match in narrowed if match}, targets.pop()
        covering = tuple(
            other
            for other, other_parts in parts.items()
            if other != code and params[other].type == param.type and other_parts and other_parts <= wanted
            if (other_parts < wanted or target is not None)
        )
        if covering and set().union(*(parts[c] for c in covering)) == wanted:
            derived[code] = (covering, target)
    out = {}
    for code, param in params.items():
        stored_as, target = derived.get(code, ((code,), None))
        if any(other in derived for other in stored_as if other != code):
            stored_as, target = (code,), None
        out[code] = replace(param, stored_as=stored_as, stored_target=target)
    return out


def _compartment_stored(params: dict[str, SearchParam], compartment: tuple[str, ...]) -> tuple[str, ...]:
    """The stored parameters whose Patient references put a resource in the compartment: the compartment's own,
    with a narrowing to Patient (or a union) replaced by the parameters it reads."""
    stored: list[str] = []
    for code in compartment:
        param = params.get(code)
        if param is None or param.stored_target not in (None, "Patient"):
            continue
        stored += [c for c in param.stored_as if c not in stored]
    return tuple(stored)


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
