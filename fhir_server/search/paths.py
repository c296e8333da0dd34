"""A compiler for the FHIRPath subset that the R4 SearchParameter expressions use.

The official expressions are simple paths (``Observation.code``), unions (``a | b``), choice-type filters
(``Observation.value.ofType(Quantity)``, ``(x as Quantity)``), reference-type filters
(``subject.where(resolve() is Patient)``), equality filters (``telecom.where(system='email')``) and an index
(``entry[0]``). Compiling them to plain Python functions over the resource's JSON keeps indexing at a few
microseconds per parameter, where a general FHIRPath engine costs far more and has no ``resolve()``.
An expression outside the subset raises ``UnsupportedExpression`` at start-up, so the parameter is simply not
indexed (and not advertised), never indexed wrongly.
"""

from __future__ import annotations

import importlib.resources
import re
from collections.abc import Callable
from functools import cache
from typing import Any, NamedTuple

__all__ = ["Node", "PathFn", "UnsupportedExpression", "compile_expression"]


class UnsupportedExpression(ValueError):
    """The expression uses FHIRPath beyond the compiled subset."""


class Node(NamedTuple):
    """A value reached by a path: its JSON and, where the JSON key told us (choice types), its FHIR type."""

    value: Any
    fhir_type: str | None = None


PathFn = Callable[[dict[str, Any]], list[Node]]
Step = Callable[[list[Node]], list[Node]]

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_STEP_RE = re.compile(
    rf"""\s*(?:
        (?P<where_resolve>where\(resolve\(\)\s+is\s+(?P<rtype>{_IDENT})\))
      | (?P<where_eq>where\((?P<wfield>{_IDENT})\s*=\s*'(?P<wvalue>[^']*)'\))
      | (?P<oftype>(?:ofType|as)\((?P<otype>{_IDENT})\))
      | (?P<field>{_IDENT})(?:\[(?P<index>\d+)\])?
    )\s*""",
    re.VERBOSE,
)
_AS_RE = re.compile(rf"^\((?P<inner>.+)\s+as\s+(?P<type>{_IDENT})\)$")
_DECEASED = "Patient.deceased.exists() and Patient.deceased != false"


def compile_expression(expression: str, resource_type: str) -> PathFn:
    """Compile the parts of ``expression`` that apply to ``resource_type`` into one function.

    Raises:
        UnsupportedExpression: when a part uses FHIRPath outside the subset.
    """
    if expression.strip() == _DECEASED:
        return _deceased
    parts = [p for p in _split_union(expression) if _applies(p, resource_type)]
    compiled = [_compile_part(p) for p in parts]
    if not compiled:
        raise UnsupportedExpression(f"no part of {expression!r} applies to {resource_type}")
    if len(compiled) == 1:
        return compiled[0]

    def evaluate(resource: dict[str, Any]) -> list[Node]:
        out: list[Node] = []
        for fn in compiled:
            out.extend(fn(resource))
        return out

    return evaluate


def _deceased(resource: dict[str, Any]) -> list[Node]:
    dead = resource.get("deceasedBoolean") is True or "deceasedDateTime" in resource
    return [Node(dead, "boolean")]


def _split_union(expression: str) -> list[str]:
    parts, depth, quoted, start = [], 0, False, 0
    for i, ch in enumerate(expression):
        if ch == "'":
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
        elif not quoted and depth == 0 and ch == "|":
            parts.append(expression[start:i].strip())
            start = i + 1
    parts.append(expression[start:].strip())
    return [p for p in parts if p]


def _strip_parens(part: str) -> str:
    while part.startswith("(") and part.endswith(")") and _balanced(part[1:-1]):
        part = part[1:-1].strip()
    return part


def _balanced(text: str) -> bool:
    depth = 0
    for ch in text:
        depth += ch == "("
        depth -= ch == ")"
        if depth < 0:
            return False
    return depth == 0


def _applies(part: str, resource_type: str) -> bool:
    head = re.match(_IDENT, _strip_parens(part).lstrip("("))
    return head is not None and head.group(0) in (resource_type, "Resource", "DomainResource")


def _compile_part(part: str) -> PathFn:
    part = part.strip()
    as_type = None
    match = _AS_RE.match(part)
    if match:  # "(Observation.value as Quantity)"
        part, as_type = match.group("inner"), match.group("type")
    part = _strip_parens(part)
    tail: list[str] = []
    # "(Observation.value.ofType(CodeableConcept)).text": a parenthesised head then more steps
    if part.startswith("("):
        depth = 0
        for i, ch in enumerate(part):
            depth += ch == "("
            depth -= ch == ")"
            if depth == 0:
                tail = [part[i + 1 :].lstrip(".")]
                part = part[1:i]
                break
    text = ".".join([part, *[t for t in tail if t]])
    steps = _compile_steps(text)
    if as_type:
        steps.append(_of_type(as_type))

    first = _first_field(text)
    first_is_choice = first is not None and first in _choice_names()

    def evaluate(resource: dict[str, Any]) -> list[Node]:
        # most parameters name an element the resource does not have: answer those without walking
        if first is not None and first not in resource and not first_is_choice:
            return []
        nodes = [Node(resource, resource.get("resourceType"))]
        for step in steps:
            nodes = step(nodes)
            if not nodes:
                break
        return nodes

    return evaluate


def _first_field(text: str) -> str | None:
    parts = text.split(".")
    return parts[1] if len(parts) > 1 and re.fullmatch(_IDENT, parts[1]) else None


def _compile_steps(text: str) -> list[Step]:
    steps: list[Step] = []
    pos = 0
    first = True
    while pos < len(text):
        match = _STEP_RE.match(text, pos)
        if not match or match.end() == pos:
            raise UnsupportedExpression(f"cannot compile {text!r} at {text[pos:]!r}")
        if first:
            if not match.group("field"):
                raise UnsupportedExpression(f"{text!r} must start with a type name")
            first = False  # the resource type itself
        elif match.group("where_resolve"):
            steps.append(_reference_to(match.group("rtype")))
        elif match.group("where_eq"):
            steps.append(_where_equals(match.group("wfield"), match.group("wvalue")))
        elif match.group("oftype"):
            steps.append(_of_type(match.group("otype")))
        else:
            index = match.group("index")
            steps.append(_child(match.group("field"), int(index) if index is not None else None))
        pos = match.end()
        if pos < len(text):
            if text[pos] != ".":
                raise UnsupportedExpression(f"cannot compile {text!r} at {text[pos:]!r}")
            pos += 1
    return steps


@cache
def _choice_keys() -> dict[str, tuple[tuple[str, str], ...]]:
    """R4 choice elements (``value[x]``...): base name -> the JSON keys it can take and the type each names.

    Read once from the R4B models' source text (each field's ``alias`` followed by its ``one_of_many``), so a
    path step tries only the few real keys (``valueQuantity``, ``valueString``...) instead of scanning.
    """
    package = importlib.resources.files("fhir.resources.R4B")
    keys: dict[str, set[str]] = {}
    for entry in package.iterdir():
        if not entry.name.endswith(".py"):
            continue
        alias = None
        for match in _ALIAS_OR_CHOICE.finditer(entry.read_text(encoding="utf-8")):
            if match.group("alias"):
                alias = match.group("alias")
            elif alias and alias.startswith(match.group("choice")):
                keys.setdefault(match.group("choice"), set()).add(alias)
    return {
        name: tuple(sorted((key, key[len(name)].lower() + key[len(name) + 1 :]) for key in found))
        for name, found in keys.items()
    }


_ALIAS_OR_CHOICE = re.compile(r'alias="(?P<alias>[A-Za-z]+)"|"one_of_many": "(?P<choice>[A-Za-z]+)"')


def _choice_names() -> frozenset[str]:
    return frozenset(_choice_keys())


def _child(name: str, index: int | None) -> Step:
    choices = _choice_keys().get(name, ())

    def step(nodes: list[Node]) -> list[Node]:
        out: list[Node] = []
        for node in nodes:
            obj = node.value
            if not isinstance(obj, dict):
                continue
            if name in obj:
                value = obj[name]
                found: list[Node] = [Node(v) for v in value] if isinstance(value, list) else [Node(value)]
            elif not choices:
                continue
            else:  # a choice element: valueQuantity, effectivePeriod, ...
                found = [Node(v, fhir_type) for key, fhir_type in choices if key in obj for v in _as_list(obj[key])]
            if index is not None:
                found = found[index : index + 1]
            out.extend(found)
        return out

    return step


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _of_type(type_name: str) -> Step:
    wanted = type_name[0].lower() + type_name[1:]

    def step(nodes: list[Node]) -> list[Node]:
        return [n for n in nodes if n.fhir_type is None or n.fhir_type.lower() == wanted.lower()]

    return step


def _reference_to(type_name: str) -> Step:
    def step(nodes: list[Node]) -> list[Node]:
        out = []
        for node in nodes:
            ref = node.value.get("reference") if isinstance(node.value, dict) else None
            if isinstance(ref, str) and _reference_type(ref) == type_name:
                out.append(node)
        return out

    return step


def _reference_type(reference: str) -> str | None:
    parts = reference.split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    return parts[-2] if len(parts) >= 2 else None


def _where_equals(field: str, value: str) -> Step:
    def step(nodes: list[Node]) -> list[Node]:
        return [n for n in nodes if isinstance(n.value, dict) and n.value.get(field) == value]

    return step
