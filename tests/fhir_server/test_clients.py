"""The two common Python FHIR clients work against the live server, unmodified.

fhirpy 2.3.1 (``SyncFHIRClient``) has Aidbox habits the server supports (reference/fhir-servers.md §2.7):
``count()`` sends ``_count=0&_totalMethod=count``; ``patch()`` and ``save(fields=...)`` send a partial resource as
``application/json`` (a merge patch); ``get_or_create()`` and ``resource.create(**criteria)`` send
``POST /Type?criteria``, which the server treats as a conditional create (like If-None-Exist).
fhirclient 4.4.0 (SMART) parses every response into its strict R4 models and follows ``next`` links.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import requests
from fhirclient.client import FHIRClient
from fhirclient.models.bundle import Bundle
from fhirclient.models.observation import Observation
from fhirclient.models.patient import Patient
from fhirclient.server import FHIRServer
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import MultipleResourcesFound, ResourceNotFound

SYSTEM = "urn:oid:1.2.36.146.595.217.0.1"
LOINC = "http://loinc.org"


def observation(patient_id: str, day: int) -> dict[str, object]:
    """A heart rate of ``60 + day`` taken ``day - 1`` days after 2024-03-01 (day 32 is 2024-04-01)."""
    moment = datetime(2024, 3, 1, 8, tzinfo=UTC) + timedelta(days=day - 1)
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "8867-4", "display": "Heart rate"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": moment.isoformat().replace("+00:00", "Z"),
        "valueQuantity": {"value": 60 + day, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
    }


def seed_observations(fhir: httpx.Client, patient_id: str, count: int) -> list[str]:
    """``count`` daily heart rates loaded as one transaction; their ids in date order."""
    entries = [
        {"resource": observation(patient_id, day), "request": {"method": "POST", "url": "Observation"}}
        for day in range(1, count + 1)
    ]
    response = fhir.post("", json={"resourceType": "Bundle", "type": "transaction", "entry": entries})
    assert response.status_code == 200, response.text
    return [e["response"]["location"].split("/")[-3] for e in response.json()["entry"]]


# -- fhirpy ---------------------------------------------------------------------------------------------------


@pytest.fixture
def fhirpy_client(session_base: str) -> SyncFHIRClient:
    return SyncFHIRClient(session_base, requests_config={"timeout": 30})


def test_fhirpy_create_read_update(fhirpy_client: SyncFHIRClient) -> None:
    patient = fhirpy_client.resource(
        "Patient",
        identifier=[{"system": SYSTEM, "value": "fp-1"}],
        name=[{"family": "Fhirpy", "given": ["Ann"]}],
        gender="female",
        birthDate="1980-02-03",
    )
    patient.save()  # POST Patient? (fhirpy always appends the query mark)
    assert patient.id
    assert patient["meta"]["versionId"] == "1"

    read = fhirpy_client.reference("Patient", patient.id).to_resource()
    assert read["name"] == [{"family": "Fhirpy", "given": ["Ann"]}]
    assert fhirpy_client.get("Patient", patient.id)["birthDate"] == "1980-02-03"

    read["active"] = True
    read.save()  # PUT Patient/id
    assert read["meta"]["versionId"] == "2"
    assert fhirpy_client.get("Patient", patient.id)["active"] is True

    read.refresh()  # GET with If-None-Match: a bare version id
    assert read["meta"]["versionId"] == "2"

    read.delete()
    with pytest.raises(ResourceNotFound):
        fhirpy_client.reference("Patient", patient.id).to_resource()


def test_fhirpy_partial_updates_are_merge_patches(fhirpy_client: SyncFHIRClient) -> None:
    patient = fhirpy_client.resource("Patient", name=[{"family": "Merge"}], gender="male", birthDate="1970")
    patient.save()

    patient.patch(gender="other")  # PATCH application/json {"gender": "other"}
    assert patient["meta"]["versionId"] == "2"
    stored = fhirpy_client.get("Patient", patient.id)
    assert stored["gender"] == "other"
    assert stored["name"] == [{"family": "Merge"}]  # untouched by the partial resource
    assert stored["birthDate"] == "1970"

    patient["birthDate"] = "1971-05-06"
    patient["active"] = False
    patient.save(fields=["birthDate"])  # only birthDate is sent
    stored = fhirpy_client.get("Patient", patient.id)
    assert stored["meta"]["versionId"] == "3"
    assert stored["birthDate"] == "1971-05-06"
    assert "active" not in stored

    fhirpy_client.patch("Patient", patient.id, active=True)
    assert fhirpy_client.get("Patient", patient.id)["active"] is True


def test_fhirpy_conditional_create(fhirpy_client: SyncFHIRClient) -> None:
    wanted = fhirpy_client.resource(
        "Patient", identifier=[{"system": SYSTEM, "value": "gc-1"}], name=[{"family": "Once"}]
    )
    search = fhirpy_client.resources("Patient").search(identifier=f"{SYSTEM}|gc-1")

    first, created = search.get_or_create(wanted)  # POST Patient?identifier=...
    assert created is True
    second, created = search.get_or_create(wanted)
    assert created is False
    assert second.id == first.id
    assert search.count() == 1

    # resource.create(**criteria) is the same conditional create
    again = fhirpy_client.resource("Patient", identifier=[{"system": SYSTEM, "value": "gc-1"}])
    again.create(identifier=f"{SYSTEM}|gc-1")
    assert again.id == first.id
    assert search.count() == 1

    # two matches: 412, which fhirpy raises as MultipleResourcesFound; nothing is created
    fhirpy_client.resource("Patient", identifier=[{"system": SYSTEM, "value": "gc-1"}]).save()
    with pytest.raises(MultipleResourcesFound):
        search.get_or_create(wanted)
    assert search.count() == 2


def test_fhirpy_search_count_and_paging(fhirpy_client: SyncFHIRClient, fhir: httpx.Client) -> None:
    patient = fhirpy_client.resource("Patient", name=[{"family": "Pager", "given": ["Pat"]}], gender="female")
    patient.save()
    other = fhirpy_client.resource("Patient", name=[{"family": "Pagerson"}], gender="male")
    other.save()
    ids = seed_observations(fhir, patient.id, 45)
    seed_observations(fhir, other.id, 3)

    patients = fhirpy_client.resources("Patient")
    assert {p.id for p in patients.search(name="pager").fetch_all()} == {patient.id, other.id}
    assert [p.id for p in patients.search(name="pager", gender="female").fetch()] == [patient.id]
    assert patients.search(family__exact="Pager").get().id == patient.id
    assert patients.search(name="pager").count() == 2  # _count=0&_totalMethod=count
    assert patients.search(name="nobody").first() is None

    observations = fhirpy_client.resources("Observation").search(subject=patient)  # subject=Patient/id
    assert observations.count() == 45
    assert observations.search(date__ge="2024-04-01").count() == 14  # days 32..45
    assert observations.search(date__ge="2024-04-01", value_quantity__gt="100").count() == 5  # 101..105
    assert fhirpy_client.resources("Observation").search(code=f"{LOINC}|8867-4").count() == 48

    pages = observations.sort("date").limit(10)
    first = pages.fetch_raw()
    assert len(first["entry"]) == 10
    assert first["total"] == 45
    assert any(link["relation"] == "next" for link in first["link"])
    assert [o.id for o in pages.fetch_all()] == ids  # 5 pages, in date order, none twice
    newest = observations.sort("-date").limit(7).fetch_all()
    assert [o.id for o in newest] == ids[::-1]
    assert [o["valueQuantity"]["value"] for o in newest[:3]] == [105, 104, 103]


def test_fhirpy_conditional_update(fhirpy_client: SyncFHIRClient) -> None:
    # a value with "+" and "&" (sent as %2B, %26) must reach the criteria intact, not as a space or a split
    search = fhirpy_client.resources("Patient").search(identifier=f"{SYSTEM}|cu+1&2")
    resource = fhirpy_client.resource("Patient", identifier=[{"system": SYSTEM, "value": "cu+1&2"}], active=True)
    created, was_created = search.update(resource)  # PUT Patient?identifier=...: no match creates
    assert was_created is True
    resource["active"] = False
    updated, was_created = search.update(resource)  # one match updates it
    assert was_created is False
    assert updated.id == created.id
    assert fhirpy_client.get("Patient", created.id)["active"] is False
    assert search.count() == 1


# -- fhirclient -----------------------------------------------------------------------------------------------


@pytest.fixture
def smart(session_base: str) -> Iterator[FHIRClient]:
    client = FHIRClient(settings={"app_id": "fhir-sandbox-tests", "api_base": session_base})
    yield client
    client.server.session.close()


def test_fhirclient_reads_the_capability_statement(smart: FHIRClient) -> None:
    assert smart.prepare() is True  # an open server: nothing to authorize
    statement = smart.server.capabilityStatement
    assert statement.fhirVersion == "4.0.1"
    assert "Patient" in {r.type for r in statement.rest[0].resource}


def test_fhirclient_create_read_update_search(smart: FHIRClient) -> None:
    server = smart.server
    patient = Patient(
        {
            "resourceType": "Patient",
            "identifier": [{"system": SYSTEM, "value": "smart-1"}],
            "name": [{"family": "Smartson", "given": ["Sam"]}],
            "gender": "male",
            "birthDate": "1966-07-08",
        }
    )
    created = patient.create(server)  # POST Patient
    assert created is not None
    patient_id = created["id"]

    read = Patient.read(patient_id, server)
    assert read.name[0].family == "Smartson"
    assert read.birthDate.isostring == "1966-07-08"
    assert read.meta.versionId == "1"

    read.active = True
    updated = read.update()  # PUT Patient/id on the server it was read from
    assert updated["meta"]["versionId"] == "2"
    assert Patient.read(patient_id, server).active is True

    Patient({"resourceType": "Patient", "name": [{"family": "Smartly"}], "gender": "female"}).create(server)
    found = Patient.where(struct={"family": "smart", "gender": "male"}).perform_resources_iter(server)
    assert [p.id for p in found] == [patient_id]
    by_identifier = Patient.where(struct={"identifier": f"{SYSTEM}|smart-1"}).perform_resources_iter(server)
    assert [p.id for p in by_identifier] == [patient_id]
    both = Patient.where(struct={"name": {"$exact": "Smartly"}}).perform_resources_iter(server)
    assert [p.name[0].family for p in both] == ["Smartly"]

    read.delete()
    with pytest.raises(requests.HTTPError) as gone:
        Patient.read(patient_id, server)
    assert gone.value.response.status_code == 410


def test_fhirclient_follows_next_links(smart: FHIRClient, fhir: httpx.Client) -> None:
    server = smart.server
    patient_id = Patient({"resourceType": "Patient", "name": [{"family": "Pages"}]}).create(server)["id"]
    ids = seed_observations(fhir, patient_id, 45)

    search = Observation.where(struct={"subject": f"Patient/{patient_id}", "_sort": "date", "_count": "10"})
    pages = list(search.perform_iter(server))
    assert [len(page.entry) for page in pages] == [10, 10, 10, 10, 5]
    assert all(page.total == 45 for page in pages)
    assert [o.id for o in search.perform_resources_iter(server)] == ids
    assert [o.valueQuantity.value for o in search.perform_resources_iter(server)][:3] == [61, 62, 63]

    with pytest.deprecated_call():  # fhirclient deprecates the list form, but it still follows next links
        assert [o.id for o in search.perform_resources(server)] == ids


def test_fhirclient_server_without_a_client(session_base: str) -> None:
    server = FHIRServer(None, base_uri=session_base)
    created = server.post_json("Patient", {"resourceType": "Patient", "name": [{"family": "Bare"}]})
    assert created.status_code == 201
    location = created.headers["Location"]
    assert location.startswith(session_base + "/Patient/")
    bundle = Bundle(server.request_json("Patient?family=bare"))
    assert bundle.total == 1
    assert bundle.entry[0].resource.name[0].family == "Bare"
    assert Patient.read_from(location.split("/_history/")[0], server).id == created.json()["id"]
    server.session.close()
