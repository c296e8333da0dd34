"""Search mechanics (R4 search.html): ``_id``, ``_lastUpdated``, OR and AND, POST ``_search``, reference forms,
unknown parameters and ``Prefer: handling``, errors, chaining, ``_has``, compartments, deleted resources, and
session isolation.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from fhir_sandbox.fhir_server.settings import ServerSettings
from fhir_sandbox.server import LocalServer

from .search_support import SearchSession, SessionFactory

LOINC = "http://loinc.org"
MRN = "http://hospital.example.org/mrn"
NOW = "2024-05-01T12:00:00Z"


def _observation(oid: str, subject: str | None, code: str, **extra: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        **extra,
    }
    if subject is not None:
        resource["subject"] = {"reference": subject}
    return resource


RESOURCES = [
    {"resourceType": "Organization", "id": "org", "name": "General Hospital"},
    {
        "resourceType": "Patient",
        "id": "p1",
        "name": [{"family": "Núñez", "given": ["Ana"]}],
        "identifier": [{"system": MRN, "value": "1"}],
        "birthDate": "1985-07-01",
        "managingOrganization": {"reference": "Organization/org"},
    },
    {"resourceType": "Patient", "id": "p2", "name": [{"family": "Smith"}], "birthDate": "1950"},
    {"resourceType": "Patient", "id": "123", "name": [{"family": "Numbers"}]},
    {"resourceType": "Location", "id": "ward", "name": "Nunez Ward"},
    {"resourceType": "Practitioner", "id": "dr", "name": [{"family": "House"}]},
    _observation("o1", "Patient/p1", "1234-5", performer=[{"reference": "Practitioner/dr"}]),
    _observation("o2", "Patient/p1", "9999-9"),
    _observation("o3", "Patient/p2", "1234-5", performer=[{"reference": "Patient/p1"}]),
    _observation("o4", "Location/ward", "1234-5"),
    _observation("o5", "Patient/123", "1234-5"),
    _observation("o6", None, "1234-5"),
    {
        "resourceType": "Condition",
        "id": "c1",
        "subject": {"reference": "Patient/p1"},
        "code": {"text": "Asthma"},
    },
]


@pytest.fixture(scope="module")
def s(new_session: SessionFactory) -> SearchSession:
    return new_session(RESOURCES, now=NOW)


# -- _id and _lastUpdated ------------------------------------------------------------------------------------


def test_id(s: SearchSession) -> None:
    assert s.ids("Observation", {"_id": "o1"}) == {"o1"}
    assert s.ids("Observation", {"_id": "o1,o3,nope"}) == {"o1", "o3"}
    assert s.ids("Observation", [("_id", "o1"), ("_id", "o3")]) == set()
    assert s.ids("Observation", [("_id", "o1,o3"), ("_id", "o3,o4")]) == {"o3"}
    assert s.ids("Observation", {"_id": "p1"}) == set()  # an id of another type


def test_last_updated(s: SearchSession) -> None:
    everything = {r["id"] for r in RESOURCES if r["resourceType"] == "Observation"}
    assert s.ids("Observation", {"_lastUpdated": "2024-05-01"}) == everything  # the session's clock
    assert s.ids("Observation", {"_lastUpdated": "2024"}) == everything
    assert s.ids("Observation", {"_lastUpdated": "ge2024-05-01T12:00:00Z"}) == everything
    assert s.ids("Observation", {"_lastUpdated": "lt2024-05-01"}) == set()
    assert s.ids("Observation", {"_lastUpdated": "gt2024-05-02"}) == set()
    assert s.ids("Observation", {"_lastUpdated": "2024-05-01T14:00+02:00"}) == everything  # the minute 12:00Z
    assert s.ids("Observation", {"_lastUpdated": "2024-05-01T12:00+02:00"}) == set()  # 10:00Z
    stamps = {e["resource"]["id"]: e["resource"]["meta"]["lastUpdated"] for e in s.search("Observation")["entry"]}
    assert s.ids("Observation", {"_lastUpdated": stamps["o1"]}) >= {"o1"}  # an instant is its millisecond
    seeded = max(stamps.values())
    time.sleep(0.01)
    updated = s.http.put("Observation/o6", json=_observation("o6", None, "1234-5", note=[{"text": "edited"}]))
    assert updated.status_code == 200, updated.text
    stamp = updated.json()["meta"]["lastUpdated"]
    assert s.ids("Observation", {"_lastUpdated": f"gt{seeded}"}) == {"o6"}
    assert s.ids("Observation", {"_lastUpdated": stamp}) == {"o6"}
    assert s.ids("Observation", {"_lastUpdated": f"lt{stamp}"}) == everything - {"o6"}
    s.error("Observation", {"_lastUpdated": "last week"})


# -- OR, AND, POST _search -----------------------------------------------------------------------------------


def test_comma_is_or_and_repetition_is_and(s: SearchSession) -> None:
    assert s.ids("Observation", {"code": "9999-9,1234-5", "subject": "Patient/p1"}) == {"o1", "o2"}
    assert s.ids("Observation", [("code", "9999-9"), ("code", "1234-5")]) == set()
    assert s.ids("Observation", [("subject", "Patient/p1,Patient/p2"), ("code", "1234-5")]) == {"o1", "o3"}


@pytest.mark.parametrize(
    "params",
    [
        [("code", "1234-5"), ("_sort", "-_id"), ("_count", "2")],
        [("subject:Patient.name", "nunez")],
        [("_id", "o1,o2"), ("_include", "Observation:patient")],
    ],
)
def test_post_search_returns_what_get_returns(s: SearchSession, params: list[tuple[str, str]]) -> None:
    got = s.search("Observation", params)
    posted = s.http.post("Observation/_search", data=dict(params))
    assert posted.status_code == 200, posted.text
    bundle = posted.json()

    def content(b: dict[str, Any]) -> list[tuple[str, str]]:
        return [(e["search"]["mode"], e["fullUrl"]) for e in b.get("entry", [])]

    assert content(bundle) == content(got)
    assert bundle["total"] == got["total"]
    assert s.link(bundle, "next") == s.link(got, "next")  # paging continues with GET


def test_post_search_combines_url_and_body_parameters(s: SearchSession) -> None:
    posted = s.http.post("Observation/_search?subject=Patient/p1", data={"code": "1234-5"})
    assert posted.status_code == 200, posted.text
    assert [e["resource"]["id"] for e in posted.json()["entry"]] == ["o1"]


def test_every_reference_form_is_the_same(s: SearchSession) -> None:
    expected = {"o5"}
    for value in ("123", "Patient/123", f"{s.base}/Patient/123"):
        assert s.ids("Observation", {"patient": value}) == expected
        assert s.ids("Observation", {"subject:Patient": value.rsplit("/", 1)[-1]}) == expected


# -- unknown parameters, strict handling, errors --------------------------------------------------------------


def test_unknown_parameters_are_ignored_and_left_out_of_the_self_link(s: SearchSession) -> None:
    plain = s.search("Observation", {"code": "1234-5"})
    bundle = s.search("Observation", [("code", "1234-5"), ("shoe-size", "42"), ("_foo", "bar")])
    assert [e["fullUrl"] for e in bundle["entry"] if e["search"]["mode"] == "match"] == [
        e["fullUrl"] for e in plain["entry"]
    ]
    names = [name for name, _ in parse_qsl(urlsplit(s.link(bundle, "self")).query)]
    assert "code" in names and "shoe-size" not in names and "_foo" not in names
    paged = s.search("Observation", [("code", "1234-5"), ("shoe-size", "42"), ("_count", "2")])
    assert "shoe-size" not in s.link(paged, "next")
    assert len(s.match_ids(s.link(paged, "self"))) == 5


def test_strict_handling_rejects_unknown_parameters(s: SearchSession) -> None:
    outcome = s.error("Observation", {"code": "1234-5", "shoe-size": "42"}, headers={"Prefer": "handling=strict"})
    assert "shoe-size" in outcome["issue"][0]["diagnostics"]
    lenient = s.search("Observation", {"code": "1234-5", "shoe-size": "42"}, headers={"Prefer": "handling=lenient"})
    assert lenient["total"] == 5


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("Observation", {"code:below": "1234-5"}),  # unsupported modifier
        ("Observation", {"date": "tomorrow"}),
        ("Observation", {"value-quantity": "heavy"}),
        ("Patient", {"birthdate": "1985-13-01"}),
        ("Patient", {"gender:missing": "maybe"}),
        ("Observation", {"subject:Medication": "x"}),
        ("Observation", {"_count": "many"}),
        ("Observation", {"patient.shoe-size": "42"}),  # a chain to a parameter the target does not have
        ("Observation", {"code.name": "x"}),  # only references chain
        ("Patient", {"_has:Observation:nothing:code": "1234-5"}),
        ("Patient", {"_has:Nope:patient:code": "1234-5"}),
        ("Patient", {"_has:Observation:patient": "1234-5"}),
    ],
)
def test_bad_searches_are_400_with_an_operation_outcome(s: SearchSession, path: str, params: dict[str, str]) -> None:
    s.error(path, params)


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("Observation", {"code-value-quantity": "http://loinc.org|1234-5$gt5"}),  # composite
        ("Location", {"near": "42.25|-83.69|10|km"}),  # special
        ("Patient", {"_text": "diabetes"}),  # full text
    ],
)
def test_r4_parameters_the_server_cannot_evaluate_are_400_not_ignored(
    s: SearchSession, path: str, params: dict[str, str]
) -> None:
    # ignoring them, as unknown parameters are, would answer with every resource of the type
    outcome = s.error(path, params)
    assert outcome["issue"][0]["code"] == "not-supported"
    assert next(iter(params)) in outcome["issue"][0]["diagnostics"]


def test_unknown_resource_type_is_404(s: SearchSession) -> None:
    s.error("Shoe", {"size": "42"}, status=404)


# -- chaining and _has -----------------------------------------------------------------------------------------


def test_chaining(s: SearchSession) -> None:
    assert s.ids("Observation", {"subject:Patient.name": "nunez"}) == {"o1", "o2"}
    assert s.ids("Observation", {"patient.name": "nunez"}) == {"o1", "o2"}
    # subject refers to Patients and Locations: both are searched by name
    assert s.ids("Observation", {"subject.name": "nunez"}) == {"o1", "o2", "o4"}
    assert s.ids("Observation", {"subject:Location.name": "nunez"}) == {"o4"}
    assert s.ids("Observation", {"patient.identifier": f"{MRN}|1"}) == {"o1", "o2"}
    assert s.ids("Observation", {"patient.birthdate": "lt1960"}) == {"o3"}
    assert s.ids("Observation", {"patient.name:exact": "Núñez"}) == {"o1", "o2"}
    assert s.ids("Observation", {"patient.name": "nunez,smith"}) == {"o1", "o2", "o3"}
    assert s.ids("Observation", [("patient.name", "nunez"), ("code", "1234-5")]) == {"o1"}
    assert s.ids("Observation", {"performer:Patient.name": "nunez"}) == {"o3"}
    assert s.ids("Observation", {"patient.name": "nobody"}) == set()


def test_reverse_chaining_has(s: SearchSession) -> None:
    assert s.ids("Patient", {"_has:Observation:patient:code": "1234-5"}) == {"p1", "p2", "123"}
    assert s.ids("Patient", {"_has:Observation:patient:code": "9999-9"}) == {"p1"}
    assert s.ids("Patient", {"_has:Observation:performer:code": "1234-5"}) == {"p1"}
    assert s.ids("Patient", {"_has:Condition:subject:code:text": "asthma"}) == {"p1"}
    assert s.ids("Patient", [("_has:Observation:patient:code", "1234-5"), ("name", "smith")]) == {"p2"}
    assert s.ids("Location", {"_has:Observation:subject:code": "1234-5"}) == {"ward"}
    assert s.ids("Practitioner", {"_has:Observation:performer:_id": "o1"}) == {"dr"}


# -- compartments ----------------------------------------------------------------------------------------------


def test_patient_compartment(s: SearchSession) -> None:
    # o3's performer is p1: the Observation is in p1's compartment too (CompartmentDefinition: subject, performer)
    assert s.ids("Patient/p1/Observation") == {"o1", "o2", "o3"}
    assert s.ids("Patient/p1/Observation", {"code": "1234-5"}) == {"o1", "o3"}
    # negated and missing-value filters inside a patient's scope
    assert s.ids("Patient/p1/Observation", {"code:not": "1234-5"}) == {"o2"}
    assert s.ids("Observation", {"patient": "p1", "code:not": "1234-5"}) == {"o2"}
    assert s.ids("Patient/p1/Observation", {"performer:missing": "true"}) == {"o2"}
    assert s.ids("Patient/p2/Observation") == {"o3"}
    assert s.ids("Patient/p1/Condition") == {"c1"}
    assert s.ids("Patient/nobody/Observation") == set()
    bundle = s.search("Patient/p1/Observation", {"_count": "1"})
    assert s.link(bundle, "self").startswith(f"{s.base}/Patient/p1/Observation")
    assert s.link(bundle, "next").startswith(f"{s.base}/Patient/p1/Observation")
    assert s.ids(s.link(bundle, "next")) | {bundle["entry"][0]["resource"]["id"]} == {"o1", "o2", "o3"}


# -- deletes, updates and sessions -----------------------------------------------------------------------------


def test_deleted_resources_never_match(new_session: SessionFactory) -> None:
    s = new_session(RESOURCES)
    s.delete("Observation/o1")
    s.delete("Patient/p2")
    s.delete("Location/ward")
    assert "o1" not in s.ids("Observation", {"code": "1234-5"})
    assert s.ids("Observation", {"_id": "o1"}) == set()
    assert s.ids("Patient", {"name": "smith"}) == set()
    assert s.ids("Patient/p1/Observation") == {"o2", "o3"}
    assert s.ids("Observation", {"subject:Patient.name": "smith"}) == set()  # the chain leads to a deleted one
    assert s.ids("Observation", {"subject.name": "nunez"}) == {"o2"}
    assert s.ids("Patient", {"_has:Observation:performer:code": "1234-5"}) == {"p1"}
    assert s.ids("Patient", {"_has:Observation:patient:code": "1234-5"}) == {"123"}  # o1 deleted, p2 deleted
    bundle = s.search("Observation", {"_id": "o3", "_include": "Observation:subject"})
    assert [e["resource"]["id"] for e in bundle["entry"]] == ["o3"]  # its deleted subject is not included
    bundle = s.search("Patient", {"_id": "p1", "_revinclude": "Observation:subject"})
    assert sorted(e["resource"]["id"] for e in bundle["entry"]) == ["o2", "p1"]
    assert s.search("Observation", {"_summary": "count"})["total"] == 5


def test_an_update_replaces_what_matches(new_session: SessionFactory) -> None:
    s = new_session(RESOURCES)
    response = s.http.put("Observation/o2", json=_observation("o2", "Patient/p2", "5555-5"))
    assert response.status_code == 200, response.text
    assert s.ids("Observation", {"code": "9999-9"}) == set()
    assert s.ids("Observation", {"code": "5555-5"}) == {"o2"}
    assert s.ids("Patient/p1/Observation") == {"o1", "o3"}
    assert s.ids("Patient/p2/Observation") == {"o2", "o3"}


def test_resources_of_another_session_never_match(new_session: SessionFactory, live_server: Any) -> None:
    mine = new_session(RESOURCES)
    theirs = new_session(
        [
            {"resourceType": "Patient", "id": "p1", "name": [{"family": "Other"}]},
            {"resourceType": "Patient", "id": "intruder", "name": [{"family": "Núñez"}]},
            _observation("o1", "Patient/p1", "7777-7"),
            _observation("x", "Patient/intruder", "1234-5"),
        ]
    )
    assert mine.ids("Patient", {"name": "nunez"}) == {"p1"}
    assert mine.ids("Patient", {"name": "other"}) == set()
    assert mine.ids("Observation", {"code": "7777-7"}) == set()
    assert mine.ids("Observation", {"code": "1234-5"}) == {"o1", "o3", "o4", "o5", "o6"}
    assert mine.ids("Observation", {"patient.name": "nunez"}) == {"o1", "o2"}
    assert mine.ids("Patient/intruder/Observation") == set()
    assert theirs.ids("Observation", {"code": "1234-5"}) == {"x"}
    assert theirs.ids("Patient", {"name": "nunez"}) == {"intruder"}
    assert theirs.ids("Patient/p1/Observation") == {"o1"}
    # nor does the shared default session see either
    default = httpx.get(f"{live_server.url}/fhir/Observation", params={"code": "7777-7"}).json()
    assert default["total"] == 0


# -- sessions over a base population ---------------------------------------------------------------------------

POPULATION = [
    {"resourceType": "Patient", "id": "A", "name": [{"family": "Alpha"}]},
    {"resourceType": "Patient", "id": "B", "name": [{"family": "Beta"}]},
    {"resourceType": "Patient", "id": "C", "name": [{"family": "Gamma"}]},
    _observation("o1", "Patient/A", "1111-1"),
    _observation("o2", "Patient/A", "2222-2"),
    _observation("o3", "Patient/C", "2222-2"),
]


@pytest.fixture(scope="module")
def overlays(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SearchSession, SearchSession]]:
    """Two sessions over a base population, on a private server (base data would leak into other tests).
    The first updates o1 (now Beta's, another code), deletes o2 and deletes Patient C; the second only reads."""
    database = tmp_path_factory.mktemp("overlay") / "fhir.db"
    with LocalServer(ServerSettings(database=str(database))) as server:
        server.repository.bulk_load([dict(r) for r in POPULATION])
        sessions = []
        for name in ("edited", "untouched"):
            response = httpx.post(f"{server.url}/sessions", json={"id": name})
            assert response.status_code == 201, response.text
            sessions.append(SearchSession(server.url, name, response.json()["fhir_base_url"]))
        edited, untouched = sessions
        assert edited.http.put("Observation/o1", json=_observation("o1", "Patient/B", "3333-3")).status_code == 200
        edited.delete("Observation/o2")
        edited.delete("Patient/C")
        yield edited, untouched
        for session in sessions:
            session.http.close()


def _included(s: SearchSession, path: str, params: dict[str, str]) -> list[str]:
    bundle = s.search(path, params)
    return sorted(e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "include")


def test_writes_in_a_session_shadow_the_base_population(overlays: tuple[SearchSession, SearchSession]) -> None:
    edited, _ = overlays
    assert edited.ids("Observation", {"code": "1111-1"}) == set()  # the base version of o1 no longer matches
    assert edited.ids("Observation", {"code": "3333-3"}) == {"o1"}
    assert edited.ids("Observation", {"code": "2222-2"}) == {"o3"}  # o2 deleted
    assert edited.ids("Observation", {"patient": "A"}) == set()
    assert edited.ids("Observation", {"patient": "B"}) == {"o1"}
    assert edited.ids("Patient/A/Observation") == set()
    assert edited.ids("Patient/B/Observation") == {"o1"}
    assert edited.ids("Observation", {"patient.name": "alpha"}) == set()
    assert edited.ids("Observation", {"patient.name": "beta"}) == {"o1"}
    assert edited.ids("Observation", {"patient.name": "gamma"}) == set()  # C deleted
    assert edited.ids("Patient", {"_has:Observation:patient:code": "1111-1"}) == set()
    assert edited.ids("Patient", {"_has:Observation:patient:code": "2222-2"}) == set()
    assert edited.ids("Patient", {"name": "gamma"}) == set()
    assert edited.match_ids("Observation", {"_sort": "code"}) == ["o3", "o1"]


def test_includes_follow_the_version_the_session_sees(overlays: tuple[SearchSession, SearchSession]) -> None:
    edited, untouched = overlays
    assert _included(edited, "Observation", {"_id": "o1", "_include": "Observation:patient"}) == ["B"]
    assert _included(edited, "Patient", {"_id": "A", "_revinclude": "Observation:patient"}) == []
    assert _included(edited, "Patient", {"_id": "B", "_revinclude": "Observation:patient"}) == ["o1"]
    assert _included(edited, "Observation", {"_id": "o3", "_include": "Observation:patient"}) == []  # C deleted
    assert _included(untouched, "Observation", {"_id": "o1", "_include": "Observation:patient"}) == ["A"]
    assert _included(untouched, "Patient", {"_id": "A", "_revinclude": "Observation:patient"}) == ["o1", "o2"]


def test_another_session_still_sees_the_base_population(overlays: tuple[SearchSession, SearchSession]) -> None:
    _, untouched = overlays
    assert untouched.ids("Observation", {"code": "1111-1"}) == {"o1"}
    assert untouched.ids("Observation", {"patient": "A"}) == {"o1", "o2"}
    assert untouched.ids("Patient/C/Observation") == {"o3"}
    assert untouched.ids("Observation", {"patient.name": "gamma"}) == {"o3"}
    assert untouched.ids("Patient", {"_has:Observation:patient:code": "2222-2"}) == {"A", "C"}
