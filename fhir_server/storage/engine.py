"""Database engines: SQLite (embedded default, WAL, tuned for bulk reads) or any SQLAlchemy URL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect

from .schema import metadata

__all__ = ["finish_bulk", "make_engine"]


def make_engine(database: str | Path, *, bulk: bool = False) -> Engine:
    """An engine for a file path, ``:memory:`` or a SQLAlchemy URL; creates the schema if missing.

    ``bulk`` is for building a new file that is thrown away if the build fails: no journal, no syncs (a
    multi-gigabyte load would otherwise also write itself to the WAL). Call ``finish_bulk`` when done.
    """
    text = str(database)
    if "://" in text:
        engine = create_engine(text, pool_pre_ping=True)
    else:
        if text != ":memory:":
            Path(text).parent.mkdir(parents=True, exist_ok=True)
        url = "sqlite://" if text == ":memory:" else f"sqlite:///{text}"
        kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False}}
        if text == ":memory:":
            from sqlalchemy.pool import StaticPool

            kwargs["poolclass"] = StaticPool
        else:
            kwargs["pool_size"] = 8
            kwargs["max_overflow"] = 32
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _bulk_pragmas if bulk else _sqlite_pragmas)
    metadata.create_all(engine)
    _create_missing_indexes(engine)
    return engine


def _create_missing_indexes(engine: Engine) -> None:
    """Add the indexes a database made by an earlier version lacks (``create_all`` skips the tables it finds,
    with their indexes): a population imported before the index tables had partial session indexes gets them
    once, a scan of each table, instead of failing the statements that name them."""
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":  # one look at the schema table: the inspector's walk took 5 ms
            present = set(conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'index'").scalars())
        else:
            present = {index["name"] for found in inspect(conn).get_multi_indexes().values() for index in found}
        for table in metadata.sorted_tables:
            for index in table.indexes:
                if index.name not in present:
                    index.create(conn)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA cache_size=-16384")  # 16 MiB per connection: the OS page cache (mmap) is shared
    cursor.execute("PRAGMA mmap_size=4294967296")
    cursor.execute("PRAGMA temp_store=MEMORY")
    cursor.close()


def _bulk_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=OFF")
    cursor.execute("PRAGMA synchronous=OFF")
    cursor.execute("PRAGMA cache_size=-262144")  # 256 MiB: index creation sorts in it
    cursor.execute("PRAGMA temp_store=FILE")
    cursor.close()


def finish_bulk(engine: Engine) -> None:
    """Leave a bulk-built file in WAL mode (it persists in the file) for the servers that will read it."""
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA journal_mode=WAL")
