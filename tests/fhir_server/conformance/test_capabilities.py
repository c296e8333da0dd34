"""capabilities (R4 http.html#capabilities): GET [base]/metadata describes what the server really does."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fhir.resources.R4B.capabilitystatement import CapabilityStatement

from .rest_support import FHIR_JSON, post_bundle

# R4 value sets the statement's codes come from (TypeRestfulInteraction, SystemRestfulInteraction, SearchParamType)
TYPE_INTERACTIONS = {
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
}
SYSTEM_INTERACTIONS = {"transaction", "batch", "search-system", "history-system"}
PARAM_TYPES = {"number", "date", "string", "token", "reference", "composite", "quantity", "uri", "special"}
# A value of each search parameter type that any server must be able to parse
SAMPLE_VALUES = {
    "number": "1",
    "date": "2020-01-01",
    "string": "x",
    "token": "x",
    "reference": "Patient/x",
    "quantity": "5.4|http://unitsofmeasure.org|mg",
    "uri": "http://example.org/x",
}
RESULT_PARAMS = {"_count", "_offset", "_sort", "_include", "_revinclude", "_summary", "_elements", "_total"}


@pytest.fixture(scope="module")
def statement(live_server: Any) -> dict[str, Any]:
    """The statement of the default base (the same for every base but ``implementation.url``)."""
    response = httpx.get(f"{live_server.url}/fhir/metadata", verify=False)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(FHIR_JSON)
    body: dict[str, Any] = response.json()
    return body


def test_metadata_is_an_r4_instance_statement(statement: dict[str, Any]) -> None:
    assert statement["resourceType"] == "CapabilityStatement"
    assert statement["status"] == "active"
    assert statement["kind"] == "instance"
    assert statement["fhirVersion"] == "4.0.1"
    assert statement["date"]
    # a JSON-only server claims JSON and nothing else (Inferno checks the JSON claim)
    assert {"json", "application/fhir+json"} <= set(statement["format"])
    assert not [f for f in statement["format"] if "xml" in f]
    assert "application/json-patch+json" in statement["patchFormat"]


def test_a_session_statement_names_the_session_base(fhir: httpx.Client, session_base: str) -> None:
    response = fhir.get("metadata")
    assert response.status_code == 200
    assert response.json()["implementation"]["url"] == session_base


def test_the_r4b_model_accepts_the_statement(statement: dict[str, Any]) -> None:
    parsed = CapabilityStatement.model_validate(statement)
    assert parsed.fhirVersion == "4.0.1"
    assert parsed.rest[0].mode == "server"


def test_the_system_level_interactions_are_declared(statement: dict[str, Any]) -> None:
    rest = statement["rest"]
    assert len(rest) == 1 and rest[0]["mode"] == "server"
    codes = {i["code"] for i in rest[0]["interaction"]}
    assert codes <= SYSTEM_INTERACTIONS
    assert {"transaction", "batch", "history-system"} <= codes


def test_every_type_declares_interactions_versioning_and_conditional_flags(statement: dict[str, Any]) -> None:
    resources = statement["rest"][0]["resource"]
    types = [r["type"] for r in resources]
    assert len(types) == len(set(types))
    clinical = {"Patient", "Observation", "Condition", "MedicationRequest", "Encounter", "Procedure"}
    assert clinical | {"AllergyIntolerance", "DiagnosticReport", "Practitioner", "Organization"} <= set(types)
    for resource in resources:
        where = resource["type"]
        codes = [i["code"] for i in resource["interaction"]]
        assert set(codes) == TYPE_INTERACTIONS, where
        assert len(codes) == len(set(codes)), where
        assert resource["versioning"] == "versioned-update", where
        assert resource["readHistory"] is True, where
        assert resource["updateCreate"] is True, where
        assert resource["conditionalCreate"] is True, where
        assert resource["conditionalUpdate"] is True, where
        assert resource["conditionalDelete"] == "single", where
        assert resource["conditionalRead"] == "not-supported", where


def test_every_search_param_has_a_name_and_an_r4_type(statement: dict[str, Any]) -> None:
    for resource in statement["rest"][0]["resource"]:
        names = [p["name"] for p in resource["searchParam"]]
        assert len(names) == len(set(names)), resource["type"]
        for param in resource["searchParam"]:
            assert param["type"] in PARAM_TYPES, (resource["type"], param)
            if not param["name"].startswith("_"):
                assert param["definition"].startswith("http://hl7.org/fhir/SearchParameter/"), param


def test_the_usual_clinical_params_are_declared_with_their_types(statement: dict[str, Any]) -> None:
    declared = {r["type"]: {p["name"]: p["type"] for p in r["searchParam"]} for r in statement["rest"][0]["resource"]}
    expected = {
        "Patient": {"identifier": "token", "name": "string", "birthdate": "date", "gender": "token"},
        "Observation": {
            "patient": "reference",
            "subject": "reference",
            "code": "token",
            "category": "token",
            "date": "date",
            "value-quantity": "quantity",
        },
        "MedicationRequest": {"patient": "reference", "intent": "token", "status": "token", "authoredon": "date"},
        "Condition": {"patient": "reference", "clinical-status": "token", "onset-date": "date"},
    }
    for resource_type, params in expected.items():
        for name, kind in params.items():
            assert declared[resource_type].get(name) == kind, (resource_type, name)
        assert declared[resource_type]["_id"] == "token"
        assert declared[resource_type]["_lastUpdated"] == "date"


def test_every_declared_type_is_served(fhir: httpx.Client, statement: dict[str, Any]) -> None:
    """One batch with a search per declared type: every one answers a searchset (no 404 for a declared type)."""
    types = [r["type"] for r in statement["rest"][0]["resource"]]
    entries = [{"request": {"method": "GET", "url": f"{t}?_count=1"}} for t in types]
    response = post_bundle(fhir, "batch", entries)
    assert response.status_code == 200, response.text
    results = response.json()["entry"]
    assert len(results) == len(types)
    failed = [
        (t, e["response"]["status"]) for t, e in zip(types, results, strict=True) if e["response"]["status"] != "200 OK"
    ]
    assert failed == []
    assert all(e["resource"]["type"] == "searchset" for e in results)


@pytest.mark.parametrize("resource_type", ["Patient", "Observation", "Condition", "MedicationRequest", "Encounter"])
def test_declared_search_params_are_accepted_under_strict_handling(
    fhir: httpx.Client, statement: dict[str, Any], resource_type: str
) -> None:
    """A declared parameter is really supported: ``Prefer: handling=strict`` rejects unknown ones, not these."""
    declared = next(r for r in statement["rest"][0]["resource"] if r["type"] == resource_type)["searchParam"]
    entries = []
    for param in declared:
        name, kind = param["name"], param["type"]
        if name in RESULT_PARAMS:
            continue
        assert kind in SAMPLE_VALUES, param  # composite/special parameters must not be declared if unsupported
        entries.append({"request": {"method": "GET", "url": f"{resource_type}?{name}={SAMPLE_VALUES[kind]}"}})
    response = post_bundle(fhir, "batch", entries, headers={"Prefer": "handling=strict"})
    assert response.status_code == 200, response.text
    statuses = [e["response"]["status"] for e in response.json()["entry"]]
    rejected = [
        (entry["request"]["url"], result)
        for entry, result in zip(entries, response.json()["entry"], strict=True)
        if result["response"]["status"] != "200 OK"
    ]
    assert rejected == [], rejected
    assert len(statuses) == len(entries) > 10


def test_an_undeclared_param_is_rejected_under_strict_handling(fhir: httpx.Client) -> None:
    response = fhir.get("Patient", params={"not-a-param": "x"}, headers={"Prefer": "handling=strict"})
    assert response.status_code == 400
    assert "not-a-param" in response.json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize("accept", ["application/fhir+json", "application/json", "*/*"])
def test_metadata_is_served_as_fhir_json_for_json_accepts(fhir: httpx.Client, accept: str) -> None:
    response = fhir.get("metadata", headers={"Accept": accept})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(FHIR_JSON)
    assert response.json()["resourceType"] == "CapabilityStatement"


@pytest.mark.parametrize("fmt", ["json", "application/fhir+json", "application/json"])
def test_format_parameter_json_is_honoured(fhir: httpx.Client, fmt: str) -> None:
    response = fhir.get("metadata", params={"_format": fmt})
    assert response.status_code == 200
    assert response.json()["fhirVersion"] == "4.0.1"
