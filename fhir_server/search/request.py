"""The parsed form of a search: what the parser produces and the executor consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..searchparams import SearchParam

__all__ = ["Filter", "HasFilter", "Include", "SearchRequest", "SortKey"]


@dataclass
class Filter:
    """One ``name[:modifier]=v1,v2`` term: the values are OR-ed; separate filters are AND-ed."""

    param: SearchParam
    modifier: str | None
    values: list[str]
    # one level of chaining: ``subject:Patient.name=x`` filters the referenced resources with ``chained``
    chained: Filter | None = None
    chain_types: tuple[str, ...] = ()


@dataclass
class HasFilter:
    """Reverse chaining: ``_has:Observation:patient:code=x``, resources referenced by matching ones."""

    source_type: str
    reference: SearchParam
    inner: Filter


@dataclass(frozen=True)
class SortKey:
    code: str  # a parameter code, "_id" or "_lastUpdated"
    param: SearchParam | None
    descending: bool


@dataclass(frozen=True)
class Include:
    """``_include=Source:param[:Target]`` or, with ``reverse``, ``_revinclude``; ``param`` None means ``*``."""

    source_type: str
    param: str | None
    target_type: str | None
    reverse: bool
    iterate: bool


@dataclass
class SearchRequest:
    resource_type: str
    filters: list[Filter] = field(default_factory=list)
    has: list[HasFilter] = field(default_factory=list)
    sort: list[SortKey] = field(default_factory=list)
    count: int = 20
    offset: int = 0
    includes: list[Include] = field(default_factory=list)
    summary: Literal["true", "text", "data", "count", "false"] | None = None
    elements: list[str] | None = None
    total: Literal["none", "estimate", "accurate"] | None = None
    compartment_patient: str | None = None
    # (name, value) of every parameter actually used, in request order: the Bundle's self link shows these
    used: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
