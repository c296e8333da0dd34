"""delete and conditional delete (R4 http.html#delete, #cdelete)."""

from __future__ import annotations

import httpx

from .rest_support import (
    SYSTEM,
    assert_outcome,
    count,
    create,
    history,
    observation,
    patient,
    read,
    search_ids,
    write_log,
)


def test_delete_answers_200_then_reads_are_410(fhir: httpx.Client) -> None:
    pid = create(fhir, patient("d1"))["id"]
    response = fhir.delete(f"Patient/{pid}")
    assert response.status_code == 200
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["severity"] == "information"
    assert pid in outcome["issue"][0]["diagnostics"]
    assert response.headers["etag"] == 'W/"2"'
    assert_outcome(fhir.get(f"Patient/{pid}"), 410)


def test_a_deleted_resource_leaves_search(fhir: httpx.Client) -> None:
    kept = create(fhir, patient("d2"))["id"]
    gone = create(fhir, patient("d2"))["id"]
    obs = create(fhir, observation(f"Patient/{gone}"))["id"]
    assert fhir.delete(f"Patient/{gone}").status_code == 200
    assert search_ids(fhir, "Patient", identifier=f"{SYSTEM}|d2") == [kept]
    assert search_ids(fhir, "Patient", _id=gone) == []
    # a resource that refers to the deleted one is still there
    assert search_ids(fhir, "Observation", subject=f"Patient/{gone}") == [obs]


def test_deleting_again_succeeds_and_changes_nothing(fhir: httpx.Client) -> None:
    pid = create(fhir, patient("d3"))["id"]
    assert fhir.delete(f"Patient/{pid}").status_code == 200
    again = fhir.delete(f"Patient/{pid}")
    assert again.status_code == 200
    assert again.json()["issue"][0]["severity"] == "information"
    assert [e["method"] for e in write_log(fhir)] == ["POST", "DELETE"]
    assert len(history(fhir, f"Patient/{pid}")["entry"]) == 2


def test_deleting_what_never_existed_succeeds(fhir: httpx.Client) -> None:
    assert fhir.delete("Patient/never-was").status_code == 200
    assert write_log(fhir) == []
    assert_outcome(fhir.get("Patient/never-was"), 404)


def test_the_deletion_is_a_version_in_history_and_in_the_write_log(fhir: httpx.Client) -> None:
    pid = create(fhir, patient("d4"))["id"]
    assert fhir.delete(f"Patient/{pid}").status_code == 200
    newest = history(fhir, f"Patient/{pid}")["entry"][0]
    assert newest["request"] == {"method": "DELETE", "url": f"Patient/{pid}"}
    assert newest["response"]["etag"] == 'W/"2"'
    assert "resource" not in newest
    entry = write_log(fhir)[-1]
    assert (entry["method"], entry["type"], entry["id"], entry["version"]) == ("DELETE", "Patient", pid, 2)
    assert entry["url"] == f"Patient/{pid}"


def test_a_deleted_resource_can_be_read_by_version(fhir: httpx.Client) -> None:
    stored = create(fhir, patient("d5"))
    assert fhir.delete(f"Patient/{stored['id']}").status_code == 200
    assert read(fhir, f"Patient/{stored['id']}/_history/1") == stored


def test_conditional_delete_with_one_match_deletes_it(fhir: httpx.Client) -> None:
    pid = create(fhir, patient("cd1"))["id"]
    other = create(fhir, patient("cd1-other"))["id"]
    response = fhir.delete("Patient", params={"identifier": f"{SYSTEM}|cd1"})
    assert response.status_code == 200
    assert_outcome(fhir.get(f"Patient/{pid}"), 410)
    assert read(fhir, f"Patient/{other}")["meta"]["versionId"] == "1"


def test_conditional_delete_with_no_match_succeeds_and_deletes_nothing(fhir: httpx.Client) -> None:
    create(fhir, patient("cd2"))
    response = fhir.delete("Patient", params={"identifier": f"{SYSTEM}|nobody"})
    assert response.status_code == 200
    assert count(fhir, "Patient", "cd2") == 1
    assert [e["method"] for e in write_log(fhir)] == ["POST"]


def test_conditional_delete_with_several_matches_is_412_in_single_mode(fhir: httpx.Client) -> None:
    """The CapabilityStatement declares conditionalDelete=single: several matches are a 412."""
    create(fhir, patient("cd3"))
    create(fhir, patient("cd3"))
    assert_outcome(fhir.delete("Patient", params={"identifier": f"{SYSTEM}|cd3"}), 412, "more than one")
    assert count(fhir, "Patient", "cd3") == 2


def test_conditional_delete_without_criteria_is_400(fhir: httpx.Client) -> None:
    create(fhir, patient("cd4"))
    assert_outcome(fhir.delete("Patient"), 400, "criteria")
    assert count(fhir, "Patient", "cd4") == 1


def test_delete_of_an_unknown_type_is_404(fhir: httpx.Client) -> None:
    assert_outcome(fhir.delete("Unicorn/1"), 404, "Unicorn")
