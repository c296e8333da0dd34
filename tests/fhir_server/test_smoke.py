"""A first end-to-end pass over the live server: create, read, search in a session."""

from __future__ import annotations

import httpx


def test_create_read_search_in_a_session(fhir: httpx.Client) -> None:
    created = fhir.post("Patient", json={"resourceType": "Patient", "name": [{"family": "Smith"}]})
    assert created.status_code == 201
    patient_id = created.json()["id"]
    assert fhir.get(f"Patient/{patient_id}").json()["name"][0]["family"] == "Smith"
    bundle = fhir.get("Patient", params={"name": "smi"}).json()
    assert [e["resource"]["id"] for e in bundle["entry"]] == [patient_id]


def test_sessions_do_not_see_each_other(live_server, fhir: httpx.Client) -> None:  # type: ignore[no-untyped-def]
    fhir.post("Patient", json={"resourceType": "Patient", "name": [{"family": "Isolated"}]})
    other = httpx.post(f"{live_server.url}/sessions").json()
    try:
        bundle = httpx.get(f"{other['fhir_base_url']}/Patient", params={"name": "Isolated"}).json()
        assert bundle["total"] == 0
    finally:
        httpx.delete(f"{live_server.url}/sessions/{other['id']}")
