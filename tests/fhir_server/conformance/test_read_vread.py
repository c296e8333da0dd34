"""read and vread (R4 http.html#read, #vread), and the conditional read with If-None-Match."""

from __future__ import annotations

import httpx

from .rest_support import FHIR_JSON, assert_outcome, create, http_date_matches, patient


def test_read_returns_the_resource_with_etag_and_last_modified(fhir: httpx.Client) -> None:
    stored = create(fhir, patient("r1", name=[{"family": "Read"}], gender="female"))
    response = fhir.get(f"Patient/{stored['id']}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(FHIR_JSON)
    assert response.headers["etag"] == 'W/"1"'
    assert http_date_matches(response.headers["last-modified"], stored["meta"]["lastUpdated"])
    assert response.json() == stored
    assert response.json()["name"] == [{"family": "Read"}]


def test_read_of_an_unknown_id_is_404(fhir: httpx.Client) -> None:
    assert_outcome(fhir.get("Patient/no-such-patient"), 404, "Patient/no-such-patient", code="not-found")


def test_read_of_a_deleted_resource_is_410(fhir: httpx.Client) -> None:
    stored = create(fhir, patient("r2"))
    assert fhir.delete(f"Patient/{stored['id']}").status_code == 200
    assert_outcome(fhir.get(f"Patient/{stored['id']}"), 410, stored["id"], code="deleted")


def test_read_of_an_id_known_only_under_another_type_is_404(fhir: httpx.Client) -> None:
    stored = create(fhir, patient("r3"))
    assert_outcome(fhir.get(f"Observation/{stored['id']}"), 404)


def test_head_answers_the_headers_without_a_body(fhir: httpx.Client) -> None:
    stored = create(fhir, patient("r4"))
    response = fhir.head(f"Patient/{stored['id']}")
    assert response.status_code == 200
    assert response.headers["etag"] == 'W/"1"'
    assert response.content == b""


def test_vread_returns_each_version(fhir: httpx.Client) -> None:
    stored = create(fhir, patient("v1", gender="male"))
    pid = stored["id"]
    updated = fhir.put(f"Patient/{pid}", json={**stored, "gender": "female"})
    assert updated.status_code == 200
    first = fhir.get(f"Patient/{pid}/_history/1")
    second = fhir.get(f"Patient/{pid}/_history/2")
    assert first.status_code == second.status_code == 200
    assert first.headers["etag"] == 'W/"1"' and second.headers["etag"] == 'W/"2"'
    assert first.json()["gender"] == "male" and first.json()["meta"]["versionId"] == "1"
    assert second.json()["gender"] == "female" and second.json()["meta"]["versionId"] == "2"
    assert first.json() == stored


def test_vread_of_the_deletion_version_is_410_and_earlier_versions_stay_readable(fhir: httpx.Client) -> None:
    pid = create(fhir, patient("v2"))["id"]
    assert fhir.delete(f"Patient/{pid}").status_code == 200
    assert_outcome(fhir.get(f"Patient/{pid}/_history/2"), 410, "version 2")
    assert fhir.get(f"Patient/{pid}/_history/1").status_code == 200


def test_vread_of_an_unknown_version_is_404(fhir: httpx.Client) -> None:
    pid = create(fhir, patient("v3"))["id"]
    assert_outcome(fhir.get(f"Patient/{pid}/_history/7"), 404, "7")
    assert_outcome(fhir.get(f"Patient/{pid}/_history/latest"), 404, "latest")
    assert_outcome(fhir.get("Patient/nobody/_history/1"), 404)


def test_if_none_match_on_the_current_version_is_304_without_a_body(fhir: httpx.Client) -> None:
    pid = create(fhir, patient("c1"))["id"]
    response = fhir.get(f"Patient/{pid}", headers={"If-None-Match": 'W/"1"'})
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == 'W/"1"'


def test_if_none_match_on_an_older_version_returns_the_resource(fhir: httpx.Client) -> None:
    stored = create(fhir, patient("c2"))
    pid = stored["id"]
    assert fhir.get(f"Patient/{pid}", headers={"If-None-Match": 'W/"0"'}).status_code == 200
    assert fhir.put(f"Patient/{pid}", json={**stored, "active": True}).status_code == 200
    response = fhir.get(f"Patient/{pid}", headers={"If-None-Match": 'W/"1"'})
    assert response.status_code == 200
    assert response.json()["active"] is True
    assert response.headers["etag"] == 'W/"2"'


def test_read_with_elements_returns_a_subset_marked_subsetted(fhir: httpx.Client) -> None:
    pid = create(fhir, patient("e1", gender="other", name=[{"family": "Subset"}]))["id"]
    response = fhir.get(f"Patient/{pid}", params={"_elements": "gender"})
    assert response.status_code == 200
    body = response.json()
    assert body["gender"] == "other" and body["id"] == pid
    assert "name" not in body and "identifier" not in body
    assert {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"} in body["meta"][
        "tag"
    ]
