"""A search is compiled once per shape and later searches of that shape fill in their own values: each must get
exactly the results a search compiled for it alone would get."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fhir_sandbox.fhir_server import Repository, make_engine, registry
from fhir_sandbox.fhir_server.search import execute
from fhir_sandbox.fhir_server.search.execute import execute_search, patient_hint
from fhir_sandbox.fhir_server.search.parse import parse_search
from fhir_sandbox.fhir_server.search.types import SearchContext
from fhir_sandbox.fhir_server.storage.bulk import prepare_rows
from sqlalchemy import Engine

REGISTRY = registry()
LOINC = "http://loinc.org"
NOW_MS = 1_700_000_000_000  # 2023-11-14T22:13:20Z


def _observation(oid: str, patient: str, code: str, value: float, when: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "category": [{"coding": [{"code": "vital-signs"}]}],
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
    }


RESOURCES = [
    {"resourceType": "Patient", "id": "ann", "name": [{"family": "Ames"}], "birthDate": "1950-01-01"},
    {"resourceType": "Patient", "id": "bob", "name": [{"family": "Bell"}], "birthDate": "1980-01-01"},
    _observation("a1", "ann", "8867-4", 60, "2023-11-14T08:00:00Z"),
    _observation("a2", "ann", "8867-4", 90, "2023-11-10T08:00:00Z"),
    _observation("a3", "ann", "9279-1", 16, "2023-11-14T09:00:00Z"),
    _observation("b1", "bob", "8867-4", 70, "2023-11-14T07:00:00Z"),
    _observation("b2", "bob", "9279-1", 20, "2022-01-01T07:00:00Z"),
    {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/bob"}, "code": {"text": "Asthma"}},
]

# searches of one shape each, with different values
SAME_SHAPES = [
    [
        [("patient", p), ("code", c), ("_sort", "-date"), ("_count", "1")]
        for p in ("ann", "bob")
        for c in ("8867-4", "9279-1")
    ],
    [[("patient", p), ("date", d)] for p in ("ann", "bob") for d in ("ge2023-11-14", "ge2023-11-10", "lt2023")],
    [[("subject", f"Patient/{p}"), ("code", f"{LOINC}|{c}")] for p in ("ann", "bob") for c in ("8867-4", "9279-1")],
    [[("value-quantity", v)] for v in ("gt65", "lt65", "ge70", "gt100")],
    [[("_id", ids)] for ids in ("a1", "a1,b1", "a2,b2,c1")],
    [[("patient.family", n), ("code", "8867-4")] for n in ("ames", "bell", "nobody")],
    [[("date", f"ap{d}")] for d in ("2023-11-14", "2022-01-01")],
    [
        [("combo-code", c), ("_count", str(n)), ("_offset", str(o))]
        for c in ("8867-4", "9279-1")
        for n, o in ((1, 0), (1, 1), (5, 0))
    ],
]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    engine = make_engine(Path(tmp_path_factory.mktemp("shapes")) / "db.sqlite")
    repository = Repository(engine, REGISTRY)
    repository.store_prepared([prepare_rows(repository.indexer, [dict(r) for r in RESOURCES])])
    yield engine
    engine.dispose()


def _search(engine: Engine, resource_type: str, items: list[tuple[str, str]], now_ms: int = NOW_MS) -> Any:
    ctx = SearchContext(base_url="http://server/fhir", now_ms=now_ms)
    request = parse_search(resource_type, items, REGISTRY, ctx)
    with engine.connect() as conn:
        result = execute_search(conn, REGISTRY, request, "", ctx)
    return result.total, [m.id for m in result.matches], result.has_next


def _alone(engine: Engine, resource_type: str, items: list[tuple[str, str]], now_ms: int = NOW_MS) -> Any:
    execute._SHAPES.clear()
    return _search(engine, resource_type, items, now_ms)


@pytest.mark.parametrize("searches", SAME_SHAPES)
def test_a_shape_compiled_for_one_search_serves_the_others(engine: Engine, searches: list[Any]) -> None:
    expected = [_alone(engine, "Observation", items) for items in searches]
    assert len({repr(e) for e in expected}) > 1  # the values matter: a shape that reused the first's would fail
    execute._SHAPES.clear()
    assert [_search(engine, "Observation", items) for items in searches] == expected
    assert [_search(engine, "Observation", items) for items in reversed(searches)] == expected[::-1]


def test_an_approximate_date_reads_each_searchs_clock(engine: Engine) -> None:
    items = [("date", "ap2023-11-13")]
    near, far = NOW_MS, NOW_MS + 20 * 365 * 86_400_000  # ap's window is 10% of the gap to now
    expected = [_alone(engine, "Observation", items, now) for now in (near, far)]
    assert expected[0] != expected[1]
    execute._SHAPES.clear()
    assert [_search(engine, "Observation", items, now) for now in (near, far)] == expected


def test_a_compiled_shape_binds_every_value_of_the_search() -> None:
    """The only values written into a shape's SQL are the ones its shape fixes (types, parameters, targets):
    everything a search gives is a named bound parameter."""
    constants = set(REGISTRY.resource_types) | {code for t in REGISTRY.resource_types for code in REGISTRY.for_type(t)}
    ctx = SearchContext(base_url="http://server/fhir", now_ms=NOW_MS)
    searches = [
        ("Observation", [("patient", "zz1"), ("code", "zz2|zz3"), ("_sort", "-date"), ("_lastUpdated", "gt2020")]),
        ("Observation", [("_id", "zz1,zz2"), ("subject:Patient.name", "zz3"), ("date", "ap2020")]),
        ("Patient", [("_has:Observation:patient:combo-code", "zz1"), ("name:exact", "zz2")]),
        ("Condition", [("code:text", "zz1"), ("onset-date", "lt2020"), ("_count", "3")]),
    ]
    for resource_type, items in searches:
        for session, compartment in (("", None), ("zz-session", "zz-patient")):
            request = parse_search(resource_type, items, REGISTRY, ctx)
            request.compartment_patient = compartment
            patient, lead = patient_hint(request, REGISTRY)
            shape = execute._compiled(REGISTRY, request, session, patient, lead, ctx)
            for statement in (shape.page, shape.count):
                for bind in execute._binds(statement):
                    if bind.key in shape.params or bind.key in ("limit", "offset"):
                        continue
                    values = bind.value if isinstance(bind.value, list) else [bind.value]
                    assert all(v in constants for v in values), (resource_type, items, bind.value)
