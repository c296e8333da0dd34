"""Date parameters: values as [low, high) ranges by precision, all nine prefixes (R4 search.html#date).

S is the search range, T the stored (target) range; both half-open in epoch milliseconds.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, not_, or_

from ..storage.records import format_instant
from ..storage.schema import idx_date
from .paths import Node
from .types import IndexValue, SearchContext
from .values import MAX_MS, MIN_MS, DateRange, parse_date_range, split_prefix

__all__ = ["DateType", "instant_clause", "stored_ranges"]


def stored_ranges(node: Node, default_tz: Any = None) -> list[DateRange]:
    """The ranges a stored date, dateTime, instant, Period or Timing covers."""
    value = node.value
    kwargs = {} if default_tz is None else {"default_tz": default_tz}
    try:
        if isinstance(value, str):
            return [parse_date_range(value, **kwargs)]
        if isinstance(value, dict):
            if "start" in value or "end" in value:  # Period: an absent end is open
                low = parse_date_range(value["start"], **kwargs).low if value.get("start") else MIN_MS
                high = parse_date_range(value["end"], **kwargs).high if value.get("end") else MAX_MS
                return [DateRange(low, max(low, high))]
            events = value.get("event")
            if isinstance(events, list) and events:  # Timing
                ranges = [parse_date_range(e, **kwargs) for e in events if isinstance(e, str)]
                return [DateRange(min(r.low for r in ranges), max(r.high for r in ranges))] if ranges else []
            bounds = (value.get("repeat") or {}).get("boundsPeriod") if isinstance(value.get("repeat"), dict) else None
            if isinstance(bounds, dict):
                return stored_ranges(Node(bounds), default_tz)
    except Exception:
        return []  # a value the validator let through that is not a date: not searchable by date
    return []


def _approximate(s: DateRange, now_ms: int | None) -> tuple[int, int]:
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    slack = abs(now - s.low) // 10  # 10% of the gap between now and the date (R4 search.html#prefix)
    return s.low - slack, s.high + slack


class DateType:
    name = "date"
    table = idx_date
    modifiers = frozenset({"missing"})

    def extract(self, nodes: list[Node]) -> list[IndexValue]:
        return [(r.low, r.high) for node in nodes for r in stored_ranges(node)]

    def clause(self, value: str, modifier: str | None, ctx: SearchContext, table: Any = None) -> ColumnElement[bool]:
        prefix, text = split_prefix(value)
        s = parse_date_range(text, default_tz=ctx.default_tz)
        columns = (self.table if table is None else table).c
        low, high = columns.low, columns.high
        contains = and_(low >= s.low, high <= s.high)
        if prefix == "eq":
            return contains
        if prefix == "ne":
            return not_(contains)
        # each condition also states a bound on ``high`` it implies, so the (patient, ..., high) index can seek
        if prefix == "gt":
            return high > s.high
        if prefix == "lt":
            return low < s.low
        if prefix == "ge":
            return and_(high > s.low, or_(high > s.high, contains))
        if prefix == "le":
            return or_(low < s.low, contains)
        if prefix == "sa":
            return and_(high > s.high, low >= s.high)
        if prefix == "eb":
            return high <= s.low
        a_low, a_high = _approximate(s, ctx.now_ms)
        return and_(low < a_high, high > a_low)

    def sort_key(self, table: Any, descending: bool) -> Any:
        return func.max(table.c.high) if descending else func.min(table.c.low)


def instant_clause(column: Any, value: str, ctx: SearchContext) -> ColumnElement[bool]:
    """A date search on a column of instants stored as UTC text with milliseconds (``meta.lastUpdated``).

    Such a value v covers [v, v + 1 ms), so each prefix reduces to a comparison of v with S's bounds, and the
    bounds compare as text because every stored instant has the same format.
    """
    prefix, text = split_prefix(value)
    s = parse_date_range(text, default_tz=ctx.default_tz)
    low, high = _iso(s.low), _iso(s.high)
    if prefix == "eq":
        return and_(column >= low, column < high)
    if prefix == "ne":
        return not_(and_(column >= low, column < high))
    if prefix in ("gt", "sa"):
        return column >= high
    if prefix in ("lt", "eb"):
        return column < low
    if prefix == "ge":
        return column >= low
    if prefix == "le":
        return column < high
    a_low, a_high = _approximate(s, ctx.now_ms)
    return and_(column >= _iso(a_low), column < _iso(a_high))


def _iso(ms: int) -> str:
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    return format_instant(moment)
