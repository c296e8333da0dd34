"""Token parameters: codes, Codings, CodeableConcepts, Identifiers, ContactPoints and booleans
(R4 search.html#token): ``code``, ``system|code``, ``|code``, ``system|``; ``:text``, ``:not``, ``:missing``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, func

from ..storage.schema import idx_token
from .paths import Node
from .text import normalize, split_escaped, unescape
from .types import IndexValue, SearchContext

__all__ = ["TokenType"]

_CONTACT_SYSTEMS = {"phone", "fax", "email", "pager", "url", "sms", "other"}


def _row(code: Any, system: Any = None, text: Any = None) -> IndexValue:
    return (
        code if isinstance(code, str) else None,
        system if isinstance(system, str) else None,
        normalize(text)[:512] if isinstance(text, str) else None,
    )


def _token_rows(value: Any) -> list[IndexValue]:
    if isinstance(value, bool):
        return [_row("true" if value else "false")]
    if isinstance(value, str):
        return [_row(value)]
    if not isinstance(value, dict):
        return []
    if "coding" in value or ("text" in value and "value" not in value):  # CodeableConcept
        rows = [_row(c.get("code"), c.get("system"), c.get("display")) for c in value.get("coding") or []]
        if isinstance(value.get("text"), str):
            text = _row(None, None, value["text"])
            # :text finds the resource by a coding's display already when the text is the same (as it usually
            # is): a row of its own would only add a fifth of the token index
            if all(row[2] != text[2] for row in rows):
                rows.append(text)
        return rows
    if "value" in value and ("use" in value or value.get("system") in _CONTACT_SYSTEMS):  # ContactPoint
        return [_row(value.get("value"), value.get("system"))]
    if "value" in value:  # Identifier
        type_text = (value.get("type") or {}).get("text") if isinstance(value.get("type"), dict) else None
        return [_row(value.get("value"), value.get("system"), type_text)]
    if "code" in value or "system" in value:  # Coding
        return [_row(value.get("code"), value.get("system"), value.get("display"))]
    return []


class TokenType:
    name = "token"
    table = idx_token
    modifiers = frozenset({"text", "not", "missing"})

    def extract(self, nodes: list[Node]) -> list[IndexValue]:
        rows: list[IndexValue] = []
        for node in nodes:
            rows.extend(r for r in _token_rows(node.value) if r[0] is not None or r[2] is not None)  # code or text
        return rows

    def clause(self, value: str, modifier: str | None, ctx: SearchContext, table: Any = None) -> ColumnElement[bool]:
        t = (self.table if table is None else table).c
        if modifier == "text":
            norm = normalize(unescape(value))
            return (t.text >= norm) & (t.text < norm + "\U0010ffff")
        parts = split_escaped(value, "|")
        if len(parts) == 1:
            return t.code == unescape(parts[0])
        system, code = unescape(parts[0]), unescape("|".join(parts[1:]))
        if not system:
            return (t.code == code) & t.system.is_(None)
        if not code:
            return t.system == system
        return (t.system == system) & (t.code == code)

    def sort_key(self, table: Any, descending: bool) -> Any:
        return func.max(table.c.code) if descending else func.min(table.c.code)
