"""Bulk loading of trusted resources (a generated or already validated population): rows are prepared
(serialised and indexed) separately from being stored, so preparation can run in worker processes while one
writer stores; nothing is validated, versioned or logged.

For the largest loads a worker also stores its rows, in a shard: a SQLite file of the data tables alone, which
the writer appends to its database with one statement per table (SQLite copies the records without decoding
them), so no row crosses between processes as a Python object."""

from __future__ import annotations

import gc
import sqlite3
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Table, insert
from sqlalchemy.dialects import sqlite
from sqlalchemy.schema import CreateTable

from .. import jsonio
from ..search.indexer import Indexer
from ..search.types import IndexRow
from .records import format_instant
from .schema import BASE_SESSION, INDEX_TABLES, resources

__all__ = [
    "PreparedRows",
    "append_shard",
    "collector_paused",
    "in_workers",
    "insert_many",
    "prepare_in_workers",
    "prepare_rows",
    "store_rows",
    "write_shard",
]

T = TypeVar("T")


@dataclass
class PreparedRows:
    """Rows ready to insert, as tuples in their table's column order: one per resource, and the index rows by
    parameter kind. Picklable."""

    resources: list[tuple[Any, ...]] = field(default_factory=list)
    index: dict[str, list[IndexRow]] = field(default_factory=dict)

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
        prepared.resources.append(  # the columns of ``resources``
            (
                resource["resourceType"],
                session,
                resource["id"],
                version,
                meta["lastUpdated"],
                False,
                jsonio.dumps(resource),
            )
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


def in_workers(
    function: Callable[..., T], calls: Iterable[tuple[Any, ...]], workers: int, window: int | None = None
) -> Iterator[T]:
    """``function(*arguments)`` for each of ``calls`` in ``workers`` processes, results in order, with at most
    ``window`` (by default workers + 1) calls in flight: a consumer that falls behind (one writer storing) must
    not make results pile up in memory. A wider window keeps workers busy past a slow call, for small results."""
    window = window or workers + 1
    with ProcessPoolExecutor(max_workers=workers) as pool:
        pending: deque[Future[T]] = deque()
        try:
            for arguments in calls:
                pending.append(pool.submit(function, *arguments))
                if len(pending) >= window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:  # stopped early (an error, an interrupt): calls not started yet are not waited for
            for future in pending:
                future.cancel()


def store_rows(conn: Connection, prepared: PreparedRows) -> None:
    """Insert prepared rows in ``conn``'s transaction."""
    insert_many(conn, resources, prepared.resources)
    for kind, rows in prepared.index.items():
        insert_many(conn, INDEX_TABLES[kind], rows)


def insert_many(conn: Connection, table: Table, rows: list[tuple[Any, ...]]) -> None:
    """INSERT many rows, each a tuple of all of ``table``'s columns in order; on SQLite straight through the
    driver (SQLAlchemy's per-row parameter processing costs more than the insert itself on bulk loads)."""
    if not rows:
        return
    names = [c.name for c in table.columns]
    if conn.dialect.name != "sqlite":
        conn.execute(insert(table), [dict(zip(names, row, strict=True)) for row in rows])
        return
    conn.exec_driver_sql(f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})", rows)


def _normal_instant(value: Any, default: str) -> str:
    """lastUpdated in the one stored format (UTC, milliseconds), so instants compare as text."""
    if not isinstance(value, str):
        return default
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return default
    return format_instant(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


_SHARD_TABLES = (resources, *INDEX_TABLES.values())


def write_shard(path: Path, prepared: PreparedRows) -> None:
    """Store ``prepared`` in a new SQLite file at ``path`` holding the data tables without their secondary
    indexes; ``append_shard`` adds it to a database."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=OFF")  # a scratch file: no journal, no syncs
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("BEGIN")
        for table in _SHARD_TABLES:  # the same DDL as the database's, so SQLite can copy records as they are
            conn.execute(str(CreateTable(table).compile(dialect=sqlite.dialect())))
        _insert_tuples(conn, resources, prepared.resources)
        for kind, rows in prepared.index.items():
            _insert_tuples(conn, INDEX_TABLES[kind], rows)
        conn.execute("COMMIT")
    finally:
        conn.close()


def append_shard(conn: sqlite3.Connection, path: Path, schemas: Mapping[str, str] | None = None) -> None:
    """Append the rows of the shard at ``path`` to the same tables of ``conn``'s database (or of the attached
    database ``schemas`` names for a table), which must have no secondary indexes yet (else SQLite decodes and
    re-encodes every record), in one transaction."""
    conn.execute("ATTACH DATABASE ? AS shard", (str(path),))
    try:
        conn.execute("BEGIN")
        for table in _SHARD_TABLES:
            schema = (schemas or {}).get(table.name, "main")
            conn.execute(f"INSERT INTO {schema}.{table.name} SELECT * FROM shard.{table.name}")
        conn.execute("COMMIT")
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.execute("DETACH DATABASE shard")


_ROWS_PER_INSERT = 100  # many rows to one INSERT statement: half the driver's cost per row of executemany

# sqlite3 binds None only after looking for an adapter (two failed attribute lookups), a quarter of the cost of
# storing an index row, most of whose columns are NULL; registering one that returns None (an empty dict's get,
# a C function) binds the same NULL without the search
_NONE: dict[None, None] = {}
sqlite3.register_adapter(type(None), _NONE.get)


def _insert_tuples(conn: sqlite3.Connection, table: Table, rows: list[tuple[Any, ...]]) -> None:
    width = len(table.columns)
    row = f"({', '.join('?' * width)})"
    values = list(chain.from_iterable(rows))
    for start in range(0, len(rows), _ROWS_PER_INSERT):
        count = min(_ROWS_PER_INSERT, len(rows) - start)
        statement = f"INSERT INTO {table.name} VALUES {', '.join([row] * count)}"  # the driver caches it
        conn.execute(statement, values[start * width : (start + count) * width])
