"""create and conditional create (R4 http.html#create, #ccreate)."""

from __future__ import annotations

import httpx

from .rest_support import SYSTEM, assert_outcome, base_url, count, create, http_date_matches, patient, write_log


def test_create_answers_201_with_location_etag_and_the_stored_resource(fhir: httpx.Client) -> None:
    response = fhir.post("Patient", json=patient("n1", name=[{"family": "Created"}]))
    assert response.status_code == 201
    body = response.json()
    pid = body["id"]
    assert response.headers["location"] == f"{base_url(fhir)}/Patient/{pid}/_history/1"
    assert response.headers["etag"] == 'W/"1"'
    assert http_date_matches(response.headers["last-modified"], body["meta"]["lastUpdated"])
    assert body["meta"]["versionId"] == "1"
    assert body["name"] == [{"family": "Created"}]
    assert fhir.get(f"Patient/{pid}").json() == body


def test_the_server_assigns_id_version_and_last_updated(fhir: httpx.Client) -> None:
    sent = patient(
        "n2",
        id="client-chosen",
        meta={"versionId": "42", "lastUpdated": "2001-01-01T00:00:00Z", "tag": [{"system": SYSTEM, "code": "kept"}]},
    )
    body = create(fhir, sent)
    assert body["id"] != "client-chosen"
    assert body["meta"]["versionId"] == "1"
    assert not body["meta"]["lastUpdated"].startswith("2001")
    assert body["meta"]["tag"] == [{"system": SYSTEM, "code": "kept"}]  # the rest of meta is the client's
    assert fhir.get("Patient/client-chosen").status_code == 404


def test_two_creates_get_two_ids(fhir: httpx.Client) -> None:
    first = create(fhir, patient("n3"))
    second = create(fhir, patient("n3"))
    assert first["id"] != second["id"]
    assert count(fhir, "Patient", "n3") == 2


def test_create_is_logged_with_its_request(fhir: httpx.Client) -> None:
    sent = patient("n4", gender="unknown")
    pid = create(fhir, sent)["id"]
    [entry] = write_log(fhir)
    assert (entry["method"], entry["url"], entry["type"], entry["id"]) == ("POST", "Patient", "Patient", pid)
    assert (entry["version"], entry["status"]) == (1, 201)
    assert entry["request"]["identifier"] == sent["identifier"]
    assert entry["request"]["gender"] == "unknown"


def test_conditional_create_with_no_match_creates(fhir: httpx.Client) -> None:
    response = fhir.post("Patient", json=patient("cc1"), headers={"If-None-Exist": f"identifier={SYSTEM}|cc1"})
    assert response.status_code == 201
    assert response.headers["location"].endswith("/_history/1")
    assert count(fhir, "Patient", "cc1") == 1


def test_conditional_create_with_one_match_answers_200_and_creates_nothing(fhir: httpx.Client) -> None:
    existing = create(fhir, patient("cc2", gender="male"))
    response = fhir.post(
        "Patient", json=patient("cc2", gender="female"), headers={"If-None-Exist": f"identifier={SYSTEM}|cc2"}
    )
    assert response.status_code == 200
    assert response.json()["id"] == existing["id"]
    assert response.json()["gender"] == "male"  # the existing resource, untouched
    assert response.headers["etag"] == 'W/"1"'
    assert count(fhir, "Patient", "cc2") == 1
    assert len(write_log(fhir)) == 1


def test_conditional_create_with_several_matches_is_412_and_creates_nothing(fhir: httpx.Client) -> None:
    create(fhir, patient("cc3"))
    create(fhir, patient("cc3"))
    response = fhir.post("Patient", json=patient("cc3"), headers={"If-None-Exist": f"identifier={SYSTEM}|cc3"})
    assert_outcome(response, 412, "more than one")
    assert count(fhir, "Patient", "cc3") == 2
    assert len(write_log(fhir)) == 2


def test_conditional_create_accepts_criteria_written_as_a_search_url(fhir: httpx.Client) -> None:
    existing = create(fhir, patient("cc4"))
    response = fhir.post("Patient", json=patient("cc4"), headers={"If-None-Exist": f"Patient?identifier={SYSTEM}|cc4"})
    assert response.status_code == 200
    assert response.json()["id"] == existing["id"]


def test_conditional_create_with_an_unknown_parameter_is_rejected_not_ignored(fhir: httpx.Client) -> None:
    """Ignoring an unknown criterion would match everything (or nothing) silently: it is a 400."""
    response = fhir.post("Patient", json=patient("cc5"), headers={"If-None-Exist": "no-such-param=1"})
    assert_outcome(response, 400, "no-such-param")
    assert count(fhir, "Patient", "cc5") == 0


def test_create_with_a_mismatched_resource_type_is_400(fhir: httpx.Client) -> None:
    response = fhir.post("Observation", json=patient("n5"))
    assert_outcome(response, 400, "resourceType", "Observation")
    assert write_log(fhir) == []


def test_post_to_an_instance_url_is_405(fhir: httpx.Client) -> None:
    assert_outcome(fhir.post("Patient/abc", json=patient("n6", id="abc")), 405, "POST")
    assert write_log(fhir) == []
