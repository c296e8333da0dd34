"""String parameters: starts-with ignoring case and accents; ``:exact``, ``:contains`` (R4 search.html#string)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, func

from ..storage.schema import idx_string
from .paths import Node
from .text import normalize, unescape
from .types import IndexValue, SearchContext

__all__ = ["StringType"]

_NAME_PARTS = ("family", "given", "prefix", "suffix", "text")
_ADDRESS_PARTS = ("line", "city", "district", "state", "postalCode", "country", "text")


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, dict):
        return []
    out: list[str] = []
    parts = _ADDRESS_PARTS if ("city" in value or "line" in value or "postalCode" in value) else _NAME_PARTS
    for part in parts:
        item = value.get(part)
        for text in item if isinstance(item, list) else [item]:
            if isinstance(text, str):
                out.append(text)
    return out


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class StringType:
    name = "string"
    table = idx_string
    modifiers = frozenset({"exact", "contains", "missing"})

    def extract(self, nodes: list[Node]) -> list[IndexValue]:
        rows: list[IndexValue] = []
        for node in nodes:
            for text in _strings(node.value):
                rows.append((normalize(text)[:512], text[:512]))
        return rows

    def clause(self, value: str, modifier: str | None, ctx: SearchContext, table: Any = None) -> ColumnElement[bool]:
        text = unescape(value)
        t = (self.table if table is None else table).c
        if modifier == "exact":
            return t.exact == text
        norm = normalize(text)
        if modifier == "contains":
            return t.norm.like(f"%{_like_escape(norm)}%", escape="\\")
        # starts-with as a range, so the (type, param, norm) index serves it
        return (t.norm >= norm) & (t.norm < norm + "\U0010ffff")

    def sort_key(self, table: Any, descending: bool) -> Any:
        return func.max(table.c.norm) if descending else func.min(table.c.norm)
