"""Copying and deleting a session on a real population: SQLite's statistics see the base session in nearly every
row, so a statement on one session's rows must reach them through an index or scan the whole population for a
few rows (a 900-episode run took 4 minutes)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import SYNTHEA
from fhir_sandbox.fhir_server import Repository, make_engine, registry
from fhir_sandbox.fhir_server.storage.schema import INDEX_TABLES
from sqlalchemy import Engine, event


@pytest.fixture
def population(tmp_path: Path) -> tuple[Repository, dict[str, Any]]:
    """A repository holding a Synthea patient, analysed as a built population is, and that patient."""
    repository = Repository(make_engine(tmp_path / "population.db"), registry())
    bundle = json.loads(sorted(SYNTHEA.glob("*.json"))[0].read_text(encoding="utf-8"))
    repository.bulk_load([entry["resource"] for entry in bundle["entry"]])
    repository.analyze()  # the statistics a built population has
    patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    return repository, patient


def _session_with_a_write(repository: Repository, patient: dict[str, Any]) -> str:
    session = repository.create_session().id
    with repository.unit(session) as unit:
        unit.update("Patient", patient["id"], patient | {"gender": "unknown"}, url=f"Patient/{patient['id']}")
    return session


@contextmanager
def _recorded(engine: Engine, kind: Callable[[str], bool]) -> Iterator[list[tuple[str, Any]]]:
    statements: list[tuple[str, Any]] = []

    def record(_conn, _cursor, statement, parameters, _context, _many) -> None:  # type: ignore[no-untyped-def]
        if kind(statement):
            statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


def _assert_no_scan(engine: Engine, statements: list[tuple[str, Any]]) -> None:
    with engine.connect() as conn:
        for statement, parameters in statements:
            plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
            details = [row[-1] for row in plan]
            assert not any(d.startswith("SCAN") for d in details), (statement, details)


def test_copying_a_session_reads_only_its_rows_through_an_index(population: tuple[Repository, Any]) -> None:
    repository, patient = population
    template = _session_with_a_write(repository, patient)

    with _recorded(repository.engine, lambda s: s.startswith("INSERT INTO") and " SELECT " in s) as copies:
        copy = repository.create_session(copy_of=template)

    assert len(copies) >= 3  # resources, history and the index tables
    _assert_no_scan(repository.engine, copies)
    assert repository.read(copy.id, "Patient", patient["id"]).version == 2


def test_deleting_sessions_finds_their_rows_through_an_index(population: tuple[Repository, Any]) -> None:
    repository, patient = population
    session = _session_with_a_write(repository, patient)
    with _recorded(repository.engine, lambda s: s.startswith("DELETE FROM")) as deletes:
        repository.delete_session(session)
    _session_with_a_write(repository, patient)
    with _recorded(repository.engine, lambda s: s.startswith("DELETE FROM")) as resets:
        assert repository.reset_sessions() == 1

    assert len(deletes) >= 3 and len(resets) >= 3
    _assert_no_scan(repository.engine, [s for s in deletes + resets if not s[0].startswith("DELETE FROM sessions")])
    assert repository.read("", "Patient", patient["id"]).version == 1  # the base is untouched


def test_a_file_from_before_the_partial_session_indexes_gets_them_when_opened(
    population: tuple[Repository, Any], tmp_path: Path
) -> None:
    repository, patient = population
    template = _session_with_a_write(repository, patient)
    with repository.engine.begin() as conn:  # the index tables as they were: the session led the resource key
        for table in INDEX_TABLES.values():
            conn.exec_driver_sql(f"DROP INDEX {table.name}_by_session")
            conn.exec_driver_sql(f"DROP INDEX {table.name}_by_resource")
            conn.exec_driver_sql(f"CREATE INDEX {table.name}_by_resource ON {table.name} (session, type, id, param)")
    repository.engine.dispose()

    reopened = Repository(make_engine(tmp_path / "population.db"), registry())
    with reopened.engine.connect() as conn:
        names = set(conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'index'").scalars())
    assert {f"{table.name}_by_session" for table in INDEX_TABLES.values()} <= names
    copy = reopened.create_session(copy_of=template)  # names the partial index: INDEXED BY
    assert reopened.read(copy.id, "Patient", patient["id"]).version == 2
    reopened.delete_session(copy.id)
