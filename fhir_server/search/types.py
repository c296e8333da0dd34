"""The contract every search-parameter type implements (one module per type, as HAPI's SPIDX tables)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from sqlalchemy import ColumnElement, Table

from .paths import Node

__all__ = ["IndexRow", "IndexValue", "ParamType", "SearchContext"]

# tuples in the index table's column order: inserted as they are, with no per-row dict to build or unpack
IndexValue = tuple[Any, ...]  # the value columns of an index row (the columns after ``patient``)
IndexRow = tuple[Any, ...]  # a whole index row: session, type, id, param, patient, then the value columns


@dataclass(frozen=True, kw_only=True)
class SearchContext:
    """What a clause needs to know about the request beyond the value itself."""

    base_url: str
    default_tz: timedelta = timedelta(0)
    now_ms: int | None = None
    targets: tuple[str, ...] = field(default=())


class ParamType(Protocol):
    """A search-parameter type: owns its index table, extracts rows on write, builds clauses on search."""

    name: str
    table: Table
    modifiers: frozenset[str]

    def extract(self, nodes: list[Node]) -> list[IndexValue]:
        """Index values (the value columns, in table order) for the nodes a parameter's expression reached."""
        ...

    def clause(self, value: str, modifier: str | None, ctx: SearchContext, table: Any = None) -> ColumnElement[bool]:
        """A condition true for index rows that match one search value (on ``table``, an alias of the
        type's index table, or the table itself)."""
        ...

    def sort_key(self, table: Any, descending: bool) -> Any:
        """The aggregate that orders resources by this parameter."""
        ...
