"""Parameters derived from others (a union of them, or their references to one type) have no index rows of their
own: their values are exactly the rows of the parameters they are read from, so nothing is lost by not storing
them twice."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import SYNTHEA
from fhir_sandbox.fhir_server import registry
from fhir_sandbox.fhir_server.search.indexer import Indexer
from fhir_sandbox.fhir_server.search.kinds import PARAM_TYPES
from fhir_sandbox.fixtures import PopulationOptions
from fhir_sandbox.fixtures.facility import facility_resources
from fhir_sandbox.fixtures.generate import generate_patient

REGISTRY = registry()


def _resources() -> list[dict[str, Any]]:
    """A generated patient's chart, its facility, and a real Synthea patient."""
    synthea = json.loads(sorted(SYNTHEA.glob("*.json"))[0].read_text(encoding="utf-8"))
    return [
        *facility_resources(0),
        *generate_patient(PopulationOptions(patients=1, seed=0), 0),
        *(entry["resource"] for entry in synthea["entry"]),
    ]


def _rows_by_param(resource: dict[str, Any]) -> dict[str, set[tuple[Any, ...]]]:
    """The value columns of each stored parameter's index rows of ``resource``, with the row's patient."""
    out: dict[str, set[tuple[Any, ...]]] = {}
    for rows in Indexer(REGISTRY).rows("", resource).values():
        for row in rows:
            out.setdefault(row[3], set()).add(row[4:])
    return out


def test_the_derived_parameters() -> None:
    observation = REGISTRY.for_type("Observation")
    assert observation["combo-code"].stored_as == ("code", "component-code")
    assert observation["combo-value-quantity"].stored_as == ("component-value-quantity", "value-quantity")
    assert (observation["patient"].stored_as, observation["patient"].stored_target) == (("subject",), "Patient")
    assert observation["subject"].stored and observation["code"].stored
    audit = REGISTRY.get("AuditEvent", "patient")
    assert audit is not None and (audit.stored_as, audit.stored_target) == (("agent", "entity"), "Patient")
    encounter = REGISTRY.get("Encounter", "practitioner")
    assert encounter is not None and (encounter.stored_as, encounter.stored_target) == (
        ("participant",),
        "Practitioner",
    )
    # a union with a part no other parameter has is stored: Organization.name is name | alias, phonetic is name
    name = REGISTRY.get("Organization", "name")
    assert name is not None and name.stored
    # the compartment's patient parameter is read from subject
    assert REGISTRY.compartment["Condition"] == ("patient", "asserter")
    assert REGISTRY.compartment_stored["Condition"] == ("subject", "asserter")


def test_a_derived_parameter_is_read_from_stored_parameters_of_its_kind() -> None:
    derived = 0
    for resource_type in REGISTRY.resource_types:
        params = REGISTRY.for_type(resource_type)
        for param in params.values():
            if param.stored:
                continue
            derived += 1
            assert all(params[code].stored and params[code].type == param.type for code in param.stored_as)
            assert param.stored_target is None or param.type == "reference"
    assert derived > 50


@pytest.fixture(scope="module")
def resources() -> list[dict[str, Any]]:
    return _resources()


def test_derived_parameters_have_no_rows_of_their_own(resources: list[dict[str, Any]]) -> None:
    for resource in resources:
        params = REGISTRY.for_type(resource["resourceType"])
        assert all(params[code].stored for code in _rows_by_param(resource))


def test_the_rows_read_hold_exactly_the_derived_parameters_values(resources: list[dict[str, Any]]) -> None:
    """What indexing the derived parameter's own expression would store is what the search reads instead."""
    checked: set[str] = set()
    for resource in resources:
        resource_type = resource["resourceType"]
        stored = _rows_by_param(resource)
        patients = {row[0] for rows in stored.values() for row in rows}
        for param in REGISTRY.for_type(resource_type).values():
            if param.stored:
                continue
            own = {
                (patient, *value)
                for value in PARAM_TYPES[param.type].extract(param.path(resource))
                for patient in patients or {None}
            }
            read = {
                row
                for code in param.stored_as
                for row in stored.get(code, set())
                if param.stored_target is None or row[2] == param.stored_target
            }
            assert own == read, (resource_type, resource["id"], param.code)
            if own:
                checked.add(f"{resource_type}.{param.code}")
    # the generated population's derived values: vital-sign panels' components, every chart's patient references
    assert {"Observation.combo-code", "Observation.combo-value-quantity", "Observation.patient"} <= checked
    assert {"Condition.patient", "Encounter.patient", "MedicationRequest.patient", "Procedure.patient"} <= checked


def test_a_resource_is_in_the_compartment_its_derived_patient_parameter_names() -> None:
    condition = {"resourceType": "Condition", "id": "c", "subject": {"reference": "Patient/p"}}
    assert {row[4] for rows in Indexer(REGISTRY).rows("", condition).values() for row in rows} == {"p"}
    in_a_group = {"resourceType": "Condition", "id": "c", "subject": {"reference": "Group/g"}}
    assert {row[4] for rows in Indexer(REGISTRY).rows("", in_a_group).values() for row in rows} == {None}
