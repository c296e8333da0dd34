"""Real Synthea R4 output loads through the REST API, and what is stored is what was sent.

Two sets (see SYNTHEA/SOURCE.md):

- the 30 self-contained patient transaction Bundles (7,148 resources, ``urn:uuid:`` references only);
- ``conditional-refs/``: two batch Bundles of organizations, locations and practitioners (``ifNoneExist`` on
  their identifiers) that must be loaded first, then 8 patient transactions that point at them with conditional
  references (``Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|...``).

After each load every stored resource is read back (paging through each type) and compared with the resource that
was sent: equal apart from the id, the server-set meta, and references, which must now name the stored resource
that the ``urn:uuid:`` fullUrl or the conditional reference stood for. Every reference is then resolved on the
server with ``_id`` searches, and the per-type counts (``_summary=count``) match the files.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import SYNTHEA
from exact_json import parse

PATIENT_BUNDLES = sorted(SYNTHEA.glob("*.json"))
CONDITIONAL = SYNTHEA / "conditional-refs"


def conditional_load_order() -> list[Path]:
    """SOURCE.md: hospital information first, then practitioner information, then the patients."""
    files = sorted(CONDITIONAL.glob("*.json"))
    hospital = [p for p in files if p.name.startswith("hospitalInformation")]
    practitioner = [p for p in files if p.name.startswith("practitionerInformation")]
    return hospital + practitioner + [p for p in files if p not in hospital and p not in practitioner]


# -- loading ------------------------------------------------------------------------------------------------------


def post_bundle(fhir: httpx.Client, path: Path) -> list[dict[str, Any]]:
    """POST a batch/transaction Bundle to the base; returns the response entries (request order)."""
    response = fhir.post(
        "",
        content=path.read_bytes(),
        headers={"Content-Type": "application/fhir+json", "Prefer": "return=minimal"},
        timeout=600,
    )
    assert response.status_code == 200, f"{path.name}: {response.text[:2000]}"
    result = response.json()
    kind = parse(path.read_bytes())["type"]
    assert result["type"] == f"{kind}-response"
    return list(result["entry"])


def location(entry: dict[str, Any]) -> str:
    """``Type/id`` from a response entry's ``location`` (``[base]/Type/id/_history/1``)."""
    return entry["response"]["location"].split("/fhir/", 1)[1].split("/_history/", 1)[0]


# -- reading back -------------------------------------------------------------------------------------------------


def all_of_type(fhir: httpx.Client, resource_type: str) -> list[dict[str, Any]]:
    """Every resource of a type, following ``next`` links (200 a page, the server's maximum)."""
    found: list[dict[str, Any]] = []
    response = fhir.get(resource_type, params={"_count": "200"})
    for _ in range(1000):
        assert response.status_code == 200, response.text
        bundle = parse(response.content)
        found += [e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]
        following = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
        if not following:
            return found
        response = fhir.get(following[0])
    raise AssertionError(f"{resource_type}: paging did not end")


def stored_by_id(fhir: httpx.Client, types: set[str]) -> dict[str, dict[str, Any]]:
    stored: dict[str, dict[str, Any]] = {}
    for resource_type in sorted(types):
        for resource in all_of_type(fhir, resource_type):
            key = f"{resource_type}/{resource['id']}"
            assert key not in stored, f"{key} came back twice while paging"
            stored[key] = resource
    return stored


def references(value: Any) -> list[str]:
    """Every literal ``reference`` string in a resource, contained resources included."""
    if isinstance(value, dict):
        own = [value["reference"]] if isinstance(value.get("reference"), str) else []
        return own + [r for key, item in value.items() if key != "reference" for r in references(item)]
    if isinstance(value, list):
        return [r for item in value for r in references(item)]
    return []


def rewritten(value: Any, mapping: dict[str, str]) -> Any:
    """``value`` with each literal reference replaced as ``mapping`` says (others unchanged)."""
    if isinstance(value, dict):
        return {
            key: mapping.get(item, item) if key == "reference" and isinstance(item, str) else rewritten(item, mapping)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [rewritten(item, mapping) for item in value]
    return value


def without_server_meta(resource: dict[str, Any]) -> dict[str, Any]:
    out = dict(resource)
    meta = {k: v for k, v in (out.pop("meta", None) or {}).items() if k not in ("versionId", "lastUpdated")}
    if meta:
        out["meta"] = meta
    return out


def assert_stored_as_sent(sent: list[tuple[str, dict[str, Any]]], stored: dict[str, dict[str, Any]]) -> None:
    """Each (Type/id it became, what was sent with references already mapped) is stored as sent, with its new id."""
    assert len(stored) == len(sent), "the server holds resources that were not sent (or lost some)"
    for key, expected in sent:
        expected = {**expected, "id": key.split("/", 1)[1]}
        assert key in stored, f"{key} was created but is not found by a search of its type"
        assert without_server_meta(stored[key]) == without_server_meta(expected), key


def assert_references_resolve(fhir: httpx.Client, stored: dict[str, dict[str, Any]]) -> int:
    """Every literal reference is ``#local`` (to a contained resource) or ``Type/id`` found by an _id search."""
    targets: dict[str, set[str]] = defaultdict(set)
    for key, resource in stored.items():
        contained = {c["id"] for c in resource.get("contained", [])}
        for reference in references(resource):
            if reference.startswith("#"):
                assert reference[1:] in contained, f"{key}: {reference} names no contained resource"
                continue
            assert not reference.startswith("urn:") and "?" not in reference, f"{key}: {reference} was not resolved"
            target_type, _, target_id = reference.partition("/")
            assert target_id and "/" not in target_id, f"{key}: {reference} is not Type/id"
            targets[target_type].add(target_id)
    for target_type, ids in targets.items():
        wanted = sorted(ids)
        for start in range(0, len(wanted), 100):
            chunk = wanted[start : start + 100]
            response = fhir.get(target_type, params={"_id": ",".join(chunk), "_count": "200", "_elements": "id"})
            assert response.status_code == 200, response.text
            found = {e["resource"]["id"] for e in response.json().get("entry", [])}
            assert found == set(chunk), f"{target_type}: {sorted(set(chunk) - found)[:5]} do not resolve"
    return sum(len(ids) for ids in targets.values())


def assert_counts(fhir: httpx.Client, expected: Counter[str]) -> None:
    for resource_type, count in sorted(expected.items()):
        response = fhir.get(resource_type, params={"_summary": "count"})
        assert response.status_code == 200, response.text
        bundle = response.json()
        assert bundle["total"] == count, resource_type
        assert "entry" not in bundle


# -- the tests ----------------------------------------------------------------------------------------------------


def test_the_data_is_there() -> None:
    assert len(PATIENT_BUNDLES) == 30
    assert sum(len(json.loads(p.read_bytes())["entry"]) for p in PATIENT_BUNDLES) == 7148
    assert [p.name.split("1633")[0] for p in conditional_load_order()[:2]] == [
        "hospitalInformation",
        "practitionerInformation",
    ]
    assert len(conditional_load_order()) == 10


def conditional_reference(resource_type: str, identifier: dict[str, Any]) -> str:
    """The conditional reference Synthea writes for a resource with this identifier."""
    return f"{resource_type}?identifier={identifier['system']}|{identifier['value']}"


@pytest.mark.integration  # ~30 s to load on a 2-core box, ~35 s in all
def test_synthea_patient_bundles_load_as_transactions(fhir: httpx.Client) -> None:
    sent: list[tuple[str, dict[str, Any]]] = []
    counts: Counter[str] = Counter()
    targets: set[str] = set()  # the stored resources the files' references stand for
    for path in PATIENT_BUNDLES:
        bundle = parse(path.read_bytes())
        assert bundle["type"] == "transaction"
        responses = post_bundle(fhir, path)
        assert len(responses) == len(bundle["entry"]), path.name
        urls: dict[str, str] = {}  # this bundle's fullUrls; they repeat across bundles (shared organizations)
        for entry, answer in zip(bundle["entry"], responses, strict=True):
            assert answer["response"]["status"] == "201 Created", (path.name, answer)
            urls[entry["fullUrl"]] = location(answer)
            assert location(answer).split("/")[0] == entry["resource"]["resourceType"]
            counts[entry["resource"]["resourceType"]] += 1
        for entry in bundle["entry"]:
            sent.append((urls[entry["fullUrl"]], rewritten(entry["resource"], urls)))
            targets |= {urls[r] for r in references(entry["resource"]) if r in urls}

    assert sum(counts.values()) == 7148
    assert_counts(fhir, counts)
    stored = stored_by_id(fhir, set(counts))
    assert_stored_as_sent(sent, stored)
    assert assert_references_resolve(fhir, stored) == len(targets)


@pytest.mark.integration  # ~100 s: the two information batches are 4,764 separate creates with ifNoneExist
def test_conditional_reference_set_loads_in_order(fhir: httpx.Client) -> None:
    sent: list[tuple[str, dict[str, Any]]] = []
    loaded: dict[str, str] = {}  # conditional reference -> the Type/id it must resolve to
    counts: Counter[str] = Counter()
    conditional = 0
    for path in conditional_load_order():
        bundle = parse(path.read_bytes())
        responses = post_bundle(fhir, path)
        assert len(responses) == len(bundle["entry"]), path.name
        urls: dict[str, str] = {}
        for entry, answer in zip(bundle["entry"], responses, strict=True):
            resource = entry["resource"]
            assert answer["response"]["status"] == "201 Created", (path.name, answer)
            urls[entry["fullUrl"]] = location(answer)
            assert location(answer).split("/")[0] == resource["resourceType"]
            counts[resource["resourceType"]] += 1
            for identifier in resource.get("identifier", []):
                loaded[conditional_reference(resource["resourceType"], identifier)] = location(answer)
        for entry in bundle["entry"]:
            refs = [r for r in references(entry["resource"]) if "?" in r]
            # loading in order means that every conditional reference names something already loaded
            assert all(r in loaded for r in refs), path.name
            conditional += len(refs)
            sent.append((urls[entry["fullUrl"]], rewritten(entry["resource"], {**urls, **loaded})))
    assert conditional == 5833

    # ifNoneExist: sending hospital information again finds each resource (200) and creates nothing
    again = json.loads(conditional_load_order()[0].read_bytes())
    again["entry"] = again["entry"][:20]
    response = fhir.post("", json=again)
    assert response.status_code == 200, response.text
    for entry, answer in zip(again["entry"], response.json()["entry"], strict=True):
        assert answer["response"]["status"] == "200 OK", answer
        identifier = entry["resource"]["identifier"][0]
        query = {"identifier": f"{identifier['system']}|{identifier['value']}"}
        assert fhir.get(entry["resource"]["resourceType"], params=query).json()["total"] == 1

    assert sum(counts.values()) == 8682
    assert_counts(fhir, counts)
    stored = stored_by_id(fhir, set(counts))
    assert_stored_as_sent(sent, stored)
    assert_references_resolve(fhir, stored)
