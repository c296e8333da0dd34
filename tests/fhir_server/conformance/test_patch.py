"""patch (R4 http.html#patch): JSON Patch (RFC 6902) and JSON merge patch (RFC 7386), processed as an update.

A patch whose result is not a valid R4 resource is rejected like an invalid update: 400, nothing stored.
"""

from __future__ import annotations

from typing import Any

import httpx

from .rest_support import JSON_PATCH, MERGE_PATCH, SYSTEM, assert_outcome, create, observation, patient, read, write_log


def json_patch(fhir: httpx.Client, reference: str, operations: Any, **headers: str) -> httpx.Response:
    return fhir.patch(reference, json=operations, headers={"Content-Type": JSON_PATCH, **headers})


def assert_unchanged(fhir: httpx.Client, reference: str, before: dict[str, Any]) -> None:
    assert read(fhir, reference) == before
    assert [e["method"] for e in write_log(fhir)] == ["POST"]


def test_json_patch_applies_and_makes_a_new_version(fhir: httpx.Client) -> None:
    pid = create(fhir, patient("p1", gender="male", name=[{"family": "Old"}]))["id"]
    operations = [
        {"op": "test", "path": "/gender", "value": "male"},
        {"op": "replace", "path": "/gender", "value": "female"},
        {"op": "add", "path": "/birthDate", "value": "1980-02-03"},
        {"op": "replace", "path": "/name/0/family", "value": "New"},
    ]
    response = json_patch(fhir, f"Patient/{pid}", operations)
    assert response.status_code == 200, response.text
    assert response.headers["etag"] == 'W/"2"'
    body = response.json()
    assert (body["gender"], body["birthDate"], body["name"]) == ("female", "1980-02-03", [{"family": "New"}])
    assert body["meta"]["versionId"] == "2"
    assert read(fhir, f"Patient/{pid}") == body
    last = write_log(fhir)[-1]
    assert (last["method"], last["version"], last["status"]) == ("PATCH", 2, 200)
    assert last["request"] == operations


def test_a_patch_that_makes_the_resource_invalid_is_400_and_stores_nothing(fhir: httpx.Client) -> None:
    before = create(fhir, observation())
    reference = f"Observation/{before['id']}"
    outcome = assert_outcome(json_patch(fhir, reference, [{"op": "remove", "path": "/status"}]), 400, "status")
    assert "Observation.status" in outcome["issue"][0]["expression"]
    bad_date = [{"op": "add", "path": "/effectiveDateTime", "value": "yesterday"}]
    assert_outcome(json_patch(fhir, reference, bad_date), 400, "Observation.effectiveDateTime")
    unknown = [{"op": "add", "path": "/colour", "value": "red"}]
    assert_outcome(json_patch(fhir, reference, unknown), 400, "Observation.colour")
    assert_unchanged(fhir, reference, before)


def test_a_failing_test_operation_rejects_the_whole_patch(fhir: httpx.Client) -> None:
    """RFC 6902 §5: one failed operation fails the document. R4 names no status; RFC 5789 allows 409/422 for
    patches that cannot be applied to the current state; this server answers 400, and any of these is accepted."""
    before = create(fhir, patient("p2", gender="male"))
    operations = [
        {"op": "replace", "path": "/gender", "value": "female"},
        {"op": "test", "path": "/gender", "value": "male"},
    ]
    response = json_patch(fhir, f"Patient/{before['id']}", operations)
    assert response.status_code in (400, 409, 422)
    assert_outcome(response, response.status_code, "JSON Patch")
    assert_unchanged(fhir, f"Patient/{before['id']}", before)


def test_a_malformed_json_patch_document_is_400(fhir: httpx.Client) -> None:
    before = create(fhir, patient("p3"))
    reference = f"Patient/{before['id']}"
    assert_outcome(json_patch(fhir, reference, {"op": "add", "path": "/active", "value": True}), 400, "array")
    assert_outcome(json_patch(fhir, reference, [{"op": "frobnicate", "path": "/active"}]), 400, "JSON Patch")
    assert_outcome(json_patch(fhir, reference, [{"op": "remove", "path": "/nothing/here"}]), 400, "JSON Patch")
    assert_unchanged(fhir, reference, before)


def test_a_patch_may_not_change_the_id_or_the_type(fhir: httpx.Client) -> None:
    before = create(fhir, patient("p4"))
    reference = f"Patient/{before['id']}"
    assert_outcome(json_patch(fhir, reference, [{"op": "replace", "path": "/id", "value": "other"}]), 400, "id")
    retype = [{"op": "replace", "path": "/resourceType", "value": "Person"}]
    assert_outcome(json_patch(fhir, reference, retype), 400, "resourceType")
    assert_unchanged(fhir, reference, before)


def test_merge_patch_sets_and_removes_elements(fhir: httpx.Client) -> None:
    pid = create(fhir, patient("p5", gender="male", birthDate="1970-01-01"))["id"]
    response = fhir.patch(
        f"Patient/{pid}",
        json={"gender": "female", "birthDate": None, "active": True},
        headers={"Content-Type": MERGE_PATCH},
    )
    assert response.status_code == 200, response.text
    body = read(fhir, f"Patient/{pid}")
    assert body["gender"] == "female" and body["active"] is True and "birthDate" not in body
    assert body["identifier"] == [{"system": SYSTEM, "value": "p5"}]
    assert body["meta"]["versionId"] == "2"


def test_a_partial_resource_sent_as_fhir_json_is_a_merge_patch(fhir: httpx.Client) -> None:
    """fhirpy's ``patch()`` sends a partial resource as application/json; it is treated as a merge patch."""
    pid = create(fhir, patient("p6"))["id"]
    response = fhir.patch(f"Patient/{pid}", json={"gender": "other"}, headers={"Content-Type": "application/json"})
    assert response.status_code == 200
    assert read(fhir, f"Patient/{pid}")["gender"] == "other"


def test_a_merge_patch_producing_an_invalid_resource_is_400(fhir: httpx.Client) -> None:
    before = create(fhir, patient("p7"))
    reference = f"Patient/{before['id']}"
    response = fhir.patch(reference, json={"birthDate": "not a date"}, headers={"Content-Type": MERGE_PATCH})
    assert_outcome(response, 400, "Patient.birthDate")
    assert_unchanged(fhir, reference, before)


def test_an_unsupported_patch_content_type_is_415(fhir: httpx.Client) -> None:
    before = create(fhir, patient("p8"))
    reference = f"Patient/{before['id']}"
    for media in ("text/plain", "application/xml-patch+xml", "application/fhir+xml"):
        response = fhir.patch(
            reference, content=b'[{"op":"add","path":"/active","value":true}]', headers={"Content-Type": media}
        )
        assert_outcome(response, 415, media)
    assert_unchanged(fhir, reference, before)


def test_patch_of_an_unknown_resource_is_404_and_of_a_deleted_one_410(fhir: httpx.Client) -> None:
    operations = [{"op": "add", "path": "/active", "value": True}]
    assert_outcome(json_patch(fhir, "Patient/nobody", operations), 404)
    pid = create(fhir, patient("p9"))["id"]
    assert fhir.delete(f"Patient/{pid}").status_code == 200
    assert_outcome(json_patch(fhir, f"Patient/{pid}", operations), 410)


def test_patch_honours_if_match(fhir: httpx.Client) -> None:
    before = create(fhir, patient("p10"))
    reference = f"Patient/{before['id']}"
    operations = [{"op": "add", "path": "/active", "value": True}]
    assert_outcome(json_patch(fhir, reference, operations, **{"If-Match": 'W/"3"'}), 412, 'W/"3"')
    assert_unchanged(fhir, reference, before)
    assert json_patch(fhir, reference, operations, **{"If-Match": 'W/"1"'}).status_code == 200


def test_conditional_patch_patches_the_one_match(fhir: httpx.Client) -> None:
    pid = create(fhir, patient("p11"))["id"]
    response = fhir.patch(
        "Patient",
        params={"identifier": f"{SYSTEM}|p11"},
        json=[{"op": "add", "path": "/active", "value": False}],
        headers={"Content-Type": JSON_PATCH},
    )
    assert response.status_code == 200
    assert read(fhir, f"Patient/{pid}")["active"] is False
