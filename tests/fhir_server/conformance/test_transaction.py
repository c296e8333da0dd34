"""transaction (R4 http.html#transaction, #trules): all or nothing; DELETE, POST, PUT/PATCH, GET in that order
whatever the entry order; ``urn:uuid:`` and conditional references resolved; no resource touched twice;
response entries in request order.

R4 says a conditional reference with 0 or several matches fails the transaction without naming a status;
this server answers 412, as for the other conditional interactions with the wrong number of matches.
"""

from __future__ import annotations

from typing import Any

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
    search_ids,
    write_log,
)

PATIENT_UUID = "urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0"
ENCOUNTER_UUID = "urn:uuid:6e7ac5d5-0b7c-4a3c-9d2d-7b2b7f3a4a11"


def transaction(fhir: httpx.Client, entries: list[dict[str, Any]], **kwargs: Any) -> httpx.Response:
    return post_bundle(fhir, "transaction", entries, **kwargs)


def post(resource: dict[str, Any], full_url: str | None = None, **request: str) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"], **request},
    }
    if full_url:
        entry["fullUrl"] = full_url
    return entry


def put(resource: dict[str, Any], **request: str) -> dict[str, Any]:
    url = f"{resource['resourceType']}/{resource['id']}"
    return {"resource": resource, "request": {"method": "PUT", "url": url, **request}}


def assert_nothing_stored(fhir: httpx.Client, log_before: list[dict[str, Any]]) -> None:
    assert write_log(fhir) == log_before


def test_a_failing_entry_leaves_nothing_behind(fhir: httpx.Client) -> None:
    entries = [
        post(patient("t1"), PATIENT_UUID),
        put(patient("t1", id="t1-put")),
        post(observation(PATIENT_UUID, status="not-a-status", effectiveDateTime="not a date")),
    ]
    outcome = assert_outcome(transaction(fhir, entries), 400, "Bundle.entry[2]", "Observation.effectiveDateTime")
    assert outcome["issue"][0]["severity"] == "error"
    assert count(fhir, "Patient", "t1") == 0
    assert fhir.get("Patient/t1-put").status_code == 404
    assert search_ids(fhir, "Observation", code="http://loinc.org|8867-4") == []
    assert write_log(fhir) == []


def test_a_late_failure_undoes_earlier_deletes_and_updates(fhir: httpx.Client) -> None:
    doomed = create(fhir, patient("t2-delete"))
    changed = create(fhir, patient("t2-update", gender="male"))
    before = write_log(fhir)
    entries = [
        {"request": {"method": "DELETE", "url": f"Patient/{doomed['id']}"}},
        put({**changed, "gender": "female"}),
        put({**patient("t2-stale", id="t2-stale")}, ifMatch='W/"9"'),  # fails in the PUT phase, after the rest ran
    ]
    assert_outcome(transaction(fhir, entries), 412, "Bundle.entry[2]", 'W/"9"')
    assert read(fhir, f"Patient/{doomed['id']}") == doomed
    assert read(fhir, f"Patient/{changed['id']}") == changed
    assert_nothing_stored(fhir, before)


def test_entries_run_delete_post_put_get_whatever_their_order(fhir: httpx.Client) -> None:
    target = create(fhir, patient("t3", gender="male"))
    doomed = create(fhir, patient("t3-doomed"))
    before = write_log(fhir)
    entries = [
        {"request": {"method": "GET", "url": f"Patient/{target['id']}"}},
        put({**target, "gender": "female"}),
        post(observation(f"Patient/{target['id']}")),
        {"request": {"method": "DELETE", "url": f"Patient/{doomed['id']}"}},
    ]
    response = transaction(fhir, entries)
    assert response.status_code == 200, response.text
    log = write_log(fhir)[len(before) :]
    assert [(e["method"], e["type"]) for e in log] == [
        ("DELETE", "Patient"),
        ("POST", "Observation"),
        ("PUT", "Patient"),
    ]
    results = response.json()["entry"]
    # the GET ran last: it sees the PUT's version, though it came first in the Bundle
    assert results[0]["resource"]["gender"] == "female"
    assert results[0]["resource"]["meta"]["versionId"] == "2"


def test_response_entries_are_in_request_order_with_status_location_and_etag(fhir: httpx.Client) -> None:
    existing = create(fhir, patient("t4", gender="male"))
    entries = [
        put({**existing, "gender": "female"}),
        post(patient("t4-new"), PATIENT_UUID),
        {"request": {"method": "DELETE", "url": f"Patient/{existing['id']}-gone"}},
        put(patient("t4-put", id="t4-put")),
    ]
    response = transaction(fhir, entries)
    assert response.status_code == 200, response.text
    bundle = response.json()
    assert bundle["type"] == "transaction-response"
    results = [e["response"] for e in bundle["entry"]]
    assert [r["status"] for r in results] == ["200 OK", "201 Created", "200 OK", "201 Created"]
    assert results[0]["etag"] == 'W/"2"'
    new_id = results[1]["location"].split("/Patient/")[1].split("/")[0]
    assert results[1]["location"] == f"{base_url(fhir)}/Patient/{new_id}/_history/1"
    assert results[1]["etag"] == 'W/"1"' and results[1]["lastModified"]
    assert results[3]["location"] == f"{base_url(fhir)}/Patient/t4-put/_history/1"
    assert read(fhir, f"Patient/{new_id}")["identifier"][0]["value"] == "t4-new"


def test_urn_uuid_references_become_the_assigned_ids(fhir: httpx.Client) -> None:
    encounter = {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": PATIENT_UUID},
    }
    obs = observation(
        PATIENT_UUID,
        encounter={"reference": ENCOUNTER_UUID},
        text={
            "status": "generated",
            "div": f'<div xmlns="http://www.w3.org/1999/xhtml"><a href="{PATIENT_UUID}">p</a></div>',
        },
    )
    # the Observation refers forwards to entries after it
    entries = [post(obs), post(encounter, ENCOUNTER_UUID), post(patient("t5"), PATIENT_UUID)]
    response = transaction(fhir, entries)
    assert response.status_code == 200, response.text
    locations = [e["response"]["location"] for e in response.json()["entry"]]
    obs_id, enc_id, pat_id = (loc.split("/")[-3] for loc in locations)
    stored_obs = read(fhir, f"Observation/{obs_id}")
    assert stored_obs["subject"] == {"reference": f"Patient/{pat_id}"}
    assert stored_obs["encounter"] == {"reference": f"Encounter/{enc_id}"}
    assert PATIENT_UUID not in stored_obs["text"]["div"] and f"Patient/{pat_id}" in stored_obs["text"]["div"]
    assert read(fhir, f"Encounter/{enc_id}")["subject"] == {"reference": f"Patient/{pat_id}"}
    # and search follows the rewritten references
    assert search_ids(fhir, "Observation", patient=pat_id) == [obs_id]


def test_a_put_entrys_full_url_resolves_to_its_url(fhir: httpx.Client) -> None:
    entries = [
        post(observation(PATIENT_UUID)),
        {"fullUrl": PATIENT_UUID, **put(patient("t6", id="t6-patient"))},
    ]
    response = transaction(fhir, entries)
    assert response.status_code == 200, response.text
    obs_id = response.json()["entry"][0]["response"]["location"].split("/")[-3]
    assert read(fhir, f"Observation/{obs_id}")["subject"] == {"reference": "Patient/t6-patient"}


def test_conditional_references_resolve_to_the_one_match(fhir: httpx.Client) -> None:
    pid = create(fhir, patient("t7"))["id"]
    response = transaction(fhir, [post(observation(f"Patient?identifier={SYSTEM}|t7"))])
    assert response.status_code == 200, response.text
    obs_id = response.json()["entry"][0]["response"]["location"].split("/")[-3]
    assert read(fhir, f"Observation/{obs_id}")["subject"] == {"reference": f"Patient/{pid}"}


def test_a_conditional_reference_with_no_match_fails_the_transaction(fhir: httpx.Client) -> None:
    entries = [post(patient("t8-new")), post(observation(f"Patient?identifier={SYSTEM}|nobody"))]
    assert_outcome(transaction(fhir, entries), 412, "Patient?identifier=", "matches 0")
    assert count(fhir, "Patient", "t8-new") == 0
    assert write_log(fhir) == []


def test_a_conditional_reference_with_several_matches_fails_the_transaction(fhir: httpx.Client) -> None:
    create(fhir, patient("t9"))
    create(fhir, patient("t9"))
    before = write_log(fhir)
    entries = [post(patient("t9-new")), post(observation(f"Patient?identifier={SYSTEM}|t9"))]
    assert_outcome(transaction(fhir, entries), 412, "matches 2")
    assert count(fhir, "Patient", "t9-new") == 0
    assert_nothing_stored(fhir, before)


def test_if_none_exist_in_a_transaction_reuses_the_match_for_references(fhir: httpx.Client) -> None:
    existing = create(fhir, patient("t10"))
    entries = [
        post(patient("t10"), PATIENT_UUID, ifNoneExist=f"identifier={SYSTEM}|t10"),
        post(observation(PATIENT_UUID)),
    ]
    response = transaction(fhir, entries)
    assert response.status_code == 200, response.text
    results = response.json()["entry"]
    assert results[0]["response"]["status"] == "200 OK"
    obs_id = results[1]["response"]["location"].split("/")[-3]
    assert read(fhir, f"Observation/{obs_id}")["subject"] == {"reference": f"Patient/{existing['id']}"}
    assert count(fhir, "Patient", "t10") == 1


def test_two_entries_changing_the_same_resource_fail(fhir: httpx.Client) -> None:
    existing = create(fhir, patient("t11"))
    before = write_log(fhir)
    twice = [put({**existing, "gender": "male"}), put({**existing, "gender": "female"})]
    assert_outcome(transaction(fhir, twice), 400, f"Patient/{existing['id']}", "once")
    delete_and_put = [{"request": {"method": "DELETE", "url": f"Patient/{existing['id']}"}}, put(existing)]
    assert_outcome(transaction(fhir, delete_and_put), 400, "once")
    patch = json_patch_binary([{"op": "add", "path": "/active", "value": True}])
    put_and_patch = [
        put(existing),
        {"resource": patch, "request": {"method": "PATCH", "url": f"Patient/{existing['id']}"}},
    ]
    assert_outcome(transaction(fhir, put_and_patch), 400, "once")
    assert read(fhir, f"Patient/{existing['id']}") == existing
    assert_nothing_stored(fhir, before)


def test_two_entries_with_the_same_full_url_fail(fhir: httpx.Client) -> None:
    """bdl-7: fullUrl is unique in a Bundle; two creates claiming one fullUrl make references ambiguous."""
    entries = [post(patient("t12"), PATIENT_UUID), post(patient("t12"), PATIENT_UUID), post(observation(PATIENT_UUID))]
    assert_outcome(transaction(fhir, entries), 400, PATIENT_UUID)
    assert count(fhir, "Patient", "t12") == 0


def test_a_json_patch_entry_applies_inside_the_transaction(fhir: httpx.Client) -> None:
    pid = create(fhir, patient("t13"))["id"]
    patch = json_patch_binary([{"op": "add", "path": "/gender", "value": "other"}])
    entries = [{"resource": patch, "request": {"method": "PATCH", "url": f"Patient/{pid}"}}, post(patient("t13-new"))]
    response = transaction(fhir, entries)
    assert response.status_code == 200, response.text
    assert read(fhir, f"Patient/{pid}")["gender"] == "other"


def test_transaction_writes_are_logged_with_their_rewritten_requests(fhir: httpx.Client) -> None:
    response = transaction(fhir, [post(observation(PATIENT_UUID)), post(patient("t14"), PATIENT_UUID)])
    assert response.status_code == 200, response.text
    log = write_log(fhir)
    assert [(e["method"], e["type"], e["status"]) for e in log] == [
        ("POST", "Observation", 201),
        ("POST", "Patient", 201),
    ]
    assert log[0]["request"]["subject"] == {"reference": f"Patient/{log[1]['id']}"}


def test_minimal_transaction_responses_have_no_resources(fhir: httpx.Client) -> None:
    response = transaction(fhir, [post(patient("t15"))], headers={"Prefer": "return=minimal"})
    assert response.status_code == 200
    [entry] = response.json()["entry"]
    assert "resource" not in entry and entry["response"]["status"] == "201 Created"
