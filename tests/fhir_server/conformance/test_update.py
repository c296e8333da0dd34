"""update, version-aware update and conditional update (R4 http.html#update, #concurrency, #cond-update)."""

from __future__ import annotations

import httpx

from .rest_support import SYSTEM, assert_outcome, base_url, count, create, patient, read, search_ids, write_log


def test_update_answers_200_and_increments_the_version(fhir: httpx.Client) -> None:
    stored = create(fhir, patient("u1", gender="male", birthDate="1970-01-01"))
    pid = stored["id"]
    response = fhir.put(f"Patient/{pid}", json={"resourceType": "Patient", "id": pid, "gender": "female"})
    assert response.status_code == 200
    assert response.headers["etag"] == 'W/"2"'
    body = response.json()
    assert body["meta"]["versionId"] == "2"
    assert body["meta"]["lastUpdated"] >= stored["meta"]["lastUpdated"]
    # an update replaces the whole resource: what the new body leaves out is gone
    assert body["gender"] == "female" and "birthDate" not in body and "identifier" not in body
    assert read(fhir, f"Patient/{pid}") == body
    again = fhir.put(f"Patient/{pid}", json=body)
    assert again.status_code == 200 and again.json()["meta"]["versionId"] == "3"


def test_update_ignores_the_clients_version_and_last_updated(fhir: httpx.Client) -> None:
    stored = create(fhir, patient("u2"))
    stale = {**stored, "meta": {"versionId": "99", "lastUpdated": "2001-01-01T00:00:00Z"}}
    body = fhir.put(f"Patient/{stored['id']}", json=stale).json()
    assert body["meta"]["versionId"] == "2"
    assert not body["meta"]["lastUpdated"].startswith("2001")


def test_update_of_a_new_id_creates_it_with_201(fhir: httpx.Client) -> None:
    response = fhir.put("Patient/chosen-by-client", json=patient("u3", id="chosen-by-client"))
    assert response.status_code == 201
    assert response.headers["location"] == f"{base_url(fhir)}/Patient/chosen-by-client/_history/1"
    assert response.headers["etag"] == 'W/"1"'
    assert read(fhir, "Patient/chosen-by-client")["meta"]["versionId"] == "1"


def test_update_after_delete_recreates_with_the_next_version(fhir: httpx.Client) -> None:
    """The deleted resource does not exist (reads give 410), so the PUT creates it again: 201, version 3."""
    pid = create(fhir, patient("u4"))["id"]
    assert fhir.delete(f"Patient/{pid}").status_code == 200
    response = fhir.put(f"Patient/{pid}", json=patient("u4", id=pid))
    assert response.status_code == 201
    assert response.json()["meta"]["versionId"] == "3"
    assert fhir.get(f"Patient/{pid}").status_code == 200


def test_if_match_with_the_current_version_updates(fhir: httpx.Client) -> None:
    stored = create(fhir, patient("u5"))
    response = fhir.put(f"Patient/{stored['id']}", json=stored, headers={"If-Match": 'W/"1"'})
    assert response.status_code == 200
    assert response.headers["etag"] == 'W/"2"'


def test_if_match_with_another_version_is_412_and_stores_nothing(fhir: httpx.Client) -> None:
    stored = create(fhir, patient("u6", gender="male"))
    pid = stored["id"]
    response = fhir.put(f"Patient/{pid}", json={**stored, "gender": "female"}, headers={"If-Match": 'W/"2"'})
    assert_outcome(response, 412, 'W/"2"', 'version "1"')
    current = read(fhir, f"Patient/{pid}")
    assert current["gender"] == "male" and current["meta"]["versionId"] == "1"
    assert [e["method"] for e in write_log(fhir)] == ["POST"]


def test_if_match_on_an_id_that_does_not_exist_is_412_and_creates_nothing(fhir: httpx.Client) -> None:
    response = fhir.put("Patient/ghost", json=patient("u7", id="ghost"), headers={"If-Match": 'W/"1"'})
    assert_outcome(response, 412)
    assert fhir.get("Patient/ghost").status_code == 404


def test_body_id_different_from_the_url_id_is_400(fhir: httpx.Client) -> None:
    stored = create(fhir, patient("u8"))
    response = fhir.put(f"Patient/{stored['id']}", json={**stored, "id": "something-else"})
    outcome = assert_outcome(response, 400, "something-else", stored["id"])
    assert outcome["issue"][0]["expression"] == ["Patient.id"]
    assert read(fhir, f"Patient/{stored['id']}")["meta"]["versionId"] == "1"
    assert fhir.get("Patient/something-else").status_code == 404


def test_body_without_an_id_is_400(fhir: httpx.Client) -> None:
    """R4: "If no id element is provided, or the id disagrees with the id in the URL, the server SHALL respond
    with an HTTP 400"."""
    stored = create(fhir, patient("u9"))
    response = fhir.put(f"Patient/{stored['id']}", json=patient("u9"))
    assert_outcome(response, 400, stored["id"])


def test_body_of_another_resource_type_is_400(fhir: httpx.Client) -> None:
    stored = create(fhir, patient("u10"))
    body = {"resourceType": "Observation", "id": stored["id"], "status": "final", "code": {"text": "x"}}
    assert_outcome(fhir.put(f"Patient/{stored['id']}", json=body), 400, "Observation", "Patient")
    assert fhir.get(f"Observation/{stored['id']}").status_code == 404


def test_an_invalid_id_in_the_url_is_400(fhir: httpx.Client) -> None:
    for bad in ("has_underscore", "x" * 65):
        assert_outcome(fhir.put(f"Patient/{bad}", json=patient(id=bad)), 400, bad)
    assert write_log(fhir) == []


def test_conditional_update_with_no_match_creates(fhir: httpx.Client) -> None:
    criteria = {"identifier": f"{SYSTEM}|cu1"}
    response = fhir.put("Patient", params=criteria, json=patient("cu1", gender="male"))
    assert response.status_code == 201
    pid = response.json()["id"]
    assert response.headers["location"] == f"{base_url(fhir)}/Patient/{pid}/_history/1"
    assert search_ids(fhir, "Patient", **criteria) == [pid]


def test_conditional_update_with_one_match_updates_it(fhir: httpx.Client) -> None:
    pid = create(fhir, patient("cu2", gender="male"))["id"]
    response = fhir.put("Patient", params={"identifier": f"{SYSTEM}|cu2"}, json=patient("cu2", gender="female"))
    assert response.status_code == 200
    assert response.json()["id"] == pid
    assert response.json()["meta"]["versionId"] == "2"
    assert read(fhir, f"Patient/{pid}")["gender"] == "female"
    assert count(fhir, "Patient", "cu2") == 1


def test_conditional_update_with_several_matches_is_412_and_changes_nothing(fhir: httpx.Client) -> None:
    ids = [create(fhir, patient("cu3"))["id"] for _ in range(2)]
    response = fhir.put("Patient", params={"identifier": f"{SYSTEM}|cu3"}, json=patient("cu3", gender="other"))
    assert_outcome(response, 412, "more than one")
    for pid in ids:
        assert read(fhir, f"Patient/{pid}")["meta"]["versionId"] == "1"
    assert len(write_log(fhir)) == 2


def test_conditional_update_whose_body_id_is_not_the_match_is_400(fhir: httpx.Client) -> None:
    pid = create(fhir, patient("cu4"))["id"]
    response = fhir.put("Patient", params={"identifier": f"{SYSTEM}|cu4"}, json=patient("cu4", id="another-id"))
    assert_outcome(response, 400, "another-id", pid)
    assert read(fhir, f"Patient/{pid}")["meta"]["versionId"] == "1"


def test_conditional_update_without_criteria_is_400(fhir: httpx.Client) -> None:
    assert_outcome(fhir.put("Patient", json=patient("cu5")), 400, "criteria")
    assert write_log(fhir) == []
