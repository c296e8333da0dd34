"""URI parameters: exact match, ``:below`` (prefix) and ``:above`` (R4 search.html#uri)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, false, func, or_

from ..storage.schema import idx_uri
from .paths import Node
from .text import unescape
from .types import IndexValue, SearchContext

__all__ = ["UriType"]


class UriType:
    name = "uri"
    table = idx_uri
    modifiers = frozenset({"below", "above", "missing"})

    def extract(self, nodes: list[Node]) -> list[IndexValue]:
        rows: list[IndexValue] = []
        for node in nodes:
            value = node.value
            if isinstance(value, dict):  # Reference or Attachment with a url
                value = value.get("reference") or value.get("url")
            if isinstance(value, str):
                rows.append((value,))
        return rows

    def clause(self, value: str, modifier: str | None, ctx: SearchContext, table: Any = None) -> ColumnElement[bool]:
        text = unescape(value)
        column = (self.table if table is None else table).c.value
        if modifier == "below":
            return (column >= text) & (column < text + "\U0010ffff")
        if modifier == "above":
            prefixes = [text[:i] for i in range(1, len(text) + 1) if i == len(text) or text[i] in "/|#"]
            return or_(false(), *(column == p for p in prefixes))
        return column == text

    def sort_key(self, table: Any, descending: bool) -> Any:
        return func.max(table.c.value) if descending else func.min(table.c.value)
