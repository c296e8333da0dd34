"""Compile a ``SearchRequest`` to SQL and run it: filters as (session, id) IN index subqueries, the
session overlay as one anti-join, sort keys as correlated aggregates, count+1 rows to know if there is a next
page, then the ``_include``/``_revinclude`` resources for that page.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    and_,
    exists,
    false,
    func,
    not_,
    or_,
    select,
    tuple_,
)

from ..searchparams import SearchParamRegistry
from ..storage.schema import BASE_SESSION, idx_reference, resources
from .date import instant_clause
from .kinds import PARAM_TYPES
from .request import Filter, HasFilter, Include, SearchRequest
from .text import unescape
from .types import SearchContext

__all__ = ["Found", "SearchResult", "execute_search", "fetch_current", "patient_hint", "sessions_of", "visible"]

_INCLUDE_DEPTH = 4


@dataclass(frozen=True, slots=True)
class Found:
    type: str
    id: str
    content: bytes


@dataclass
class SearchResult:
    total: int | None
    matches: list[Found]
    included: list[Found] = field(default_factory=list)
    has_next: bool = False


def sessions_of(session: str) -> list[str]:
    return [BASE_SESSION] if session == BASE_SESSION else [BASE_SESSION, session]


class _Aliases:
    """Table aliases for one query. Making an alias costs a proxy object per column, so aliases are cached and
    reused across queries (SQLAlchemy constructs are immutable); a query takes the next one it has not used."""

    def __init__(self) -> None:
        self._used: dict[str, int] = {}

    def __call__(self, table: Any) -> Any:
        number = self._used.get(table.name, 0)
        self._used[table.name] = number + 1
        return _alias(table, number)


@lru_cache(maxsize=256)
def _alias(table: Any, number: int) -> Any:
    return table.alias(f"{table.name}_{number}")


def visible(
    resource_type: str | None, session: str, table: Any = resources, aliases: _Aliases | None = None
) -> ColumnElement[bool]:
    """Rows of ``table`` (an alias of resources) that ``session`` sees: its own, else the base's."""
    r = table.c
    condition = and_(r.session.in_(sessions_of(session)), r.deleted == false())
    if resource_type is not None:
        condition = and_(r.type == resource_type, condition)
    if session != BASE_SESSION:
        own = aliases(resources) if aliases is not None else resources.alias("own")
        shadowed = exists(select(own.c.id).where(own.c.type == r.type, own.c.session == session, own.c.id == r.id))
        condition = and_(condition, or_(r.session == session, not_(shadowed)))
    return condition


def _current_index_rows(table: Any, session: str) -> ColumnElement[bool]:
    """Index rows (of an alias ``table``) of the versions ``session`` sees: a base row counts only while the
    session has no row of its own for that resource, since an update or a delete there shadows it."""
    t = table.c
    condition = t.session.in_(sessions_of(session))
    if session != BASE_SESSION:
        own = resources.alias("own")
        shadowed = exists(select(own.c.id).where(own.c.type == t.type, own.c.session == session, own.c.id == t.id))
        condition = and_(condition, or_(t.session == session, not_(shadowed)))
    return condition


class _Compiler:
    def __init__(self, registry: SearchParamRegistry, session: str, ctx: SearchContext):
        self.registry = registry
        self.session = session
        self.ctx = ctx
        self.aliases = _Aliases()

    def where(
        self, r: Any, resource_type: str, request: SearchRequest | None, patient: str | None, lead: Filter | None = None
    ) -> Any:
        """The conditions on ``r``. ``lead`` is the filter that names ``patient``: when other filters narrow
        the search, it is checked per candidate (a probe) instead of listing all of that patient's rows."""
        conditions: list[Any] = [visible(resource_type, self.session, r, self.aliases)]
        if request is not None:
            # one filter drives (its index rows are listed); the others are probed per candidate, which costs far
            # less than listing, say, every vital sign of a patient to intersect with the last day's
            driver = min(request.filters, key=lambda f: _selectivity_rank(f, lead)) if request.filters else None
            for f in request.filters:
                conditions.append(self.filter(r, resource_type, f, patient, probe=f is not driver))
            for h in request.has:
                conditions.append(self.has(r, resource_type, h))
            if request.compartment_patient is not None:
                probe = driver is not None
                conditions.append(self.compartment(r, resource_type, request.compartment_patient, probe))
        return and_(*conditions)

    def index_rows(
        self, resource_type: str, f: Filter, patient: str | None, values: bool = True, of: Any = None
    ) -> Select[Any]:
        """SELECT session, id of the index rows that match ``f``; with ``of`` (a resources alias), only that
        resource's rows (a correlated probe)."""
        kind = PARAM_TYPES[f.param.type]
        t = self.aliases(kind.table)
        conditions = [t.c.type == resource_type, t.c.param == f.param.code, t.c.session.in_(sessions_of(self.session))]
        if of is not None:
            conditions = [
                t.c.session == of.c.session,
                t.c.type == of.c.type,
                t.c.id == of.c.id,
                t.c.param == f.param.code,
            ]
        if patient is not None:
            conditions.append(t.c.patient == patient)
        if values:
            ctx = replace(self.ctx, targets=f.param.targets)
            modifier = None if f.modifier == "not" else f.modifier
            clauses = [kind.clause(v, modifier, ctx, t) for v in f.values]
            conditions.append(or_(*clauses))
        return select(t.c.session, t.c.id).where(*conditions)

    def filter(
        self, r: Any, resource_type: str, f: Filter, patient: str | None, probe: bool = False
    ) -> ColumnElement[bool]:
        key = tuple_(r.c.session, r.c.id)

        def holds(values: bool = True) -> ColumnElement[bool]:
            if probe:
                return exists(self.index_rows(resource_type, f, patient, values, of=r))
            return key.in_(self.index_rows(resource_type, f, patient, values))

        if f.param.code == "_id":  # not in the index tables: the id is the row's own key
            ids = r.c.id.in_([unescape(v) for v in f.values])
            return not_(ids) if f.modifier == "not" else ids
        if f.param.code == "_lastUpdated":  # likewise: the row's own last_updated column
            if f.modifier == "missing":
                return false() if f.values == ["true"] else r.c.last_updated.is_not(None)
            return or_(*(instant_clause(r.c.last_updated, v, self.ctx) for v in f.values))
        if f.chained is not None:
            return key.in_(self.chain(resource_type, f, patient))
        if f.modifier == "missing":
            present = holds(values=False)
            return not_(present) if f.values == ["true"] else present
        if f.modifier == "not":
            return not_(holds())
        return holds()

    def chain(self, resource_type: str, f: Filter, patient: str | None) -> Select[Any]:
        assert f.chained is not None
        ref = self.aliases(idx_reference)
        targets = []
        for target_type in f.chain_types:
            target_param = self.registry.get(target_type, f.chained.param.code)
            if target_param is None:
                continue
            inner = Filter(target_param, f.chained.modifier, f.chained.values)
            r2 = self.aliases(resources)
            matched = select(r2.c.type, r2.c.id).where(self.where(r2, target_type, _only(inner), None))
            targets.append(tuple_(ref.c.target_type, ref.c.target_id).in_(matched))
        conditions = [
            ref.c.type == resource_type,
            ref.c.param == f.param.code,
            ref.c.session.in_(sessions_of(self.session)),
            ref.c.url.is_(None),
            or_(false(), *targets),
        ]
        if patient is not None:
            conditions.append(ref.c.patient == patient)
        return select(ref.c.session, ref.c.id).where(*conditions)

    def has(self, r: Any, resource_type: str, h: HasFilter) -> ColumnElement[bool]:
        ref = self.aliases(idx_reference)
        r2 = self.aliases(resources)
        sources = select(r2.c.session, r2.c.id).where(self.where(r2, h.source_type, _only(h.inner), None))
        referenced = select(ref.c.target_id).where(
            ref.c.type == h.source_type,
            ref.c.param == h.reference.code,
            ref.c.session.in_(sessions_of(self.session)),
            ref.c.target_type == resource_type,
            ref.c.url.is_(None),
            tuple_(ref.c.session, ref.c.id).in_(sources),
        )
        return r.c.id.in_(referenced)

    def compartment(self, r: Any, resource_type: str, patient_id: str, probe: bool = False) -> ColumnElement[bool]:
        if resource_type == "Patient":
            return r.c.id == patient_id
        params = self.registry.compartment.get(resource_type, ())
        if not params:
            return false()
        ref = self.aliases(idx_reference)
        conditions = [
            ref.c.patient == patient_id,
            ref.c.param.in_(params),
            ref.c.target_type == "Patient",
            ref.c.target_id == patient_id,
            ref.c.url.is_(None),
        ]
        if probe:
            correlated = [ref.c.session == r.c.session, ref.c.type == r.c.type, ref.c.id == r.c.id]
            return exists(select(ref.c.id).where(*correlated, *conditions))
        members = select(ref.c.session, ref.c.id).where(
            ref.c.type == resource_type, ref.c.session.in_(sessions_of(self.session)), *conditions
        )
        return tuple_(r.c.session, r.c.id).in_(members)

    def order_by(self, r: Any, request: SearchRequest) -> list[Any]:
        keys: list[Any] = []
        for key in request.sort:
            if key.code == "_id":
                column: Any = r.c.id
            elif key.code == "_lastUpdated":
                column = r.c.last_updated
            else:
                assert key.param is not None
                kind = PARAM_TYPES[key.param.type]
                t = self.aliases(kind.table)
                column = (
                    select(kind.sort_key(t, key.descending))
                    .where(t.c.session == r.c.session, t.c.type == r.c.type, t.c.id == r.c.id, t.c.param == key.code)
                    .scalar_subquery()
                )
            keys.append(column.desc().nulls_last() if key.descending else column.asc().nulls_last())
        keys.append(r.c.id)
        return keys


def _only(f: Filter) -> SearchRequest:
    return SearchRequest(resource_type=f.param.resource_type, filters=[f])


# parameters most resources of a patient share a value of: poor drivers of a search
_BROAD = frozenset({"category", "status", "clinical-status", "verification-status", "intent", "gender", "active"})


def _selectivity_rank(f: Filter, lead: Filter | None) -> int:
    """Lower is a better filter to drive a search from (a guess from the parameter; no statistics)."""
    if f.param.code in ("_id", "_lastUpdated"):
        return 9  # conditions on the row itself, not index lists: they never drive
    if f.modifier in ("not", "missing"):
        return 8  # negations match most rows
    if f is lead:
        return 6  # every resource of the patient
    if f.param.code in _BROAD:
        return 4
    if f.param.type == "date":
        return 1  # agents' windows ("the last 24 h") are narrow
    return 2


def patient_hint(request: SearchRequest, registry: SearchParamRegistry) -> tuple[str | None, Filter | None]:
    """The one patient every match must belong to, when the request says so (it narrows every index lookup),
    and the filter that says so."""
    if request.compartment_patient is not None:
        return request.compartment_patient, None
    compartment_params = registry.patient_links.get(request.resource_type, frozenset())
    if request.resource_type == "Patient":
        return None, None
    for f in request.filters:
        if f.param.type != "reference" or f.modifier not in (None, "Patient") or f.chained or len(f.values) != 1:
            continue
        if f.param.code not in compartment_params:
            continue
        value = f.values[0]
        if value.startswith("Patient/") and value.count("/") == 1:
            return value.split("/", 1)[1], f
        if "/" not in value and ":" not in value and (f.modifier == "Patient" or f.param.targets == ("Patient",)):
            return value, f
    return None, None


def execute_search(
    conn: Connection, registry: SearchParamRegistry, request: SearchRequest, session: str, ctx: SearchContext
) -> SearchResult:
    """Run ``request`` in ``session``: the page of matches, the total if asked, and the included resources."""
    compiler = _Compiler(registry, session, ctx)
    patient, lead = patient_hint(request, registry)
    r = compiler.aliases(resources)
    where = compiler.where(r, request.resource_type, request, patient, lead)
    if request.summary == "count":
        return SearchResult(total=_count(conn, r, where), matches=[])
    counted = request.total != "none"
    # when a patient's search is narrowed by another filter the matches are few: the total rides along as a
    # window count in the one query. A broad search counts in a query of its own instead, because a window
    # would carry every match's content through the sort (a page query keeps only the top rows).
    windowed = counted and patient is not None and len(request.filters) > 1
    columns = [r.c.type, r.c.id, r.c.content, *([func.count().over().label("total")] if windowed else [])]
    query = (
        select(*columns)
        .where(where)
        .order_by(*compiler.order_by(r, request))
        .limit(request.count + 1)
        .offset(request.offset)
    )
    rows = conn.execute(query).all()
    has_next = len(rows) > request.count
    total = None
    if windowed and rows:
        total = int(rows[0].total)
    elif counted:
        # a last page tells the total by itself (most agent searches fit one page): count only when it cannot
        seen_all = not has_next and (rows or request.offset == 0)
        total = request.offset + len(rows) if seen_all else _count(conn, r, where)
    matches = [Found(row.type, row.id, row.content) for row in rows[: request.count]]
    included = _includes(conn, registry, request.includes, matches, session) if request.includes else []
    return SearchResult(total=total, matches=matches, included=included, has_next=has_next)


def _count(conn: Connection, r: Any, where: Any) -> int:
    return int(conn.execute(select(func.count()).select_from(r).where(where)).scalar_one())


def fetch_current(conn: Connection, session: str, keys: set[tuple[str, str]]) -> list[Found]:
    """The visible current versions of the (type, id) pairs in ``keys``."""
    if not keys:
        return []
    r = resources.alias("r")
    rows = conn.execute(
        select(r.c.type, r.c.id, r.c.content).where(tuple_(r.c.type, r.c.id).in_(list(keys)), visible(None, session, r))
    ).all()
    return [Found(row.type, row.id, row.content) for row in rows]


def _includes(
    conn: Connection, registry: SearchParamRegistry, includes: list[Include], matches: list[Found], session: str
) -> list[Found]:
    seen = {(m.type, m.id) for m in matches}
    frontier = list(matches)
    included: list[Found] = []
    for depth in range(_INCLUDE_DEPTH):
        wanted: set[tuple[str, str]] = set()
        for inc in includes:
            if depth > 0 and not inc.iterate:
                continue
            sources = [f for f in frontier if f.type == inc.source_type] if not inc.reverse else frontier
            if not sources:
                continue
            ref = idx_reference.alias()
            if inc.reverse:
                condition = and_(
                    ref.c.type == inc.source_type,
                    tuple_(ref.c.target_type, ref.c.target_id).in_([(s.type, s.id) for s in sources]),
                )
                column_pair = (ref.c.type, ref.c.id)
            else:
                condition = and_(
                    ref.c.type == inc.source_type, ref.c.id.in_([s.id for s in sources]), ref.c.target_id.is_not(None)
                )
                if inc.target_type:
                    condition = and_(condition, ref.c.target_type == inc.target_type)
                column_pair = (ref.c.target_type, ref.c.target_id)
            if inc.param is not None:
                condition = and_(condition, ref.c.param == inc.param)
            query = (
                select(*column_pair).where(condition, ref.c.url.is_(None), _current_index_rows(ref, session)).distinct()
            )
            wanted.update((row[0], row[1]) for row in conn.execute(query) if (row[0], row[1]) not in seen)
        if not wanted:
            break
        frontier = fetch_current(conn, session, wanted)
        seen.update(wanted)
        included.extend(frontier)
    return included
