"""Compile a ``SearchRequest`` to SQL and run it: filters as (session, id) IN index subqueries, the
session overlay as one anti-join, sort keys as correlated aggregates, count+1 rows to know if there is a next
page, then the ``_include``/``_revinclude`` resources for that page.

Building the SQLAlchemy expression of a search costs more than running it, so a search is compiled once per
shape (the resource type, the parameters, modifiers, sort, and each value's form: ``system|code`` or ``code``, a
date's prefix...) with every value that varies (the session, the patient, each value's bound parameters) as a
named bound parameter, which later searches of that shape fill in from their own request.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field, replace
from functools import lru_cache, partial
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    and_,
    bindparam,
    exists,
    false,
    func,
    not_,
    or_,
    select,
    tuple_,
)
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.visitors import iterate, replacement_traverse

from ..searchparams import SearchParam, SearchParamRegistry
from ..storage.schema import BASE_SESSION, idx_reference, resources
from .date import instant_clause
from .kinds import PARAM_TYPES
from .reference import parse_reference
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
    resource_type: str | None,
    session: str,
    table: Any = resources,
    aliases: _Aliases | None = None,
    binds: tuple[Any, Any] | None = None,
) -> ColumnElement[bool]:
    """Rows of ``table`` (an alias of resources) that ``session`` sees: its own, else the base's. ``binds``
    stand for the session's list of sessions and its id (bound parameters of a compiled shape)."""
    sessions, own_session = binds or (sessions_of(session), session)
    r = table.c
    condition = and_(r.session.in_(sessions), r.deleted == false())
    if resource_type is not None:
        condition = and_(r.type == resource_type, condition)
    if session != BASE_SESSION:
        own = aliases(resources) if aliases is not None else resources.alias("own")
        shadowed = exists(select(own.c.id).where(own.c.type == r.type, own.c.session == own_session, own.c.id == r.id))
        condition = and_(condition, or_(r.session == own_session, not_(shadowed)))
    return condition


def _rows_of(table: Any, param: SearchParam) -> ColumnElement[bool]:
    """Index rows (of an alias ``table``) that hold ``param``'s values: its own, or those of the parameters it
    derives from (a union of them, or their references to one type), as it is not stored twice."""
    stored = param.stored_as
    condition = table.c.param == stored[0] if len(stored) == 1 else table.c.param.in_(stored)
    if param.stored_target is not None:
        condition = and_(condition, table.c.target_type == param.stored_target)
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


@dataclass(frozen=True, slots=True)
class _Run:
    """One search of a compiled shape: where its bound parameters take their values from."""

    request: SearchRequest
    session: str
    patient: str | None
    ctx: SearchContext


Getter = Callable[[_Run], Any]


class _Compiler:
    """Builds the SQL of one search shape. Every value that varies between searches of the shape is a named bound
    parameter, with in ``params`` how a search's value for it is found; ``values`` finds a filter's list of
    values in any request of the shape (by the identity of the list in the request compiled)."""

    def __init__(
        self,
        registry: SearchParamRegistry,
        session: str,
        ctx: SearchContext,
        values: dict[int, Callable[[SearchRequest], list[str]]],
    ):
        self.registry = registry
        self.session = session
        self.ctx = ctx
        self.aliases = _Aliases()
        self.values = values
        self.params: dict[str, Getter] = {}
        sessions = self.bind(sessions_of(session), lambda run: sessions_of(run.session), expanding=True)
        own = self.bind(session, lambda run: run.session) if session != BASE_SESSION else session
        self.sessions = (sessions, own)

    def bind(self, value: Any, getter: Getter, expanding: bool = False, type_: Any = None) -> BindParameter[Any]:
        name = f"p{len(self.params)}"
        self.params[name] = getter
        return bindparam(name, value, type_=type_, expanding=expanding)

    def value_clause(
        self, kind: str, values: list[str], index: int, modifier: str | None, ctx: SearchContext, table: Any
    ) -> Any:
        """The condition of ``values[index]`` (a ``kind`` value) on ``table``, its bound values named."""
        clause = _value_clause(kind, values[index], modifier, ctx, table)
        found = self.values[id(values)]
        targets = ctx.targets

        def getter(position: int) -> Getter:
            def value(run: _Run) -> Any:
                text = found(run.request)[index]
                return _bound_values(kind, text, modifier, replace(run.ctx, targets=targets))[1][position]

            return value

        named = {id(b): self.bind(b.value, getter(i), type_=b.type) for i, b in enumerate(_binds(clause))}

        def rename(element: Any, **kw: Any) -> Any:
            return named.get(id(element))

        return replacement_traverse(clause, {}, rename)

    def where(
        self, r: Any, resource_type: str, request: SearchRequest | None, patient: Any, lead: Filter | None = None
    ) -> Any:
        """The conditions on ``r``. ``lead`` is the filter that names ``patient`` (a bound parameter): when other
        filters narrow the search, it is checked per candidate (a probe) instead of listing all of that patient's
        rows."""
        conditions: list[Any] = [visible(resource_type, self.session, r, self.aliases, self.sessions)]
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
                assert patient is not None  # the compartment's patient is the search's (patient_hint)
                conditions.append(self.compartment(r, resource_type, patient, probe))
        return and_(*conditions)

    def index_rows(
        self, resource_type: str, f: Filter, patient: Any, values: bool = True, of: Any = None
    ) -> Select[Any]:
        """SELECT session, id of the index rows that match ``f``; with ``of`` (a resources alias), only that
        resource's rows (a correlated probe)."""
        kind = PARAM_TYPES[f.param.type]
        t = self.aliases(kind.table)
        param = _rows_of(t, f.param)
        conditions = [t.c.type == resource_type, param, t.c.session.in_(self.sessions[0])]
        if of is not None:
            conditions = [t.c.session == of.c.session, t.c.type == of.c.type, t.c.id == of.c.id, param]
        if patient is not None:
            conditions.append(t.c.patient == patient)
        if values:
            ctx = replace(self.ctx, targets=f.param.targets)
            modifier = None if f.modifier == "not" else f.modifier
            clauses = [self.value_clause(f.param.type, f.values, i, modifier, ctx, t) for i in range(len(f.values))]
            conditions.append(or_(*clauses))
        return select(t.c.session, t.c.id).where(*conditions)

    def filter(self, r: Any, resource_type: str, f: Filter, patient: Any, probe: bool = False) -> ColumnElement[bool]:
        key = tuple_(r.c.session, r.c.id)

        def holds(values: bool = True) -> ColumnElement[bool]:
            if probe:
                return exists(self.index_rows(resource_type, f, patient, values, of=r))
            return key.in_(self.index_rows(resource_type, f, patient, values))

        if f.param.code == "_id":  # not in the index tables: the id is the row's own key
            found = self.values[id(f.values)]
            listed = self.bind(
                [unescape(v) for v in f.values],
                lambda run: [unescape(v) for v in found(run.request)],
                expanding=True,
            )
            ids = r.c.id.in_(listed)
            return not_(ids) if f.modifier == "not" else ids
        if f.param.code == "_lastUpdated":  # likewise: the row's own last_updated column
            if f.modifier == "missing":
                return false() if f.values == ["true"] else r.c.last_updated.is_not(None)
            return or_(
                *(self.value_clause(_LAST_UPDATED, f.values, i, None, self.ctx, r) for i in range(len(f.values)))
            )
        if f.chained is not None:
            return key.in_(self.chain(resource_type, f, patient))
        if f.modifier == "missing":
            present = holds(values=False)
            return not_(present) if f.values == ["true"] else present
        if f.modifier == "not":
            return not_(holds())
        return holds()

    def chain(self, resource_type: str, f: Filter, patient: Any) -> Select[Any]:
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
            _rows_of(ref, f.param),
            ref.c.session.in_(self.sessions[0]),
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
            _rows_of(ref, h.reference),
            ref.c.session.in_(self.sessions[0]),
            ref.c.target_type == resource_type,
            ref.c.url.is_(None),
            tuple_(ref.c.session, ref.c.id).in_(sources),
        )
        return r.c.id.in_(referenced)

    def compartment(self, r: Any, resource_type: str, patient_id: Any, probe: bool = False) -> ColumnElement[bool]:
        if resource_type == "Patient":
            return r.c.id == patient_id
        params = self.registry.compartment_stored.get(resource_type, ())
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
            ref.c.type == resource_type, ref.c.session.in_(self.sessions[0]), *conditions
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
                    .where(t.c.session == r.c.session, t.c.type == r.c.type, t.c.id == r.c.id, _rows_of(t, key.param))
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
        # only a well-formed Patient/id is a compartment's patient: "Patient/not an id!" is a URL reference
        reference = parse_reference(value)
        if reference.target_type == "Patient" and reference.url is None:
            return reference.target_id, f
        if "/" not in value and ":" not in value and (f.modifier == "Patient" or f.param.targets == ("Patient",)):
            return value, f
    return None, None


def execute_search(
    conn: Connection, registry: SearchParamRegistry, request: SearchRequest, session: str, ctx: SearchContext
) -> SearchResult:
    """Run ``request`` in ``session``: the page of matches, the total if asked, and the included resources."""
    patient, lead = patient_hint(request, registry)
    shape = _compiled(registry, request, session, patient, lead, ctx)
    run = _Run(request, session, patient, ctx)
    params = {name: value(run) for name, value in shape.params.items()}
    if request.summary == "count":
        return SearchResult(total=int(conn.execute(shape.count, params).scalar_one()), matches=[])
    page = {"limit": request.count + 1, "offset": request.offset}
    rows = conn.execute(shape.page, params | page).all()
    has_next = len(rows) > request.count
    total = None
    if shape.windowed and rows:
        total = int(rows[0].total)
    elif request.total != "none":
        # a last page tells the total by itself (most agent searches fit one page): count only when it cannot
        seen_all = not has_next and (rows or request.offset == 0)
        total = request.offset + len(rows) if seen_all else int(conn.execute(shape.count, params).scalar_one())
    matches = [Found(row.type, row.id, row.content) for row in rows[: request.count]]
    included = _includes(conn, registry, request.includes, matches, session) if request.includes else []
    return SearchResult(total=total, matches=matches, included=included, has_next=has_next)


@dataclass(frozen=True, slots=True)
class _Shape:
    """The queries of one search shape: the page (bound ``limit`` and ``offset``) and the count."""

    page: Select[Any]
    count: Select[Any]
    params: dict[str, Getter]
    windowed: bool


_SHAPES: dict[Hashable, _Shape] = {}
_MAX_SHAPES = 1024  # an agent mix has a few dozen; a client that varies its searches endlessly only recompiles


def _compiled(
    registry: SearchParamRegistry,
    request: SearchRequest,
    session: str,
    patient: str | None,
    lead: Filter | None,
    ctx: SearchContext,
) -> _Shape:
    key = (
        registry,
        request.resource_type,
        session == BASE_SESSION,
        patient is None,
        next((i for i, f in enumerate(request.filters) if f is lead), None),
        tuple(_filter_shape(registry, f, ctx) for f in request.filters),
        tuple((h.source_type, h.reference.code, _filter_shape(registry, h.inner, ctx)) for h in request.has),
        request.compartment_patient is None,
        tuple((sort.code, sort.descending) for sort in request.sort),
        request.summary == "count",
        request.total == "none",
    )
    shape = _SHAPES.get(key)
    if shape is None:
        if len(_SHAPES) >= _MAX_SHAPES:
            _SHAPES.clear()
        shape = _SHAPES[key] = _compile(registry, request, session, patient, lead, ctx)
    return shape


def _compile(
    registry: SearchParamRegistry,
    request: SearchRequest,
    session: str,
    patient: str | None,
    lead: Filter | None,
    ctx: SearchContext,
) -> _Shape:
    compiler = _Compiler(registry, session, ctx, _value_lists(request))
    patient_bind = compiler.bind(patient, lambda run: run.patient) if patient is not None else None
    r = compiler.aliases(resources)
    where = compiler.where(r, request.resource_type, request, patient_bind, lead)
    count = select(func.count()).select_from(r).where(where)
    # when a patient's search is narrowed by another filter the matches are few: the total rides along as a
    # window count in the one query. A broad search counts in a query of its own instead, because a window
    # would carry every match's content through the sort (a page query keeps only the top rows).
    windowed = request.total != "none" and patient is not None and len(request.filters) > 1
    columns = [r.c.type, r.c.id, r.c.content, *([func.count().over().label("total")] if windowed else [])]
    page = (
        select(*columns)
        .where(where)
        .order_by(*compiler.order_by(r, request))
        .limit(bindparam("limit"))
        .offset(bindparam("offset"))
    )
    return _Shape(page, count, compiler.params, windowed)


def _value_lists(request: SearchRequest) -> dict[int, Callable[[SearchRequest], list[str]]]:
    """Each list of values in ``request`` (by identity), and how to find the list in the same place of another
    request of its shape."""
    found: dict[int, Callable[[SearchRequest], list[str]]] = {}
    for i, f in enumerate(request.filters):
        found[id(f.values)] = partial(_filter_values, i)
        if f.chained is not None:
            found[id(f.chained.values)] = partial(_chained_values, i)
    for i, h in enumerate(request.has):
        found[id(h.inner.values)] = partial(_has_values, i)
    return found


def _filter_values(index: int, request: SearchRequest) -> list[str]:
    return request.filters[index].values


def _chained_values(index: int, request: SearchRequest) -> list[str]:
    chained = request.filters[index].chained
    assert chained is not None  # a request of the same shape
    return chained.values


def _has_values(index: int, request: SearchRequest) -> list[str]:
    return request.has[index].inner.values


def _filter_shape(registry: SearchParamRegistry, f: Filter, ctx: SearchContext) -> Hashable:
    """What of ``f`` decides the SQL of its condition (the branches of ``_Compiler.filter``)."""
    param = f.param
    head = (param.resource_type, param.code, f.modifier)
    if param.code == "_id":
        return head
    if f.chained is not None:
        chained = f.chained
        return (
            *head,
            tuple(
                (target, _filter_shape(registry, Filter(inner, chained.modifier, chained.values), ctx))
                for target in f.chain_types
                if (inner := registry.get(target, chained.param.code)) is not None
            ),
        )
    if f.modifier == "missing":
        return (*head, tuple(f.values))
    if param.code == "_lastUpdated":
        return (*head, tuple(_bound_values(_LAST_UPDATED, v, None, ctx)[0] for v in f.values))
    modifier = None if f.modifier == "not" else f.modifier
    context = replace(ctx, targets=param.targets)
    return (*head, tuple(_bound_values(param.type, v, modifier, context)[0] for v in f.values))


_LAST_UPDATED = "_lastUpdated"  # the kind of the resource row's own last_updated column, an instant


def _value_clause(kind: str, value: str, modifier: str | None, ctx: SearchContext, table: Any) -> Any:
    if kind == _LAST_UPDATED:
        return instant_clause(table.c.last_updated, value, ctx)
    return PARAM_TYPES[kind].clause(value, modifier, ctx, table)


def _binds(clause: Any) -> list[BindParameter[Any]]:
    """The bound parameters of ``clause``, in an order that is the same for every clause of its structure."""
    seen: dict[int, BindParameter[Any]] = {}
    for element in iterate(clause):
        if isinstance(element, BindParameter):
            seen.setdefault(id(element), element)
    return list(seen.values())


def _bound_values(kind: str, value: str, modifier: str | None, ctx: SearchContext) -> tuple[Hashable, tuple[Any, ...]]:
    """The structure of the condition one search value makes, and its bound values in ``_binds`` order."""
    if not value.startswith("ap"):  # only an ``ap`` date reads the clock: other values' conditions are reused
        ctx = replace(ctx, now_ms=None)
    return _bound_values_cached(kind, value, modifier, ctx)


@lru_cache(maxsize=4096)
def _bound_values_cached(
    kind: str, value: str, modifier: str | None, ctx: SearchContext
) -> tuple[Hashable, tuple[Any, ...]]:
    clause = _value_clause(kind, value, modifier, ctx, resources if kind == _LAST_UPDATED else PARAM_TYPES[kind].table)
    key = clause._generate_cache_key()
    assert key is not None  # every clause of the parameter types is cacheable
    return key.key, tuple(b.value for b in _binds(clause))


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
                param = registry.get(inc.source_type, inc.param)
                assert param is not None  # the parser checked it
                condition = and_(condition, _rows_of(ref, param))
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
