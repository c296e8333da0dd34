"""Number parameters and the number comparison shared with quantities (R4 search.html#number).

A search number is a range by its written precision (``100`` is [99.5, 100.5)); a stored number is a point v.
eq: v in S; gt/lt compare with the number itself; ge/le include S; sa/eb lie wholly above/below S; ap is
eq or within 10% of the value.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, and_, func, not_, or_

from ..storage.schema import idx_number
from .paths import Node
from .types import IndexValue, SearchContext
from .values import NumberRange, parse_number_range, split_prefix

__all__ = ["NumberType", "number_clause"]


def _approximate(s: NumberRange) -> tuple[float, float]:
    """10% of the number either side, computed in decimal: in floats 0.6 + 0.06 is 0.6599999999999999, and
    ap0.6 would miss a stored 0.66. ``repr`` gives back the digits the number was parsed from."""
    value = Decimal(repr(s.value))
    slack = abs(value) / 10
    return float(value - slack), float(value + slack)


def number_clause(column: Any, prefix: str, s: NumberRange) -> ColumnElement[bool]:
    """The prefix semantics of the module docstring, on a column of stored values."""
    if prefix == "eq":
        return and_(column >= s.low, column < s.high)
    if prefix == "ne":
        return not_(and_(column >= s.low, column < s.high))
    if prefix == "gt":
        return column > s.value
    if prefix == "lt":
        return column < s.value
    if prefix == "ge":
        return column >= s.low
    if prefix == "le":
        return column < s.high
    if prefix == "sa":
        return column >= s.high
    if prefix == "eb":
        return column < s.low
    low, high = _approximate(s)
    return or_(and_(column >= s.low, column < s.high), and_(column >= low, column <= high))


class NumberType:
    name = "number"
    table = idx_number
    modifiers = frozenset({"missing"})

    def extract(self, nodes: list[Node]) -> list[IndexValue]:
        rows: list[IndexValue] = []
        for node in nodes:
            value = node.value.get("value") if isinstance(node.value, dict) else node.value
            if isinstance(value, int | float) and not isinstance(value, bool):
                rows.append((float(value),))
        return rows

    def clause(self, value: str, modifier: str | None, ctx: SearchContext, table: Any = None) -> ColumnElement[bool]:
        prefix, text = split_prefix(value)
        return number_clause((self.table if table is None else table).c.value, prefix, parse_number_range(text))

    def sort_key(self, table: Any, descending: bool) -> Any:
        return func.max(table.c.value) if descending else func.min(table.c.value)
