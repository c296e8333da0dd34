"""Bulk loading of trusted resources (a generated or already validated population): rows are prepared
(serialised and indexed) separately from being stored, so preparation can run in worker processes while one
writer stores; nothing is validated, versioned or logged."""

from __future__ import annotations

import gc
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any, TypeVar

from sqlalchemy import Connection, insert

from .. import jsonio
from ..search.indexer import Indexer
from .records import format_instant
from .schema import BASE_SESSION, INDEX_TABLES, resources

__all__ = [
    "PreparedRows",
    "collector_paused",
    "in_workers",
    "insert_many",
    "prepare_in_workers",
    "prepare_rows",
    "store_rows",
]

T = TypeVar("T")


@dataclass
class PreparedRows:
    """Rows ready to insert: one per resource, and the index rows by parameter kind. Picklable."""

    resources: list[dict[str, Any]] = field(default_factory=list)
    index: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.resources)


def prepare_rows(
    indexer: Indexer, items: list[dict[str, Any]], session: str = BASE_SESSION, moment: str | None = None
) -> PreparedRows:
    """Serialise and index ``items`` (each with an ``id``); sets meta.versionId and a normal lastUpdated."""
    moment = moment or format_instant(datetime.now(UTC))
    prepared = PreparedRows()
    with collector_paused():
        _prepare(indexer, items, session, moment, prepared)
    return prepared


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector: building many fresh containers with no cycles (a chart, a batch of
    index rows) otherwise makes it rescan them again and again (2-3x slower)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _prepare(indexer: Indexer, items: list[dict[str, Any]], session: str, moment: str, prepared: PreparedRows) -> None:
    for resource in items:
        meta = resource.setdefault("meta", {})
        version = int(meta.get("versionId", 1))
        meta["versionId"] = str(version)
        meta["lastUpdated"] = _normal_instant(meta.get("lastUpdated"), moment)
        prepared.resources.append(
            {
                "type": resource["resourceType"],
                "session": session,
                "id": resource["id"],
                "version": version,
                "last_updated": meta["lastUpdated"],
                "deleted": False,
                "content": jsonio.dumps(resource),
            }
        )
        for kind, rows in indexer.rows(session, resource).items():
            prepared.index.setdefault(kind, []).extend(rows)


_worker_indexer: Indexer | None = None  # one per worker process


def _prepare_in_worker(items: list[dict[str, Any]], session: str, moment: str) -> PreparedRows:
    global _worker_indexer
    if _worker_indexer is None:
        from ..searchparams import registry

        _worker_indexer = Indexer(registry())
    return prepare_rows(_worker_indexer, items, session, moment)


def prepare_in_workers(
    chunks: Iterable[list[dict[str, Any]]], session: str, moment: str, workers: int
) -> Iterator[PreparedRows]:
    """``prepare_rows`` of each chunk in ``workers`` processes, in order."""
    return in_workers(_prepare_in_worker, ((chunk, session, moment) for chunk in chunks), workers)


def in_workers(function: Callable[..., T], calls: Iterable[tuple[Any, ...]], workers: int) -> Iterator[T]:
    """``function(*arguments)`` for each of ``calls`` in ``workers`` processes, results in order, with at most
    workers + 1 calls in flight: a consumer that falls behind (one writer storing) must not make results pile
    up in memory."""
    with ProcessPoolExecutor(max_workers=workers) as pool:
        pending: deque[Future[T]] = deque()
        for arguments in calls:
            pending.append(pool.submit(function, *arguments))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def store_rows(conn: Connection, prepared: PreparedRows) -> None:
    """Insert prepared rows in ``conn``'s transaction."""
    if prepared.resources:
        insert_many(conn, resources, prepared.resources)
    for kind, rows in prepared.index.items():
        if rows:
            insert_many(conn, INDEX_TABLES[kind], rows)


def insert_many(conn: Connection, table: Any, rows: list[dict[str, Any]]) -> None:
    """INSERT many rows; on SQLite straight through the driver with tuples (SQLAlchemy's per-row parameter
    processing costs more than the insert itself on bulk loads)."""
    if conn.dialect.name != "sqlite":
        conn.execute(insert(table), rows)
        return
    columns = [c.name for c in table.columns if c.name in rows[0]]
    getter = itemgetter(*columns)
    statement = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    conn.exec_driver_sql(statement, [getter(row) for row in rows])


def _normal_instant(value: Any, default: str) -> str:
    """lastUpdated in the one stored format (UTC, milliseconds), so instants compare as text."""
    if not isinstance(value, str):
        return default
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return default
    return format_instant(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
