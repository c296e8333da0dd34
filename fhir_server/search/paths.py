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

__all__ = ["Node", "PathFn", "UnsupportedExpression", "compile_expression", "expression_parts"]


class UnsupportedExpression(ValueError):
    """The expression uses FHIRPath beyond the compiled subset."""


class Node(NamedTuple):
    """A value reached by a path: its JSON and, where the JSON key told us (choice types), its FHIR type."""

    value: Any
    fhir_type: str | None = None


class PathFn:
    """A compiled path: call it on a resource for the nodes it reaches. ``requires`` is the set of top-level
    keys of which the resource must have one for the path to reach anything (None when it cannot say), so a
    caller can skip the call for the many parameters a resource has no element for. ``parts`` are the operands
    of a union, each with its text (a path that is no union is its own one part), so that a caller evaluating
    several expressions (``code``, ``combo-code``) can evaluate a part they share once: a union reaches the
    nodes its parts reach, in order. ``key`` is set when the path is one top-level element (``Observation.code``):
    on a resource that has that key, the path reaches its value (each item, when a list) and nothing else.
    ``child`` is set when it starts with two elements, the first no choice element (``meta.profile``): it holds
    the first and the keys the second can take (``meta.source`` is also ``sourceUri``...), and a resource whose
    first element is an object with none of them reaches nothing."""

    __slots__ = ("child", "evaluate", "key", "parts", "requires")

    def __init__(
        self,
        evaluate: Callable[[dict[str, Any]], list[Node]],
        requires: frozenset[str] | None,
        text: str = "",
        parts: tuple[tuple[str, PathFn], ...] = (),
        key: str | None = None,
        child: tuple[str, frozenset[str]] | None = None,
    ):
        self.evaluate = evaluate
        self.requires = requires
        self.parts = parts or ((text, self),)
        self.key = key
        self.child = child

    def __call__(self, resource: dict[str, Any]) -> list[Node]:
        return self.evaluate(resource)


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
        return PathFn(_deceased, None, _DECEASED)
    parts = [p for p in _split_union(expression) if _applies(p, resource_type)]
    compiled = [_compile_part(p) for p in parts]
    if not compiled:
        raise UnsupportedExpression(f"no part of {expression!r} applies to {resource_type}")
    if len(compiled) == 1:
        return compiled[0]
    requirements = [fn.requires for fn in compiled]
    requires = None if None in requirements else frozenset().union(*requirements)  # type: ignore[arg-type]
    functions = [fn.evaluate for fn in compiled]

    def evaluate(resource: dict[str, Any]) -> list[Node]:
        out: list[Node] = []
        for fn in functions:
            out.extend(fn(resource))
        return out

    return PathFn(evaluate, requires, parts=tuple(part for fn in compiled for part in fn.parts))


def expression_parts(expression: str, resource_type: str) -> list[str]:
    """The union parts of ``expression`` that apply to ``resource_type``, outer parentheses removed."""
    return [_strip_parens(p) for p in _split_union(expression) if _applies(p, resource_type)]


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
    part = original = part.strip()
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
    tokens = _tokens(text)
    if as_type:
        tokens.append(("oftype", as_type))
    tokens = _fuse_choice_types(tokens)
    steps = [_step(token) for token in tokens]
    first = _first_step(tokens[0], steps[0]) if tokens else None
    rest = steps[1:]

    def evaluate(resource: dict[str, Any]) -> list[Node]:
        if first is None:
            return [Node(resource, resource.get("resourceType"))]
        nodes = first(resource)
        for step in rest:
            if not nodes:
                break
            nodes = step(nodes)
        return nodes

    whole = len(tokens) == 1 and (tokens[0][0] == "key" or (tokens[0][0] == "field" and tokens[0][2] is None))
    child = None
    if len(tokens) > 1 and tokens[0][0] == tokens[1][0] == "field" and tokens[0][2] is None:
        name = tokens[1][1]
        if tokens[0][1] not in _choice_keys():
            child = (tokens[0][1], frozenset({name, *(key for key, _ in _choice_keys().get(name, ()))}))
    return PathFn(evaluate, _required_keys(tokens), original, key=tokens[0][1] if whole else None, child=child)


Token = tuple[Any, ...]
_new = tuple.__new__  # _new(Node, (value, type)) is Node(value, type) without a Python-level __new__ call


def _first_step(token: Token, step: Step) -> Callable[[dict[str, Any]], list[Node]]:
    """``step`` applied to a resource: for the usual first steps (an element, a choice key) it reads the
    resource's JSON directly rather than wrapping the resource in a node for the general step."""
    if token[0] not in ("field", "key"):
        return lambda resource: step([Node(resource, resource.get("resourceType"))])
    name, fhir_type, index = (token[1], None, token[2]) if token[0] == "field" else (token[1], token[2], None)
    choices = token[0] == "field" and name in _choice_keys()

    def first(resource: dict[str, Any]) -> list[Node]:
        if name not in resource:  # a choice element (valueQuantity, ...) is for the general step
            return step([Node(resource, resource.get("resourceType"))]) if choices else []
        value = resource[name]
        found = (
            [_new(Node, (v, fhir_type)) for v in value] if isinstance(value, list) else [_new(Node, (value, fhir_type))]
        )
        return found if index is None else found[index : index + 1]

    return first


def _required_keys(tokens: list[Token]) -> frozenset[str] | None:
    """The top-level keys of which a resource needs one for the path to reach anything (None: no such set)."""
    head = tokens[0] if tokens else None
    if head is None:
        return None
    if head[0] == "key":
        return frozenset({head[1]})
    if head[0] == "field":
        return frozenset({head[1], *(key for key, _ in _choice_keys().get(head[1], ()))})
    return None


def _tokens(text: str) -> list[Token]:
    """``Observation.value.ofType(Quantity)`` -> [("field", "value", None), ("oftype", "Quantity")]."""
    tokens: list[Token] = []
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
            tokens.append(("resolve", match.group("rtype")))
        elif match.group("where_eq"):
            tokens.append(("where", match.group("wfield"), match.group("wvalue")))
        elif match.group("oftype"):
            tokens.append(("oftype", match.group("otype")))
        else:
            index = match.group("index")
            tokens.append(("field", match.group("field"), int(index) if index is not None else None))
        pos = match.end()
        if pos < len(text):
            if text[pos] != ".":
                raise UnsupportedExpression(f"cannot compile {text!r} at {text[pos:]!r}")
            pos += 1
    return tokens


def _fuse_choice_types(tokens: list[Token]) -> list[Token]:
    """``value`` then ``ofType(Quantity)`` is the one JSON key ``valueQuantity``: look it up directly."""
    fused: list[Token] = []
    for token in tokens:
        if token[0] == "oftype" and fused and fused[-1][0] == "field" and fused[-1][2] is None:
            name = fused[-1][1]
            wanted = token[1][0].upper() + token[1][1:]
            if any(key == name + wanted for key, _ in _choice_keys().get(name, ())):
                fused[-1] = ("key", name + wanted, token[1][0].lower() + token[1][1:])
                continue
        fused.append(token)
    return fused


def _step(token: Token) -> Step:
    kind = token[0]
    if kind == "field":
        return _child(token[1], token[2])
    if kind == "key":
        return _choice_key(token[1], token[2])
    if kind == "oftype":
        return _of_type(token[1])
    if kind == "resolve":
        return _reference_to(token[1])
    return _where_equals(token[1], token[2])


def _choice_key(key: str, fhir_type: str) -> Step:
    def step(nodes: list[Node]) -> list[Node]:
        out: list[Node] = []
        for node in nodes:
            obj = node.value
            if isinstance(obj, dict) and key in obj:
                out.extend(_new(Node, (v, fhir_type)) for v in _as_list(obj[key]))
        return out

    return step


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
                found: list[Node] = (
                    [_new(Node, (v, None)) for v in value] if isinstance(value, list) else [_new(Node, (value, None))]
                )
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
