"""Computed expectations, read through the FHIR API of a live server as of the scenario's ``now``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fhir_sandbox.fhir_server.client import FhirClient
from fhir_sandbox.fixtures import LAB_CODE_SYSTEM, MRN_SYSTEM
from fhir_sandbox.graders.answers import parse_instant
from fhir_sandbox.graders.values import ValuesUnavailable, compute_values, find_patient
from fhir_sandbox.scenarios.model import PatientRef, Scenario
from fhir_sandbox.server import LocalServer

NOW = "2023-11-13T10:15:00+00:00"
MRN, OTHER_MRN, TWIN_MRN = "T0000001", "T0000002", "T0000099"
LOINC_K = "2823-3"


def patient(mrn: str, birth: str, family: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": MRN_SYSTEM, "value": mrn}],
        "name": [{"family": family, "given": ["Test"]}],
        "birthDate": birth,
    }


def potassium(subject: str, when: str, value: float, status: str = "final") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": status,
        "code": {
            "coding": [
                {"system": LAB_CODE_SYSTEM, "code": "K", "display": "Potassium"},
                {"system": "http://loinc.org", "code": LOINC_K},
            ]
        },
        "subject": {"reference": subject},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"},
    }


def medication(subject: str, status: str) -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": {"text": "Potassium chloride 20 mEq"},
        "subject": {"reference": subject},
    }


A, B = "urn:uuid:" + str(uuid.uuid4()), "urn:uuid:" + str(uuid.uuid4())
CHART: list[tuple[str | None, dict[str, Any]]] = [
    (A, patient(MRN, "1950-11-13", "Today")),  # 73 today
    (B, patient(OTHER_MRN, "1950-11-14", "Tomorrow")),  # 72 until tomorrow
    (None, patient(TWIN_MRN, "1960-01-01", "One")),
    (None, patient(TWIN_MRN, "1960-01-01", "Two")),
    (None, potassium(A, "2023-11-01T08:00:00Z", 4.1)),  # outside any window
    (None, potassium(A, "2023-11-11T08:00:00Z", 3.0)),
    (None, potassium(A, "2023-11-12T08:00:00+01:00", 3.6)),
    (None, potassium(A, "2023-11-13T06:30:00Z", 3.2)),  # the latest
    (None, potassium(A, "2023-11-13T09:00:00Z", 2.0, status="entered-in-error")),
    (None, potassium(A, "2023-11-13T12:00:00Z", 5.0)),  # after now
    (None, potassium(B, "2023-11-13T07:00:00Z", 4.8)),
    (None, medication(A, "active")),
    (None, medication(A, "stopped")),
    (None, medication(B, "active")),
]


@pytest.fixture(scope="module")
def client(live_server: LocalServer) -> Iterator[FhirClient]:
    """A session at NOW holding the chart (shared by this module's tests, which only read)."""
    with httpx.Client(timeout=30, verify=False) as http:
        created = http.post(f"{live_server.url}/sessions", json={"now": NOW, "label": "test_values"})
        created.raise_for_status()
        session = created.json()
        fhir = FhirClient(session["fhir_base_url"], http)
        entries = [
            {
                **({"fullUrl": full_url} if full_url else {}),
                "resource": resource,
                "request": {"method": "POST", "url": resource["resourceType"]},
            }
            for full_url, resource in CHART
        ]
        reply = fhir.transaction({"resourceType": "Bundle", "type": "transaction", "entry": entries})
        assert reply.ok, reply.body
        yield fhir
        http.delete(f"{live_server.url}/sessions/{session['id']}")


def values(client: FhirClient, specs: dict[str, Any], mrn: str | None = MRN) -> dict[str, Any]:
    scenario = Scenario.model_validate(
        {
            "id": "test.values",
            "category": "test",
            "title": "values",
            "instruction": "x",
            "now": NOW,
            "patient": {"mrn": mrn} if mrn else None,
            "expectations": {"values": specs, "checks": [{"name": "c", "type": "no_writes"}]},
            "reward_basis": ["c"],
            "reference": {"steps": [{"tool": "finish"}]},
        }
    )
    found = find_patient(client, scenario.patient) if scenario.patient else None
    return compute_values(scenario, client, found)


def point(value: float, when: str) -> tuple[float, Any]:
    return value, parse_instant(when)


def as_points(items: list[dict[str, Any]]) -> list[tuple[float, Any]]:
    return [(item["value"], parse_instant(item["time"])) for item in items]


def test_latest_without_window(client: FhirClient) -> None:
    got = values(client, {"k": {"kind": "latest", "code": "K"}})["k"]
    assert (got["value"], parse_instant(got["time"])) == point(3.2, "2023-11-13T06:30:00Z")
    assert got["unit"] == "mmol/L"
    assert client.read("Observation", got["id"]).body["valueQuantity"]["value"] == 3.2


def test_latest_by_system_and_code(client: FhirClient) -> None:
    got = values(client, {"k": {"kind": "latest", "code": f"http://loinc.org|{LOINC_K}"}})["k"]
    assert got["value"] == 3.2


def test_latest_within_window(client: FhirClient) -> None:
    got = values(
        client,
        {
            "four_hours": {"kind": "latest", "code": "K", "within_hours": 4},
            "one_hour": {"kind": "latest", "code": "K", "within_hours": 1},  # only the erroneous and future ones
            "unknown": {"kind": "latest", "code": "NOPE"},
        },
    )
    assert got["four_hours"]["value"] == 3.2
    assert got["one_hour"] is None
    assert got["unknown"] is None


def test_mean_within_window(client: FhirClient) -> None:
    got = values(
        client,
        {
            "day": {"kind": "mean", "code": "K", "within_hours": 24},
            "two_days": {"kind": "mean", "code": "K", "within_hours": 48},
            "three_days": {"kind": "mean", "code": "K", "within_hours": 72},
            "hour": {"kind": "mean", "code": "K", "within_hours": 1},
        },
    )
    assert got["day"] == 3.2
    assert got["two_days"] == pytest.approx(3.4)
    assert got["three_days"] == pytest.approx((3.0 + 3.6 + 3.2) / 3, abs=1e-6)
    assert got["hour"] is None


def test_series_oldest_first(client: FhirClient) -> None:
    got = values(
        client,
        {
            "all": {"kind": "series", "code": "K"},
            "last_two": {"kind": "series", "code": "K", "last": 2},
            "window": {"kind": "series", "code": "K", "within_hours": 72},
            "many": {"kind": "series", "code": "K", "last": 50},
        },
    )
    assert as_points(got["all"]) == [
        point(4.1, "2023-11-01T08:00:00Z"),
        point(3.0, "2023-11-11T08:00:00Z"),
        point(3.6, "2023-11-12T07:00:00Z"),
        point(3.2, "2023-11-13T06:30:00Z"),
    ]
    assert as_points(got["last_two"]) == as_points(got["all"])[-2:]
    assert as_points(got["window"]) == as_points(got["all"])[1:]
    assert got["many"] == got["all"]
    assert all(set(item) == {"value", "unit", "time", "id"} for item in got["all"])


def test_count_and_exists(client: FhirClient) -> None:
    got = values(
        client,
        {
            "all_orders": {"kind": "count", "resource": "MedicationRequest"},
            "active": {"kind": "count", "resource": "MedicationRequest", "params": {"status": "active"}},
            "has_orders": {"kind": "exists", "resource": "MedicationRequest"},
            "has_conditions": {"kind": "exists", "resource": "Condition"},
            "labs": {"kind": "count", "resource": "Observation", "params": {"code": "K"}},
        },
    )
    assert got == {"all_orders": 2, "active": 1, "has_orders": True, "has_conditions": False, "labs": 6}


def test_age_on_and_before_the_birthday(client: FhirClient) -> None:
    got = values(
        client,
        {
            "age": {"kind": "age"},
            "other_age": {"kind": "age", "patient": {"mrn": OTHER_MRN}},
        },
    )
    assert got == {"age": 73, "other_age": 72}


def test_formula_and_table_use_earlier_values(client: FhirClient) -> None:
    table_rows = [{"below": 3.0, "value": "40 mEq"}, {"at_most": 3.2, "value": "20 mEq"}]
    got = values(
        client,
        {
            "k": {"kind": "latest", "code": "K"},
            "deficit": {"kind": "formula", "expression": "((4.0 - %k.value) / 0.1 * 10).round(0)"},
            "dose": {"kind": "table", "input": "%k.value", "rows": table_rows, "otherwise": "none"},
            "dose_low": {"kind": "table", "input": "2.9", "rows": table_rows, "otherwise": "none"},
            "dose_edge": {"kind": "table", "input": "3.0", "rows": table_rows, "otherwise": "none"},
            "dose_high": {"kind": "table", "input": "%k.value + 1", "rows": table_rows, "otherwise": "none"},
            "dose_empty": {"kind": "table", "input": "%k.missing", "rows": table_rows, "otherwise": "none"},
            "dose_no_lab": {
                "kind": "table",
                "input": "%k.missing",
                "rows": table_rows,
                "otherwise": "none",
                "missing": "no result",
            },
        },
    )
    assert got["deficit"] == 80
    assert got["dose"] == "20 mEq"  # 3.2 <= 3.2
    assert got["dose_low"] == "40 mEq"  # 2.9 < 3.0: the first row wins
    assert got["dose_edge"] == "20 mEq"  # 3.0 is not below 3.0
    assert got["dose_high"] == "none"
    assert got["dose_empty"] is None  # no input: `missing`, which defaults to null (not `otherwise`)
    assert got["dose_no_lab"] == "no result"


def test_value_about_another_patient(client: FhirClient) -> None:
    got = values(
        client,
        {
            "mine": {"kind": "latest", "code": "K"},
            "theirs": {"kind": "latest", "code": "K", "patient": {"mrn": OTHER_MRN}},
            "their_orders": {"kind": "count", "resource": "MedicationRequest", "patient": {"mrn": OTHER_MRN}},
        },
    )
    assert got["mine"]["value"] == 3.2
    assert got["theirs"]["value"] == 4.8
    assert got["their_orders"] == 1


def test_values_of_a_lookup_without_patient(client: FhirClient) -> None:
    got = values(client, {"theirs": {"kind": "age", "patient": {"mrn": OTHER_MRN}}}, mrn=None)
    assert got == {"theirs": 72}
    with pytest.raises(ValuesUnavailable, match="needs the scenario's patient"):
        values(client, {"k": {"kind": "latest", "code": "K"}}, mrn=None)


def test_find_patient(client: FhirClient) -> None:
    assert find_patient(client, PatientRef(mrn=MRN))["name"][0]["family"] == "Today"
    with pytest.raises(ValuesUnavailable, match="0 patients have MRN NOBODY"):
        find_patient(client, PatientRef(mrn="NOBODY"))
    with pytest.raises(ValuesUnavailable, match=f"2 patients have MRN {TWIN_MRN}"):
        find_patient(client, PatientRef(mrn=TWIN_MRN))
    with pytest.raises(ValuesUnavailable, match="0 patients"):
        find_patient(client, PatientRef(mrn=MRN, system="http://other.example.org/mrn"))


def test_a_value_about_a_missing_or_ambiguous_patient_is_unavailable(client: FhirClient) -> None:
    with pytest.raises(ValuesUnavailable, match=r"value 'theirs'.*2 patients"):
        values(client, {"theirs": {"kind": "age", "patient": {"mrn": TWIN_MRN}}})
    with pytest.raises(ValuesUnavailable, match=r"value 'theirs'.*0 patients"):
        values(client, {"theirs": {"kind": "latest", "code": "K", "patient": {"mrn": "NOBODY"}}})


def test_a_broken_formula_is_unavailable_not_a_crash(client: FhirClient) -> None:
    with pytest.raises(ValuesUnavailable, match=r"value 'deficit'.*FHIRPath"):
        values(client, {"deficit": {"kind": "formula", "expression": "%undefined_value * 2"}})


def test_values_are_as_of_the_scenarios_now(live_server: LocalServer, client: FhirClient) -> None:
    # the same chart at a later now: the observation that was in the future is now the latest
    scenario = Scenario.model_validate(
        {
            "id": "test.values.later",
            "category": "test",
            "title": "values",
            "instruction": "x",
            "now": "2023-11-13T13:00:00+00:00",
            "patient": {"mrn": MRN},
            "expectations": {
                "values": {"k": {"kind": "latest", "code": "K"}},
                "checks": [{"name": "c", "type": "no_writes"}],
            },
            "reward_basis": ["c"],
            "reference": {"steps": [{"tool": "finish"}]},
        }
    )
    got = compute_values(scenario, client, find_patient(client, PatientRef(mrn=MRN)))
    assert got["k"]["value"] == 5.0
