"""Reference parameters (R4 search.html#reference): ``id``, ``Type/id``, an absolute URL, ``:Type``,
``:identifier``. References to this server's own base URL are stored relative, so every form finds them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Table, func

from ..errors import InvalidSearch
from .paths import Node
from .text import split_escaped, unescape
from .types import IndexValue, SearchContext

__all__ = ["ParsedReference", "ReferenceType", "localise", "parse_reference"]

_RELATIVE_RE = re.compile(r"^(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")


@dataclass(frozen=True, slots=True)
class ParsedReference:
    target_type: str | None
    target_id: str | None
    url: str | None


def parse_reference(reference: str, base_url: str | None = None) -> ParsedReference:
    """Split a reference into type/id (local) or keep it as a URL (external, urn:, canonical)."""
    if base_url and "://" in reference:
        reference = _make_local(reference, base_url)
    match = _RELATIVE_RE.match(reference)
    if match:
        return ParsedReference(match.group("type"), match.group("id"), None)
    tail = reference.split("|")[0].rstrip("/").split("/")
    if len(tail) >= 4 and tail[-2] == "_history":
        tail = tail[:-2]
    if "://" in reference and len(tail) >= 2 and _RELATIVE_RE.match("/".join(tail[-2:])):
        return ParsedReference(tail[-2], tail[-1], reference)
    return ParsedReference(None, None, reference)


def localise(row: IndexValue, base_url: str) -> IndexValue:
    """``row`` (a reference's index value) as the local reference it is when its URL is this server's own
    (``base_url``'s origin).

    Clients copy the absolute ``fullUrl`` a searchset gives them into references; those must index as
    ``Type/id`` so that every reference form, chaining, compartments and includes find them.
    """
    url = row[2]
    if url is None or "://" not in url:
        return row
    parsed = parse_reference(url, base_url)
    if parsed.url is not None:
        return row
    return (parsed.target_id, parsed.target_type, None, *row[3:])


def _make_local(reference: str, base_url: str) -> str:
    """Strip this server's own origin and FHIR base (``/fhir/`` or ``/sessions/{id}/fhir/``)."""
    origin = "/".join(base_url.split("/")[:3])
    if reference.startswith(origin + "/") and "/fhir/" in reference:
        return reference[reference.rindex("/fhir/") + len("/fhir/") :]
    return reference


class ReferenceType:
    """Reference index rows. Absolute references to this server are made local by ``localise``, per write."""

    name = "reference"
    modifiers = frozenset({"identifier", "missing"})  # plus ":Type", checked against the parameter's targets

    def __init__(self, table: Table):
        self.table = table

    def extract(self, nodes: list[Node]) -> list[IndexValue]:
        rows: list[IndexValue] = []
        for node in nodes:
            value = node.value
            if isinstance(value, str):  # canonical
                rows.append(_row(ParsedReference(None, None, value)))
                continue
            if not isinstance(value, dict):
                continue
            identifier = value.get("identifier") if isinstance(value.get("identifier"), dict) else {}
            ref = value.get("reference")
            if isinstance(ref, str) and not ref.startswith("#"):
                parsed = parse_reference(ref)
                rows.append(_row(parsed, identifier))
            elif identifier:
                rows.append(_row(ParsedReference(None, None, None), identifier))
        return rows

    def clause(self, value: str, modifier: str | None, ctx: SearchContext, table: Any = None) -> ColumnElement[bool]:
        t = (self.table if table is None else table).c
        text = unescape(value)
        if modifier == "identifier":
            parts = split_escaped(value, "|")
            if len(parts) == 1:
                return t.ident_value == unescape(parts[0])
            system, code = unescape(parts[0]), unescape("|".join(parts[1:]))
            if not system:
                return (t.ident_value == code) & t.ident_system.is_(None)
            if not code:
                return t.ident_system == system
            return (t.ident_system == system) & (t.ident_value == code)
        if modifier:  # a type modifier, already checked against the parameter's targets
            if "/" in text:
                raise InvalidSearch(f"with :{modifier} the value is a plain id, not {text!r}")
            return (t.target_type == modifier) & (t.target_id == text) & t.url.is_(None)
        if "/" not in text and ":" not in text:
            condition = (t.target_id == text) & t.url.is_(None)
            if len(ctx.targets) == 1:
                condition = condition & (t.target_type == ctx.targets[0])
            return condition
        parsed = parse_reference(text, ctx.base_url)
        if parsed.url is None:
            return (t.target_type == parsed.target_type) & (t.target_id == parsed.target_id) & t.url.is_(None)
        return t.url == parsed.url

    def sort_key(self, table: Any, descending: bool) -> Any:
        return func.max(table.c.target_id) if descending else func.min(table.c.target_id)


def _row(parsed: ParsedReference, identifier: dict[str, Any] | None = None) -> IndexValue:
    """The value columns of idx_reference: target_id, target_type, url, ident_system, ident_value."""
    identifier = identifier or {}
    return (parsed.target_id, parsed.target_type, parsed.url, identifier.get("system"), identifier.get("value"))
