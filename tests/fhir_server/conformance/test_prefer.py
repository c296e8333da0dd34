"""The Prefer header on writes (R4 http.html#ops, RFC 7240): return=minimal | representation | OperationOutcome.

Without a Prefer header this server returns the representation (the spec leaves the default to the server).
"""

from __future__ import annotations

import httpx
import pytest

from .rest_support import JSON_PATCH, assert_outcome, base_url, create, patient, post_bundle, read


def test_minimal_create_has_no_body_but_keeps_the_headers(fhir: httpx.Client) -> None:
    response = fhir.post("Patient", json=patient("m1"), headers={"Prefer": "return=minimal"})
    assert response.status_code == 201
    assert response.content == b""
    location = response.headers["location"]
    assert location.startswith(f"{base_url(fhir)}/Patient/") and location.endswith("/_history/1")
    assert response.headers["etag"] == 'W/"1"'
    pid = location.split("/Patient/")[1].split("/")[0]
    assert read(fhir, f"Patient/{pid}")["identifier"][0]["value"] == "m1"


def test_minimal_update_and_patch_have_no_body(fhir: httpx.Client) -> None:
    stored = create(fhir, patient("m2"))
    pid = stored["id"]
    updated = fhir.put(f"Patient/{pid}", json=stored, headers={"Prefer": "return=minimal"})
    assert (updated.status_code, updated.content, updated.headers["etag"]) == (200, b"", 'W/"2"')
    patched = fhir.patch(
        f"Patient/{pid}",
        json=[{"op": "add", "path": "/active", "value": True}],
        headers={"Prefer": "return=minimal", "Content-Type": JSON_PATCH},
    )
    assert (patched.status_code, patched.content, patched.headers["etag"]) == (200, b"", 'W/"3"')
    assert read(fhir, f"Patient/{pid}")["active"] is True


@pytest.mark.parametrize("prefer", [None, "return=representation"])
def test_representation_returns_the_stored_resource(fhir: httpx.Client, prefer: str | None) -> None:
    headers = {"Prefer": prefer} if prefer else {}
    response = fhir.post("Patient", json=patient("m3", gender="female"), headers=headers)
    assert response.status_code == 201
    body = response.json()
    assert body["resourceType"] == "Patient" and body["gender"] == "female"
    assert read(fhir, f"Patient/{body['id']}") == body


def test_operation_outcome_returns_an_outcome_instead_of_the_resource(fhir: httpx.Client) -> None:
    response = fhir.post("Patient", json=patient("m4"), headers={"Prefer": "return=OperationOutcome"})
    assert response.status_code == 201
    assert response.headers["location"].endswith("/_history/1")
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["severity"] == "information"
    pid = response.headers["location"].split("/Patient/")[1].split("/")[0]
    stored = read(fhir, f"Patient/{pid}")
    updated = fhir.put(f"Patient/{pid}", json=stored, headers={"Prefer": "return=OperationOutcome"})
    assert updated.status_code == 200 and updated.json()["resourceType"] == "OperationOutcome"


def test_prefer_is_read_among_other_preferences(fhir: httpx.Client) -> None:
    response = fhir.post("Patient", json=patient("m5"), headers={"Prefer": "handling=lenient, return=minimal"})
    assert response.status_code == 201 and response.content == b""


def test_errors_carry_an_outcome_whatever_the_preference(fhir: httpx.Client) -> None:
    response = fhir.post("Patient", json=patient("m6", gender=1), headers={"Prefer": "return=minimal"})
    assert_outcome(response, 400, "Patient.gender")


def test_prefer_return_does_not_change_reads(fhir: httpx.Client) -> None:
    pid = create(fhir, patient("m7"))["id"]
    response = fhir.get(f"Patient/{pid}", headers={"Prefer": "return=minimal"})
    assert response.status_code == 200 and response.json()["id"] == pid
    search = fhir.get("Patient", params={"_id": pid}, headers={"Prefer": "return=minimal"})
    assert search.json()["entry"][0]["resource"]["id"] == pid


def test_minimal_applies_to_every_entry_of_a_batch(fhir: httpx.Client) -> None:
    entries = [
        {"resource": patient("m8"), "request": {"method": "POST", "url": "Patient"}},
        {"resource": patient("m8", id="m8-put"), "request": {"method": "PUT", "url": "Patient/m8-put"}},
    ]
    response = post_bundle(fhir, "batch", entries, headers={"Prefer": "return=minimal"})
    assert response.status_code == 200
    results = response.json()["entry"]
    assert [e["response"]["status"] for e in results] == ["201 Created", "201 Created"]
    assert all("resource" not in e for e in results)
    assert all(e["response"]["location"] and e["response"]["etag"] == 'W/"1"' for e in results)
