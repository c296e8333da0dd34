"""Copying a session on a real population: SQLite's statistics see the base session in nearly every row, so a
copy must name its index or scan the whole population for a few rows (a 900-episode run took 4 minutes)."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import SYNTHEA
from fhir_sandbox.fhir_server import Repository, make_engine, registry
from sqlalchemy import event


def test_copying_a_session_reads_only_its_rows_through_an_index(tmp_path: Path) -> None:
    engine = make_engine(tmp_path / "population.db")
    repository = Repository(engine, registry())
    bundle = json.loads(sorted(SYNTHEA.glob("*.json"))[0].read_text(encoding="utf-8"))
    repository.bulk_load([entry["resource"] for entry in bundle["entry"]])
    repository.analyze()  # the statistics a built population has
    template = repository.create_session()
    patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    with repository.unit(template.id) as unit:
        unit.update("Patient", patient["id"], patient | {"gender": "unknown"}, url=f"Patient/{patient['id']}")

    copies: list[tuple[str, tuple[object, ...]]] = []

    def record(_conn, _cursor, statement, parameters, _context, _many) -> None:  # type: ignore[no-untyped-def]
        if statement.startswith("INSERT INTO") and " SELECT " in statement:
            copies.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        copy = repository.create_session(copy_of=template.id)
    finally:
        event.remove(engine, "before_cursor_execute", record)

    assert len(copies) >= 3  # resources, history and the index tables
    with engine.connect() as conn:
        for statement, parameters in copies:
            plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
            details = [row[-1] for row in plan]
            assert not any(d.startswith("SCAN") for d in details), (statement, details)
    assert repository.read(copy.id, "Patient", patient["id"]).version == 2
