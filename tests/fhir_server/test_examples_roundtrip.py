"""Every official R4 example the R4B models accept is stored with its own id and read back unchanged.

"Unchanged" means equal as parsed JSON apart from the server-set ``meta.versionId``/``meta.lastUpdated``, with
every decimal compared by its written text, so ``1.50`` must come back as ``1.50`` and ``1E-22`` as ``1E-22``.
Transaction bundles are also posted to the base and their resources read back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import EXAMPLES
from exact_json import parse
from fhir.resources.R4B import get_fhir_model_class
from fhir_sandbox.fhir_server.searchparams import registry

# Examples the R4B models reject, with the reason. R4B (fhir.resources 8.3.0) accepts all 98 files in this
# selection: the R4-only types it dropped (MedicinalProduct*, EffectEvidenceSynthesis, ...) are not in it.
# ``test_the_rejected_list_is_what_r4b_rejects`` keeps this list honest if the corpus or the models change.
R4B_REJECTS: dict[str, str] = {}


def _files() -> list[Path]:
    return sorted(p for p in EXAMPLES.glob("*.json"))


def _r4b_accepts(resource: dict[str, Any]) -> bool:
    try:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    except Exception:  # any failure (unknown type, ValidationError, ...) is a rejection
        return False
    return True


SERVED = set(registry().resource_types)
ACCEPTED = [
    p.name for p in _files() if p.name not in R4B_REJECTS and json.loads(p.read_bytes())["resourceType"] in SERVED
]
TRANSACTIONS = [n for n in ACCEPTED if json.loads((EXAMPLES / n).read_bytes()).get("type") == "transaction"]


def without_server_meta(resource: dict[str, Any]) -> dict[str, Any]:
    """``resource`` without meta.versionId/lastUpdated (and without meta if nothing else was in it)."""
    out = dict(resource)
    meta = {k: v for k, v in (out.pop("meta", None) or {}).items() if k not in ("versionId", "lastUpdated")}
    if meta:
        out["meta"] = meta
    return out


def test_the_corpus_is_there() -> None:
    assert len(_files()) == 98
    assert len(ACCEPTED) == 98 - len(R4B_REJECTS)


def test_the_rejected_list_is_what_r4b_rejects() -> None:
    rejected = {p.name for p in _files() if not _r4b_accepts(json.loads(p.read_bytes()))}
    assert rejected == set(R4B_REJECTS)


@pytest.mark.parametrize("name", ACCEPTED)
def test_example_round_trips(fhir: httpx.Client, name: str) -> None:
    raw = (EXAMPLES / name).read_bytes()
    original = parse(raw)
    resource_type, resource_id = original["resourceType"], original["id"]
    put = fhir.put(f"{resource_type}/{resource_id}", content=raw, headers={"Content-Type": "application/fhir+json"})
    assert put.status_code == 201, put.text
    assert put.headers["Location"].endswith(f"/{resource_type}/{resource_id}/_history/1")
    assert put.headers["ETag"] == 'W/"1"'

    read = fhir.get(f"{resource_type}/{resource_id}")
    assert read.status_code == 200, read.text
    stored = parse(read.content)
    assert stored["meta"]["versionId"] == "1"
    assert stored["meta"]["lastUpdated"]
    assert without_server_meta(stored) == without_server_meta(original)
    # the PUT's response body is the stored resource too
    assert without_server_meta(parse(put.content)) == without_server_meta(original)


# R4 content that R4B changed, so that the server (which validates with R4B) cannot take it. Abridged from the R4
# spec's Evidence example: R4 Evidence has exposureBackground (1..1); R4B replaced it with variableDefinition.
R4_EVIDENCE = {
    "resourceType": "Evidence",
    "id": "example",
    "status": "draft",
    "exposureBackground": {"reference": "Group/example"},
}


def test_r4_content_r4b_rejects_is_rejected_with_an_outcome(fhir: httpx.Client) -> None:
    assert not _r4b_accepts(R4_EVIDENCE)
    cases = [(n, (EXAMPLES / n).read_bytes()) for n in R4B_REJECTS] + [
        ("R4 Evidence", json.dumps(R4_EVIDENCE).encode())
    ]
    for name, raw in cases:
        resource = json.loads(raw)
        response = fhir.put(
            f"{resource['resourceType']}/{resource['id']}",
            content=raw,
            headers={"Content-Type": "application/fhir+json"},
        )
        assert response.status_code == 400, (name, response.text)
        outcome = response.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["severity"] == "error"
        assert fhir.get(f"{resource['resourceType']}/{resource['id']}").status_code == 404


def numbers(text: str | bytes) -> list[str]:
    """Every JSON number in a document, as written, in document order."""
    found: list[str] = []

    def keep(written: str) -> str:
        found.append(written)
        return written

    json.loads(text, parse_float=keep, parse_int=keep)
    return found


def test_decimal_edge_cases_keep_their_digits(fhir: httpx.Client) -> None:
    raw = (EXAMPLES / "Observation-decimal.json").read_bytes()
    written = numbers(raw)
    for edge in ("1.0", "1.00", "1E-22", "1000000000000000000", "1.000000000000000000E-245"):
        assert edge in written
    assert fhir.put("Observation/decimal", content=raw, headers={"Content-Type": "application/fhir+json"}).is_success
    assert numbers(fhir.get("Observation/decimal").content) == written


def test_a_changed_decimal_is_a_difference() -> None:
    # the comparison itself must see 1.50 and 1.5 as different, or the round trip proves nothing
    assert parse('{"v": 1.50}') != parse('{"v": 1.5}')
    assert parse('{"v": 1E-22}') != parse('{"v": 1e-22}')
    assert parse('{"v": 1.50}') == parse('{"v": 1.50}')


@pytest.mark.parametrize("name", TRANSACTIONS)
def test_transaction_example_posted_to_the_base(fhir: httpx.Client, name: str) -> None:
    bundle = parse((EXAMPLES / name).read_bytes())
    response = fhir.post("", content=(EXAMPLES / name).read_bytes(), headers={"Content-Type": "application/fhir+json"})
    if name == "Bundle-bundle-transaction.json":
        # the spec's kitchen-sink transaction calls an operation (POST ValueSet/$lookup with a Parameters body),
        # which this server does not support: the whole transaction fails, and none of its writes are kept
        assert response.status_code == 400, response.text
        outcome = response.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert "$lookup" in outcome["issue"][0]["diagnostics"]
        assert fhir.get("Patient", params={"_summary": "count"}).json()["total"] == 0
        return
    assert response.status_code == 200, response.text
    result = parse(response.content)
    assert result["type"] == "transaction-response"
    assert len(result["entry"]) == len(bundle["entry"])
    locations: dict[str, str] = {}
    for entry, answer in zip(bundle["entry"], result["entry"], strict=True):
        assert answer["response"]["status"].startswith("201"), answer
        location = answer["response"]["location"]
        type_and_id = location.split("/fhir/", 1)[1].split("/_history/")[0]
        locations[entry["fullUrl"]] = type_and_id
        assert type_and_id.split("/")[0] == entry["resource"]["resourceType"]
    for entry in bundle["entry"]:
        stored = parse(fhir.get(locations[entry["fullUrl"]]).content)
        for reference in _references(stored):
            # every reference to another entry now points at what that entry became
            assert fhir.get(reference).status_code == 200, reference


def _references(value: Any) -> list[str]:
    if isinstance(value, dict):
        found = [value["reference"]] if isinstance(value.get("reference"), str) else []
        return found + [r for k, v in value.items() if k != "reference" for r in _references(v)]
    if isinstance(value, list):
        return [r for item in value for r in _references(item)]
    return []
