"""The indexer keeps plans by resource shape (with meta's keys) and values by JSON text: a resource must get the
rows a fresh indexer would give it, whatever was indexed before."""

from __future__ import annotations

from typing import Any

from fhir_sandbox.fhir_server import registry
from fhir_sandbox.fhir_server.jsonio import RawDecimal
from fhir_sandbox.fhir_server.search.indexer import Indexer


def _observation(oid: str, meta: Any, value: Any, **more: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "meta": meta,
        "status": "final",
        "category": [{"coding": [{"code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": "Patient/ann"},
        "valueQuantity": {"value": value, "unit": "/min"},
        **more,
    }


RESOURCES = [
    _observation("a", {"versionId": "1"}, 60),
    _observation("b", {"versionId": "1", "profile": ["http://example.org/p"]}, 60),
    _observation("c", {"versionId": "1", "source": "http://example.org/s"}, float("nan")),
    _observation("d", {"versionId": "1", "tag": [{"code": "t"}]}, None),
    _observation("e", [{"profile": ["http://example.org/p"]}], RawDecimal("60.0")),
    _observation("f", "not an object", float("inf"), category={"coding": [{"code": "vital-signs"}]}),
    _observation("g", {"versionId": "1"}, 60, subject=[{"reference": "Patient/ann"}, {"reference": "Patient/bob"}]),
    _observation("h", {}, 61, status=["final", "final"], code=[[{"coding": [{"code": "x"}]}]]),
]


def test_rows_do_not_depend_on_what_was_indexed_before() -> None:
    shared = Indexer(registry())
    for _ in range(2):
        for resource in RESOURCES:
            for base_url in (None, "http://localhost/fhir"):
                fresh = Indexer(registry()).rows("s", resource, base_url)
                assert repr(shared.rows("s", resource, base_url)) == repr(fresh), resource["id"]


def test_meta_elements_are_indexed_only_where_present() -> None:
    rows = {r["id"]: Indexer(registry()).rows("s", r) for r in RESOURCES}
    codes = {rid: {row[3] for kind in found.values() for row in kind} for rid, found in rows.items()}
    assert "_profile" in codes["b"] and "_profile" in codes["e"] and "_profile" not in codes["a"]
    assert "_source" in codes["c"] and "_source" not in codes["a"]
    assert "_tag" in codes["d"] and "_tag" not in codes["a"]
