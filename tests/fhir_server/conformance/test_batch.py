"""batch (R4 http.html#transaction): entries are independent, each answers with its own status, and a
failing entry does not stop the others. Response entries are in request order."""

from __future__ import annotations

import httpx

from .rest_support import (
    SYSTEM,
    assert_outcome,
    base_url,
    count,
    create,
    json_patch_binary,
    observation,
    patient,
    post_bundle,
    read,
    write_log,
)


def test_each_entry_gets_its_own_status_and_failures_do_not_stop_the_rest(fhir: httpx.Client) -> None:
    existing = create(fhir, patient("b1", gender="male"))
    doomed = create(fhir, patient("b1-doomed"))["id"]
    entries = [
        {"resource": patient("b1", gender=5), "request": {"method": "POST", "url": "Patient"}},  # invalid
        {"resource": patient("b1-new"), "request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "GET", "url": "Patient/not-there"}},
        {"request": {"method": "GET", "url": f"Patient/{existing['id']}"}},
        {"request": {"method": "GET", "url": f"Patient?identifier={SYSTEM}|b1"}},
        {"resource": patient("b1-put", id="b1-put"), "request": {"method": "PUT", "url": "Patient/b1-put"}},
        {"request": {"method": "DELETE", "url": f"Patient/{doomed}"}},
        {"resource": patient("b1-x", id="other"), "request": {"method": "PUT", "url": "Patient/b1-mismatch"}},
        {"request": {"method": "GET", "url": "Unicorn/1"}},
    ]
    response = post_bundle(fhir, "batch", entries)
    assert response.status_code == 200, response.text
    bundle = response.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "batch-response"
    results = bundle["entry"]
    assert [r["response"]["status"].split()[0] for r in results] == [
        "400",
        "201",
        "404",
        "200",
        "200",
        "201",
        "200",
        "400",
        "404",
    ]
    invalid = results[0]["response"]["outcome"]
    assert invalid["resourceType"] == "OperationOutcome" and "Patient.gender" in invalid["issue"][0]["diagnostics"]
    assert results[2]["response"]["outcome"]["issue"][0]["code"] == "not-found"
    assert results[3]["resource"] == existing
    assert results[4]["resource"]["type"] == "searchset"
    assert [e["resource"]["id"] for e in results[4]["resource"]["entry"]] == [existing["id"]]
    created = results[1]["response"]
    assert created["location"].startswith(f"{base_url(fhir)}/Patient/") and created["etag"] == 'W/"1"'
    assert results[5]["response"]["location"] == f"{base_url(fhir)}/Patient/b1-put/_history/1"
    assert "other" in results[7]["response"]["outcome"]["issue"][0]["diagnostics"]
    # the successful writes happened, the failed ones did not
    assert count(fhir, "Patient", "b1-new") == 1
    assert read(fhir, "Patient/b1-put")["meta"]["versionId"] == "1"
    assert fhir.get(f"Patient/{doomed}").status_code == 410
    assert count(fhir, "Patient", "b1") == 1
    assert fhir.get("Patient/b1-mismatch").status_code == 404


def test_batch_writes_are_logged_in_entry_order(fhir: httpx.Client) -> None:
    entries = [
        {"resource": patient("b2", id="b2-a"), "request": {"method": "PUT", "url": "Patient/b2-a"}},
        {"resource": observation("Patient/b2-a"), "request": {"method": "POST", "url": "Observation"}},
        {"request": {"method": "DELETE", "url": "Patient/b2-a"}},
    ]
    response = post_bundle(fhir, "batch", entries)
    assert [r["response"]["status"] for r in response.json()["entry"]] == ["201 Created", "201 Created", "200 OK"]
    log = write_log(fhir)
    assert [(e["method"], e["type"]) for e in log] == [
        ("PUT", "Patient"),
        ("POST", "Observation"),
        ("DELETE", "Patient"),
    ]
    assert log[1]["request"]["subject"] == {"reference": "Patient/b2-a"}


def test_batch_entries_can_be_conditional(fhir: httpx.Client) -> None:
    existing = create(fhir, patient("b3"))
    entries = [
        {
            "resource": patient("b3"),
            "request": {"method": "POST", "url": "Patient", "ifNoneExist": f"identifier={SYSTEM}|b3"},
        },
        {
            "resource": {**existing, "active": True},
            "request": {"method": "PUT", "url": f"Patient/{existing['id']}", "ifMatch": 'W/"7"'},
        },
    ]
    results = post_bundle(fhir, "batch", entries).json()["entry"]
    assert results[0]["response"]["status"] == "200 OK"
    assert results[1]["response"]["status"].startswith("412")
    assert count(fhir, "Patient", "b3") == 1
    assert "active" not in read(fhir, f"Patient/{existing['id']}")


def test_a_batch_entry_can_be_a_json_patch(fhir: httpx.Client) -> None:
    pid = create(fhir, patient("b4"))["id"]
    patch = json_patch_binary([{"op": "add", "path": "/gender", "value": "female"}])
    results = post_bundle(fhir, "batch", [{"resource": patch, "request": {"method": "PATCH", "url": f"Patient/{pid}"}}])
    assert results.json()["entry"][0]["response"]["status"] == "200 OK"
    assert read(fhir, f"Patient/{pid}")["gender"] == "female"


def test_an_empty_batch_answers_an_empty_response(fhir: httpx.Client) -> None:
    response = post_bundle(fhir, "batch", [])
    assert response.status_code == 200
    assert response.json()["type"] == "batch-response"
    assert response.json().get("entry", []) == []


def test_a_malformed_batch_is_400_and_runs_nothing(fhir: httpx.Client) -> None:
    entries = [
        {"resource": patient("b5"), "request": {"method": "POST", "url": "Patient"}},
        {"resource": patient("b5"), "request": {"url": "Patient"}},  # no method
    ]
    outcome = assert_outcome(post_bundle(fhir, "batch", entries), 400, "Bundle.entry[1].request.method")
    assert outcome["issue"][0]["expression"] == ["Bundle.entry[1].request.method"]
    assert count(fhir, "Patient", "b5") == 0


def test_only_batch_and_transaction_bundles_are_processed(fhir: httpx.Client) -> None:
    response = post_bundle(fhir, "collection", [{"resource": patient("b6")}])
    assert_outcome(response, 400, "collection")
    assert_outcome(fhir.post("", json=patient("b6")), 400, "Bundle")
    assert write_log(fhir) == []
