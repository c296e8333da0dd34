"""Real-EHR behaviours (fhir_server/realism.py): Epic's required search parameters, an include limit per page
(Microsoft: 100), and the ``--profile`` presets; and that ``fhir-sandbox serve`` passes the flags through."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fhir_sandbox.cli import app as cli_app
from fhir_sandbox.fhir_server.settings import ServerSettings
from fhir_sandbox.server import LocalServer
from typer.testing import CliRunner

LOINC = "http://loinc.org"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
OBSERVATIONS = 5


def _observation(n: int) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": CATEGORY, "code": "vital-signs"}]}],
        "code": {"coding": [{"system": LOINC, "code": "8867-4"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": f"2024-03-0{n + 1}T08:00:00Z",
        "valueQuantity": {"value": 60 + n, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
    }


@pytest.fixture(scope="module")
def fhir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """The default session of an Epic-like server with an include limit of 2: one patient, five heart rates,
    a condition and an allergy."""
    database = tmp_path_factory.mktemp("realism") / "fhir.db"
    settings = ServerSettings(database=str(database), profile="epic", include_limit=2)
    resources: list[dict[str, Any]] = [
        {"resourceType": "Patient", "id": "p1", "name": [{"family": "Real"}]},
        *(_observation(n) for n in range(OBSERVATIONS)),
        {"resourceType": "Condition", "subject": {"reference": "Patient/p1"}, "code": {"text": "asthma"}},
        {"resourceType": "AllergyIntolerance", "patient": {"reference": "Patient/p1"}, "code": {"text": "nuts"}},
    ]
    entries = [
        {"resource": r, "request": {"method": "PUT", "url": f"Patient/{r['id']}"}}
        if r["resourceType"] == "Patient"
        else {"resource": r, "request": {"method": "POST", "url": r["resourceType"]}}
        for r in resources
    ]
    with LocalServer(settings) as server, httpx.Client(base_url=f"{server.url}/fhir/", timeout=30) as client:
        loaded = client.post("", json={"resourceType": "Bundle", "type": "transaction", "entry": entries})
        assert loaded.status_code == 200, loaded.text
        yield client


def _missing(response: httpx.Response) -> str:
    assert response.status_code == 400, response.text
    (issue,) = response.json()["issue"]
    assert issue["code"] == "required"
    diagnostics: str = issue["diagnostics"]
    assert diagnostics.startswith("Required search parameter missing: ")
    return diagnostics


def test_observation_needs_patient_and_code_or_category(fhir: httpx.Client) -> None:
    assert "patient" in _missing(fhir.get("Observation", params={"code": f"{LOINC}|8867-4"}))
    assert "code or category" in _missing(fhir.get("Observation", params={"patient": "p1"}))
    assert "patient and code or category" in _missing(fhir.get("Observation"))
    # an empty value, a chain or :missing names no patient
    assert "patient" in _missing(fhir.get("Observation", params={"patient": "", "code": "8867-4"}))
    assert "patient" in _missing(fhir.get("Observation", params={"patient.name": "Real", "code": "8867-4"}))
    assert "patient" in _missing(fhir.get("Observation", params={"subject:missing": "false", "code": "8867-4"}))
    # POST _search is the same search
    assert "patient" in _missing(fhir.post("Observation/_search", data={"category": "vital-signs"}))

    for params in (
        {"patient": "p1", "code": f"{LOINC}|8867-4"},
        {"subject": "Patient/p1", "category": "vital-signs"},
        {"patient:Patient": "p1", "code:text": "heart"},
        {"patient": "p1", "category": "vital-signs", "code": "8867-4", "date": "ge2024-03-02"},
    ):
        response = fhir.get("Observation", params=params)
        assert response.status_code == 200, (params, response.text)
    found = fhir.get("Observation", params={"patient": "p1", "category": "vital-signs"}).json()
    assert found["total"] == OBSERVATIONS
    # a compartment search has its patient
    assert fhir.get("Patient/p1/Observation", params={"code": "8867-4"}).json()["total"] == OBSERVATIONS
    assert "code or category" in _missing(fhir.get("Patient/p1/Observation"))


def test_other_clinical_types_need_patient(fhir: httpx.Client) -> None:
    for resource_type in ("Condition", "MedicationRequest", "Procedure", "AllergyIntolerance", "Encounter"):
        assert "patient" in _missing(fhir.get(resource_type))
        assert fhir.get(resource_type, params={"patient": "p1"}).status_code == 200
    assert fhir.get("Condition", params={"subject": "Patient/p1"}).json()["total"] == 1
    # AllergyIntolerance has no subject parameter: subject=... names no patient there
    assert "patient" in _missing(fhir.get("AllergyIntolerance", params={"subject": "Patient/p1"}))
    # types outside the list search freely; reads need nothing
    assert fhir.get("Patient", params={"name": "Real"}).json()["total"] == 1
    assert fhir.get("Organization").status_code == 200
    observation_id = fhir.get("Observation", params={"patient": "p1", "code": "8867-4"}).json()["entry"][0]
    assert fhir.get(f"Observation/{observation_id['resource']['id']}").status_code == 200


def test_included_resources_are_capped_per_page_with_an_outcome_entry(fhir: httpx.Client) -> None:
    bundle = fhir.get("Patient", params={"_id": "p1", "_revinclude": "Observation:patient"}).json()
    modes = [e["search"]["mode"] for e in bundle["entry"]]
    assert modes == ["match", "include", "include", "outcome"]
    assert bundle["total"] == 1  # total counts matches only
    (issue,) = bundle["entry"][-1]["resource"]["issue"]
    assert issue["severity"] == "warning" and issue["code"] == "incomplete"
    assert "at most 2 included" in issue["diagnostics"] and f"{OBSERVATIONS - 2} more" in issue["diagnostics"]

    # under the limit: nothing is said
    small = fhir.get("Observation", params={"patient": "p1", "code": "8867-4", "_include": "Observation:patient"})
    assert [e["search"]["mode"] for e in small.json()["entry"]] == ["match"] * OBSERVATIONS + ["include"]

    # the notice joins the outcome entry that unknown parameters already make
    noisy = fhir.get("Patient", params={"_id": "p1", "_revinclude": "Observation:patient", "shoe-size": "9"}).json()
    outcome = [e for e in noisy["entry"] if e["search"]["mode"] == "outcome"]
    assert len(outcome) == 1
    assert [i["code"] for i in outcome[0]["resource"]["issue"]] == ["not-supported", "incomplete"]


def test_profiles_preset_settings_and_explicit_ones_win() -> None:
    hapi = ServerSettings(profile="hapi")
    assert (hapi.default_page_size, hapi.max_page_size, hapi.include_limit, hapi.require_patient) == (
        20,
        200,
        1000,
        False,
    )
    assert ServerSettings(profile="epic").require_patient is True
    assert ServerSettings(profile="epic", require_patient=False).require_patient is False
    assert ServerSettings(profile="hapi", include_limit=100).include_limit == 100
    plain = ServerSettings()
    assert (plain.require_patient, plain.include_limit, plain.profile) == (False, None, None)


def test_serve_passes_the_realism_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **_: served.append(app))
    database = str(tmp_path / "x.db")
    runner = CliRunner()
    result = runner.invoke(cli_app, ["serve", "--database", database, "--profile", "epic", "--include-limit", "100"])
    assert result.exit_code == 0, result.output
    settings = served[-1].state.service.settings
    assert (settings.require_patient, settings.include_limit, settings.max_page_size) == (True, 100, 200)

    result = runner.invoke(
        cli_app, ["serve", "--database", database, "--profile", "hapi", "--require-patient", "--max-page-size", "50"]
    )
    assert result.exit_code == 0, result.output
    settings = served[-1].state.service.settings
    assert (settings.require_patient, settings.include_limit, settings.max_page_size) == (True, 1000, 50)

    result = runner.invoke(cli_app, ["serve", "--database", database, "--profile", "cerner"])
    assert result.exit_code == 2 and "profile" in result.output
