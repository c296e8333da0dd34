"""Quantity parameters: ``[prefix]value[|system|code]`` (R4 search.html#quantity).

``5.4|http://unitsofmeasure.org|mg`` matches system and code; ``5.4||mg`` matches the code or the unit text.
Values are compared as written, without UCUM conversion (HAPI normalises units; we do not, yet).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_

from ..storage.schema import idx_quantity
from .number import number_clause
from .paths import Node
from .text import split_escaped, unescape
from .types import IndexValue, SearchContext
from .values import parse_number_range, split_prefix

__all__ = ["QuantityType"]

_ISO_4217 = "urn:iso:std:iso:4217"


class QuantityType:
    name = "quantity"
    table = idx_quantity
    modifiers = frozenset({"missing"})

    def extract(self, nodes: list[Node]) -> list[IndexValue]:
        rows: list[IndexValue] = []
        for node in nodes:
            q = node.value
            if not isinstance(q, dict):
                continue
            value = q.get("value")
            if not isinstance(value, int | float) or isinstance(value, bool):
                continue
            if "currency" in q:  # Money
                rows.append((float(value), _ISO_4217, q["currency"], None))
            else:
                rows.append((float(value), q.get("system"), q.get("code"), q.get("unit")))
        return rows

    def clause(self, value: str, modifier: str | None, ctx: SearchContext, table: Any = None) -> ColumnElement[bool]:
        prefix, text = split_prefix(value)
        parts = split_escaped(text, "|")
        number = parse_number_range(unescape(parts[0]), what="quantity")
        t = (self.table if table is None else table).c
        condition = number_clause(t.value, prefix, number)
        if len(parts) >= 3:
            system, code = unescape(parts[1]), unescape("|".join(parts[2:]))
            if system:
                condition = and_(condition, t.system == system, t.code == code)
            elif code:
                condition = and_(condition, or_(t.code == code, t.unit == code))
        return condition

    def sort_key(self, table: Any, descending: bool) -> Any:
        return func.max(table.c.value) if descending else func.min(table.c.value)
