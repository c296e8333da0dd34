"""Bulk loading: the parallel path stores exactly what the single-process path stores."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import SYNTHEA
from fhir_sandbox.fhir_server import Repository, make_engine, registry
from fhir_sandbox.fhir_server.storage.schema import INDEX_TABLES, resources
from sqlalchemy import func, select


def _resources() -> list[dict]:  # type: ignore[type-arg]
    bundle = json.loads(sorted(SYNTHEA.glob("*.json"))[0].read_text(encoding="utf-8"))
    return [entry["resource"] for entry in bundle["entry"]]


def _snapshot(database: Path) -> dict[str, list[tuple]]:  # type: ignore[type-arg]
    engine = make_engine(database)
    out = {}
    with engine.connect() as conn:
        out["resources"] = sorted(conn.execute(select(resources.c.type, resources.c.id, resources.c.content)).all())
        for kind, table in INDEX_TABLES.items():
            columns = [c for c in table.c if c.name != "session"]
            out[kind] = sorted(conn.execute(select(*columns)).all(), key=repr)
    engine.dispose()
    return out


def test_workers_store_the_same_rows(tmp_path: Path) -> None:
    counts = []
    for workers in (1, 2):
        engine = make_engine(tmp_path / f"w{workers}.db")
        items = _resources()
        for item in items:  # a fixed lastUpdated, so that the two loads can be compared byte for byte
            item["meta"] = {"lastUpdated": "2023-11-13T10:15:00.000+00:00"}
        counts.append(Repository(engine, registry()).bulk_load(items, batch=50, workers=workers))
        engine.dispose()
    assert counts[0] == counts[1] == len(_resources())
    single, parallel = _snapshot(tmp_path / "w1.db"), _snapshot(tmp_path / "w2.db")
    assert single == parallel
    assert len(single["token"]) > len(single["resources"])  # it really indexed
    with make_engine(tmp_path / "w2.db").connect() as conn:
        assert conn.execute(select(func.count()).select_from(resources)).scalar_one() == counts[1]
