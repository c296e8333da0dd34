"""The repository: every R4 interaction on stored resources, in a session (R4 http.html).

Sessions are copy-on-write overlays on an immutable base population: a write in a session adds rows with that
session's id; a read sees the session's row if it has one, else the base row. Creating a session inserts one
row; deleting one deletes only its own rows. Writes go through a ``Unit`` (one database transaction) so that a
transaction Bundle is all-or-nothing; single interactions are a unit of one.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, delete, insert, literal, select, text, update
from sqlalchemy.exc import IntegrityError

from .. import jsonio
from ..errors import BadRequest, Conflict, Gone, InvalidResource, MethodNotAllowed, NotFound, PreconditionFailed
from ..search.execute import SearchResult, execute_search
from ..search.indexer import Indexer
from ..search.request import SearchRequest
from ..search.types import SearchContext
from ..searchparams import SearchParamRegistry
from ..validation import validate_resource
from .bulk import PreparedRows, insert_many, prepare_in_workers, prepare_rows, store_rows
from .records import SessionInfo, Stored, WriteLogEntry, format_instant
from .schema import BASE_SESSION, INDEX_TABLES, OWN_ROWS, history, resources, sessions, write_log

__all__ = ["BASE_SESSION", "DEFAULT_SESSION", "Repository", "Unit"]

DEFAULT_SESSION = "default"
_ID_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-.")


def _valid_id(value: str) -> bool:
    return 1 <= len(value) <= 64 and set(value) <= _ID_CHARS


class Repository:
    """All stored state: sessions, resources, versions, indexes, write logs."""

    def __init__(self, engine: Engine, registry: SearchParamRegistry):
        self.engine = engine
        self.registry = registry
        self.indexer = Indexer(registry)
        # SQLite allows one writer: serialise write units here rather than spin on SQLITE_BUSY
        self._write_lock = threading.RLock()
        # the base population is a session too, for loaders; it has no row and cannot be created or deleted
        self._sessions: dict[str, SessionInfo] = {BASE_SESSION: SessionInfo(BASE_SESSION, None, datetime.now(UTC))}
        try:
            with self.engine.begin() as conn:
                if self._load_session(conn, DEFAULT_SESSION) is None:
                    self._insert_session(conn, SessionInfo(DEFAULT_SESSION, None, datetime.now(UTC), "shared default"))
        except IntegrityError:  # another server process on the same file, starting at the same time, made it
            self._sessions.pop(DEFAULT_SESSION, None)

    # -- sessions -------------------------------------------------------------------------------------------

    def create_session(
        self,
        session_id: str | None = None,
        now: datetime | None = None,
        label: str | None = None,
        copy_of: str | None = None,
    ) -> SessionInfo:
        """Create an empty overlay (one row whatever the population's size), or with ``copy_of``, one that starts
        with a copy of that session's resources, versions and index rows (not its write log): the trials of a
        scenario start from one prepared session instead of each writing the same setup."""
        session_id = session_id or uuid.uuid4().hex
        if not _valid_id(session_id):
            raise BadRequest(f"session id {session_id!r} must be 1-64 letters, digits, '-' or '.'")
        if now is not None and now.tzinfo is None:
            raise BadRequest("a session's now must carry a time zone offset")
        if copy_of in (BASE_SESSION, DEFAULT_SESSION):
            raise BadRequest("copy_of names a session created through /sessions, not the shared default")
        info = SessionInfo(session_id, now, datetime.now(UTC), label)
        with self._write_lock, self.engine.begin() as conn:
            if copy_of is not None and self._load_session(conn, copy_of) is None:
                raise NotFound(f"no session {copy_of!r} to copy")
            if self._load_session(conn, session_id) is not None:
                raise Conflict(f"session {session_id!r} already exists")
            self._insert_session(conn, info)
            if copy_of is not None:
                _copy_rows(conn, copy_of, session_id)
        return info

    def delete_session(self, session_id: str) -> None:
        """Delete a session and only its own rows."""
        if session_id in (DEFAULT_SESSION, BASE_SESSION):
            raise MethodNotAllowed(f"the {'default session' if session_id else 'base population'} cannot be deleted")
        self.session(session_id)
        with self._write_lock, self.engine.begin() as conn:
            # plain statements: SQLAlchemy's per-statement overhead was most of a small session's delete time
            for table in (resources, history, write_log, *INDEX_TABLES.values()):
                conn.exec_driver_sql(
                    f"DELETE FROM {table.name} WHERE session = {_param(conn)} AND {OWN_ROWS}", (session_id,)
                )
            conn.execute(delete(sessions).where(sessions.c.id == session_id))
        self._sessions.pop(session_id, None)

    def reset_sessions(self) -> int:
        """Delete every session's rows (what earlier runs left) and start a fresh default session; the base
        population is untouched. Costs time in proportion to those sessions' writes. Returns how many went."""
        with self._write_lock, self.engine.begin() as conn:
            gone = len(conn.execute(select(sessions.c.id).where(sessions.c.id != DEFAULT_SESSION)).all())
            for table in (resources, history, write_log, *INDEX_TABLES.values()):
                conn.execute(delete(table).where(text(OWN_ROWS)))  # the words of the partial session indexes
            conn.execute(delete(sessions))
            self._sessions = {BASE_SESSION: self._sessions[BASE_SESSION]}
            self._insert_session(conn, SessionInfo(DEFAULT_SESSION, None, datetime.now(UTC), "shared default"))
        return gone

    def session(self, session_id: str) -> SessionInfo:
        """The session ``session_id``. Raises NotFound."""
        info = self._sessions.get(session_id)
        if info is None:
            with self.engine.connect() as conn:
                info = self._load_session(conn, session_id)
            if info is None:
                raise NotFound(f"no session {session_id!r}")
            self._sessions[session_id] = info
        return info

    def list_sessions(self) -> list[SessionInfo]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(sessions).order_by(sessions.c.created)).all()
        return [_session_from_row(row) for row in rows]

    def _load_session(self, conn: Connection, session_id: str) -> SessionInfo | None:
        row = conn.execute(_SESSION, {"session_id": session_id}).first()
        return _session_from_row(row) if row else None

    def _insert_session(self, conn: Connection, info: SessionInfo) -> None:
        conn.execute(
            _INSERT_SESSION,
            {
                "id": info.id,
                "now": info.now.isoformat() if info.now else None,
                "created": info.created.isoformat(),
                "label": info.label,
            },
        )
        self._sessions[info.id] = info

    # -- reads ----------------------------------------------------------------------------------------------

    def read(self, session: str, resource_type: str, resource_id: str) -> Stored:
        """read (http.html#read): the current version. Raises NotFound, or Gone if deleted."""
        with self.engine.connect() as conn:
            return _read(conn, session, resource_type, resource_id)

    def vread(self, session: str, resource_type: str, resource_id: str, version: int) -> Stored:
        """vread (http.html#vread). Raises NotFound, or Gone if that version is a delete."""
        for stored in self.history(session, resource_type, resource_id):
            if stored.version == version:
                if stored.deleted:
                    raise Gone(f"{resource_type}/{resource_id} version {version} is a deletion")
                return stored
        raise NotFound(f"{resource_type}/{resource_id} has no version {version}")

    def history(
        self,
        session: str,
        resource_type: str | None = None,
        resource_id: str | None = None,
        since: str | None = None,
        limit: int = 1000,
    ) -> list[Stored]:
        """history (http.html#history): instance, type or system; newest first, deletes included."""
        sids = [BASE_SESSION] if session == BASE_SESSION else [BASE_SESSION, session]
        out: dict[tuple[str, str, int], Stored] = {}
        with self.engine.connect() as conn:
            for table in (resources, history):
                query = select(table).where(table.c.session.in_(sids))
                if resource_type is not None:
                    query = query.where(table.c.type == resource_type)
                if resource_id is not None:
                    query = query.where(table.c.id == resource_id)
                if since is not None:
                    query = query.where(table.c.last_updated >= since)
                if resource_id is None:
                    query = query.order_by(table.c.last_updated.desc()).limit(limit)
                for row in conn.execute(query):
                    out[(row.type, row.id, row.version)] = _stored(row)
        if resource_id is not None and not out:
            if since is not None:  # no version since ``since`` is an empty history, unless it never existed
                self.history(session, resource_type, resource_id)
                return []
            raise NotFound(f"{resource_type}/{resource_id} is not known")
        ordered = sorted(out.values(), key=lambda s: (s.last_updated, s.version), reverse=True)
        return ordered[:limit]

    def search(self, session: str, request: SearchRequest, ctx: SearchContext) -> SearchResult:
        with self.engine.connect() as conn:
            return execute_search(conn, self.registry, request, session, ctx)

    def write_log(self, session: str) -> list[WriteLogEntry]:
        """Every create, update and delete in ``session``, in order, with its request."""
        self.session(session)
        with self.engine.connect() as conn:
            rows = conn.execute(_WRITE_LOG, {"session": session})
            return [
                WriteLogEntry(
                    row.seq,
                    row.at,
                    row.method,
                    row.url,
                    row.type,
                    row.id,
                    row.version,
                    row.status,
                    jsonio.loads_stored(row.request) if row.request else None,
                )
                for row in rows
            ]

    # -- writes ---------------------------------------------------------------------------------------------

    @contextmanager
    def unit(self, session: str, base_url: str | None = None) -> Iterator[Unit]:
        """A write transaction in ``session``: everything in it is stored, or nothing is. ``base_url`` is the
        FHIR base the writes came to (references to it are indexed as local)."""
        info = self.session(session)
        with self._write_lock, self.engine.begin() as conn:
            yield Unit(self, conn, info, base_url)

    def bulk_load(
        self, items: Iterable[dict[str, Any]], session: str = BASE_SESSION, batch: int = 2000, workers: int = 1
    ) -> int:
        """Load trusted resources (ids set, already valid) fast: no validation, no history, no write log.

        With ``workers`` > 1, serialising and indexing run in that many processes while this one stores.
        """
        moment = format_instant(datetime.now(UTC))
        chunks = _chunks(iter(items), batch)
        if workers > 1:
            return self.store_prepared(prepare_in_workers(chunks, session, moment, workers))
        return self.store_prepared(prepare_rows(self.indexer, chunk, session, moment) for chunk in chunks)

    def store_prepared(self, batches: Iterable[PreparedRows]) -> int:
        """Store rows prepared by ``prepare_rows`` (possibly in other processes), all in one transaction."""
        count = 0
        with self._write_lock, self.engine.begin() as conn:
            for prepared in batches:
                store_rows(conn, prepared)
                count += len(prepared)
        return count

    def analyze(self) -> None:
        """Refresh the planner's statistics (after a bulk load)."""
        with self.engine.begin() as conn:
            conn.execute(text("ANALYZE"))


def _copy_rows(conn: Connection, source: str, target: str) -> None:
    """Copy ``source``'s own rows (resources, versions, index rows) to the session ``target``."""
    mark = _param(conn)
    for table in (resources, history, *INDEX_TABLES.values()):
        names = [column.name for column in table.columns]
        selected = ", ".join(mark if name == "session" else name for name in names)
        conn.exec_driver_sql(
            f"INSERT INTO {table.name} ({', '.join(names)}) SELECT {selected} FROM {table.name}"
            f"{_by_session_hint(conn, table)} WHERE session = {mark} AND {OWN_ROWS}",
            (target, source),
        )


def _by_session_hint(conn: Connection, table: Any) -> str:
    """SQLite's planner, whose statistics see one session (the base) in every row, would scan the whole table
    for one session's rows: name the index that leads with the session."""
    if conn.dialect.name != "sqlite":
        return ""
    index = next(i for i in table.indexes if next(iter(i.columns)).name == "session")
    return f" INDEXED BY {index.name}"


def _param(conn: Connection) -> str:
    """The driver's placeholder for a positional parameter (``?`` for SQLite, ``%s`` for psycopg)."""
    return "?" if conn.dialect.paramstyle == "qmark" else "%s"


def _chunks(items: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    while chunk := list(islice(items, size)):
        yield chunk


class Unit:
    """Writes in one database transaction, in one session. Reads through it see its own writes."""

    def __init__(self, repository: Repository, conn: Connection, info: SessionInfo, base_url: str | None = None):
        self.repository = repository
        self.conn = conn
        self.session = info.id
        self.info = info
        self.base_url = base_url

    def read(self, resource_type: str, resource_id: str) -> Stored:
        return _read(self.conn, self.session, resource_type, resource_id)

    def search(self, request: SearchRequest, ctx: SearchContext) -> SearchResult:
        return execute_search(self.conn, self.repository.registry, request, self.session, ctx)

    def create(self, resource: dict[str, Any], *, url: str, request: Any = None, validate: bool = True) -> Stored:
        """create (http.html#create): a server-assigned id, version 1."""
        resource_id = uuid.uuid4().hex if self.session == DEFAULT_SESSION else str(uuid.uuid4())
        return self._write(resource["resourceType"], resource_id, resource, "POST", url, request, validate, 201)

    def create_with_id(self, resource: dict[str, Any], resource_id: str, *, url: str, request: Any = None) -> Stored:
        """A create whose id was assigned earlier (transactions assign ids before resolving references)."""
        return self._write(resource["resourceType"], resource_id, resource, "POST", url, request, True, 201)

    def update(
        self,
        resource_type: str,
        resource_id: str,
        resource: dict[str, Any],
        *,
        url: str,
        if_match: str | None = None,
        request: Any = None,
        method: str = "PUT",
    ) -> tuple[Stored, bool]:
        """update (http.html#update), creating when the id is new. Returns (stored, created)."""
        if not _valid_id(resource_id):
            raise BadRequest(f"{resource_id!r} is not a valid FHIR id")
        if resource.get("resourceType") != resource_type:
            raise BadRequest(f"the body is a {resource.get('resourceType')}, the URL names {resource_type}")
        if resource.get("id") != resource_id:
            raise BadRequest(
                f"the body's id {resource.get('id')!r} does not match the URL's id {resource_id!r}",
                expression=[f"{resource_type}.id"],
            )
        current = _current(self.conn, self.session, resource_type, resource_id)
        if if_match is not None:
            expected = if_match.removeprefix("W/").strip('"')
            if current is None or current.deleted or str(current.version) != expected:
                have = "no current version" if current is None or current.deleted else f'version "{current.version}"'
                raise PreconditionFailed(
                    f"If-Match {if_match} does not match: {resource_type}/{resource_id} has {have}"
                )
        created = current is None or current.deleted
        stored = self._write(resource_type, resource_id, resource, method, url, request, True, 201 if created else 200)
        return stored, created

    def delete(self, resource_type: str, resource_id: str, *, url: str) -> Stored | None:
        """delete (http.html#delete): later reads give 410. Deleting what is absent or deleted succeeds."""
        current = _current(self.conn, self.session, resource_type, resource_id)
        if current is None or current.deleted:
            return None
        return self._write(resource_type, resource_id, None, "DELETE", url, None, False, 200)

    def _write(
        self,
        resource_type: str,
        resource_id: str,
        resource: dict[str, Any] | None,
        method: str,
        url: str,
        request: Any,
        validate: bool,
        status: int,
    ) -> Stored:
        current = _current(self.conn, self.session, resource_type, resource_id)
        if method == "POST" and current is not None:
            raise Conflict(f"{resource_type}/{resource_id} already exists")
        version = current.version + 1 if current else 1
        moment = format_instant(self.info.clock())
        content = None
        if resource is not None:
            meta = resource.get("meta") or {}
            if not isinstance(meta, dict):  # meta is rebuilt here, so validation below would never see it
                raise InvalidResource(
                    f"{resource_type} is not valid R4: {resource_type}.meta must be an object, not {meta!r}",
                    expression=[f"{resource_type}.meta"],
                )
            meta = dict(meta)
            meta.pop("versionId", None)
            meta.pop("lastUpdated", None)
            rest = {k: v for k, v in resource.items() if k not in ("resourceType", "id", "meta")}
            resource = {
                "resourceType": resource_type,
                "id": resource_id,
                "meta": {"versionId": str(version), "lastUpdated": moment, **meta},
                **rest,
            }
            if validate:
                validate_resource(resource)
            content = jsonio.dumps(resource)
        row = {
            "type": resource_type,
            "session": self.session,
            "id": resource_id,
            "version": version,
            "last_updated": moment,
            "deleted": resource is None,
            "content": content,
        }
        conn = self.conn
        if current is not None and current.session == self.session:
            replaced = {
                "type": resource_type,
                "session": self.session,
                "id": resource_id,
                "version": current.version,
                "last_updated": current.last_updated,
                "deleted": current.deleted,
                "method": current.method,
                "content": current.content,
            }
            conn.execute(_INSERT_HISTORY, replaced)
            key = {"key_type": resource_type, "key_session": self.session, "key_id": resource_id}
            conn.execute(_UPDATE_RESOURCE, row | key)
            for statement in _DELETE_INDEX_ROWS:
                conn.execute(statement, key)
        else:
            conn.execute(_INSERT_RESOURCE, row)
        if resource is not None:
            for kind, rows in self.repository.indexer.rows(self.session, resource, self.base_url).items():
                insert_many(conn, INDEX_TABLES[kind], rows)
        if self.session == BASE_SESSION:  # loading the population is not an episode's write
            return Stored(resource_type, resource_id, version, moment, resource is None, content, method)
        logged = {
            "session": self.session,
            "at": moment,
            "method": method,
            "url": url,
            "type": resource_type,
            "id": resource_id,
            "version": version,
            "status": status,
            "request": jsonio.dumps(request) if request is not None else None,
        }
        conn.execute(_INSERT_WRITE_LOG, logged)
        return Stored(resource_type, resource_id, version, moment, resource is None, content, method)


# Statements built once: SQLAlchemy caches their compiled SQL, while building a statement per call cost more than
# running it (a read's lookup of the current version, each write's inserts)
_SESSION = select(sessions).where(sessions.c.id == bindparam("session_id"))
_INSERT_SESSION = insert(sessions)
_WRITE_LOG = select(write_log).where(write_log.c.session == bindparam("session")).order_by(write_log.c.seq)
_CURRENT = select(resources).where(
    resources.c.type == bindparam("type"),
    resources.c.id == bindparam("id"),
    resources.c.session.in_([literal(BASE_SESSION), bindparam("session")]),
)
_INSERT_RESOURCE = insert(resources)
_INSERT_HISTORY = insert(history)
_INSERT_WRITE_LOG = insert(write_log)
_UPDATE_RESOURCE = update(resources).where(
    resources.c.type == bindparam("key_type"),
    resources.c.session == bindparam("key_session"),
    resources.c.id == bindparam("key_id"),
)
_DELETE_INDEX_ROWS = [
    delete(table).where(
        table.c.session == bindparam("key_session"),
        table.c.type == bindparam("key_type"),
        table.c.id == bindparam("key_id"),
    )
    for table in INDEX_TABLES.values()
]


class _Current:
    __slots__ = ("content", "deleted", "last_updated", "method", "session", "version")

    def __init__(self, row: Any):
        self.session: str = row.session
        self.version: int = row.version
        self.deleted: bool = row.deleted
        self.last_updated: str = row.last_updated
        self.content: bytes | None = row.content
        self.method: str = "DELETE" if row.deleted else ("POST" if row.version == 1 else "PUT")


def _current(conn: Connection, session: str, resource_type: str, resource_id: str) -> _Current | None:
    rows = conn.execute(_CURRENT, {"type": resource_type, "id": resource_id, "session": session}).all()
    if not rows:
        return None
    own = [r for r in rows if r.session == session]
    return _Current(own[0] if own else rows[0])


def _read(conn: Connection, session: str, resource_type: str, resource_id: str) -> Stored:
    current = _current(conn, session, resource_type, resource_id)
    if current is None:
        raise NotFound(f"{resource_type}/{resource_id} is not known")
    if current.deleted:
        raise Gone(f"{resource_type}/{resource_id} was deleted (version {current.version})")
    return Stored(resource_type, resource_id, current.version, current.last_updated, False, current.content)


def _stored(row: Any) -> Stored:
    method = getattr(row, "method", None) or ("DELETE" if row.deleted else ("POST" if row.version == 1 else "PUT"))
    return Stored(row.type, row.id, row.version, row.last_updated, row.deleted, row.content, method)


def _session_from_row(row: Any) -> SessionInfo:
    return SessionInfo(
        id=row.id,
        now=datetime.fromisoformat(row.now) if row.now else None,
        created=datetime.fromisoformat(row.created),
        label=row.label,
    )
