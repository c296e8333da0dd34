"""The database schema (SQLAlchemy Core), shared by SQLite and PostgreSQL.

Every row carries a ``session``: the immutable population is the session ``BASE_SESSION``; an episode's writes
live in rows of its own session id and shadow the base rows of the same resource. Index rows carry the patient
whose compartment the resource is in, so that the agents' patient-scoped searches use a small index range.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    text,
)

__all__ = ["BASE_SESSION", "INDEX_TABLES", "OWN_ROWS", "history", "metadata", "resources", "sessions", "write_log"]

BASE_SESSION = ""

# the rows of the sessions other than the base, in SQL: the condition of the index tables' partial session
# indexes, which a statement can use only when its WHERE says this too, in these words (a bound value will not do)
OWN_ROWS = "session > ''"

metadata = MetaData()

sessions = Table(
    "sessions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("now", String(40), nullable=True),
    Column("created", String(40), nullable=False),
    Column("label", Text, nullable=True),
)

# The current version of each resource, per session. Deleted resources keep a row (deleted=True, no content).
# A rowid table with a unique key index: rows hold ~1 KB of JSON, too large for a WITHOUT ROWID b-tree.
resources = Table(
    "resources",
    metadata,
    Column("type", String(64), nullable=False),
    Column("session", String(64), nullable=False),
    Column("id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("last_updated", String(40), nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("content", LargeBinary, nullable=True),
)
Index("resources_key", resources.c.type, resources.c.session, resources.c.id, unique=True)
Index("resources_by_session", resources.c.session, resources.c.type, resources.c.last_updated)

# Superseded versions (the current one is in ``resources``).
history = Table(
    "history",
    metadata,
    Column("type", String(64), primary_key=True),
    Column("session", String(64), primary_key=True),
    Column("id", String(64), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("last_updated", String(40), nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("method", String(8), nullable=False),
    Column("content", LargeBinary, nullable=True),
    sqlite_with_rowid=False,
)

Index("history_by_session", history.c.session)

write_log = Table(
    "write_log",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("session", String(64), nullable=False, index=True),
    Column("at", String(40), nullable=False),
    Column("method", String(8), nullable=False),
    Column("url", Text, nullable=False),
    Column("type", String(64), nullable=False),
    Column("id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("status", Integer, nullable=False),
    Column("request", LargeBinary, nullable=True),
)


def _index_table(name: str, *value_columns: Column, patient_key: str | None = None) -> Table:  # type: ignore[type-arg]
    table = Table(
        name,
        metadata,
        Column("session", String(64), nullable=False),
        Column("type", String(64), nullable=False),
        Column("id", String(64), nullable=False),
        Column("param", String(64), nullable=False),
        Column("patient", String(64), nullable=True),
        *value_columns,
    )
    first_value = value_columns[0].name
    # a resource's rows, led by its id: a key whose first column tells rows apart sorts in half the time of one
    # led by the session, which is the same (the base) in nearly every row
    Index(f"{name}_by_resource", table.c.id, table.c.type, table.c.session, table.c.param)
    Index(f"{name}_by_value", table.c.type, table.c.param, table.c[first_value], table.c.session)
    Index(f"{name}_by_patient", table.c.patient, table.c.type, table.c.param, table.c[patient_key or first_value])
    # an episode's own rows, to delete or copy its session: partial, so the base population adds nothing to it
    Index(f"{name}_by_session", table.c.session, sqlite_where=text(OWN_ROWS), postgresql_where=text(OWN_ROWS))
    return table


idx_token = _index_table(
    "idx_token",
    Column("code", Text, nullable=True),
    Column("system", Text, nullable=True),
    Column("text", Text, nullable=True),
)
idx_string = _index_table("idx_string", Column("norm", Text, nullable=False), Column("exact", Text, nullable=False))
# a patient's dates are indexed by their end: agents ask for recent windows (ge/gt), and "latest" sorts by it
idx_date = _index_table(
    "idx_date",
    Column("low", BigInteger, nullable=False),
    Column("high", BigInteger, nullable=False),
    patient_key="high",
)
idx_number = _index_table("idx_number", Column("value", Float, nullable=False))
idx_quantity = _index_table(
    "idx_quantity",
    Column("value", Float, nullable=False),
    Column("system", Text, nullable=True),
    Column("code", Text, nullable=True),
    Column("unit", Text, nullable=True),
)
idx_reference = _index_table(
    "idx_reference",
    Column("target_id", String(64), nullable=True),
    Column("target_type", String(64), nullable=True),
    Column("url", Text, nullable=True),
    Column("ident_system", Text, nullable=True),
    Column("ident_value", Text, nullable=True),
)
idx_uri = _index_table("idx_uri", Column("value", Text, nullable=False))

INDEX_TABLES: dict[str, Table] = {
    "token": idx_token,
    "string": idx_string,
    "date": idx_date,
    "number": idx_number,
    "quantity": idx_quantity,
    "reference": idx_reference,
    "uri": idx_uri,
}
