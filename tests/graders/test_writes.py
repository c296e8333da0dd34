"""Write checks: pure functions of the episode's write log and final states."""

from __future__ import annotations

from typing import Any

import pytest
from fhir_sandbox.graders.inputs import GradingInput, Write
from fhir_sandbox.graders.outcome import Verdict
from fhir_sandbox.graders.writes import WRITE_CHECKS, patient_ids
from fhir_sandbox.scenarios.model import Check
from pydantic import TypeAdapter

_CHECK = TypeAdapter(Check)
NOW = "2023-11-13T10:15:00+00:00"
PATIENT = {"resourceType": "Patient", "id": "p1"}


def med(rid: str = "m1", patient: str = "p1", **extra: Any) -> dict[str, Any]:
    resource = {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": "active",
        "intent": "order",
        "subject": {"reference": f"Patient/{patient}"},
        "medicationCodeableConcept": {"text": "Magnesium sulfate 2 g IV"},
        "authoredOn": "2023-11-13T10:20:00+00:00",
        "dosageInstruction": [
            {
                "route": {"text": "intravenous"},
                "doseAndRate": [{"doseQuantity": {"value": 2, "unit": "g"}}],
            }
        ],
    }
    return resource | extra


def obs(rid: str = "o1", patient: str = "p1", value: float = 1.6) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "subject": {"reference": f"Patient/{patient}"},
        "valueQuantity": {"value": value, "unit": "mg/dL"},
    }


def write(
    resource: dict[str, Any] | None,
    kind: str = "create",
    seq: int = 1,
    version: int = 1,
    prior: dict[str, Any] | None = None,
    type_: str | None = None,
    id_: str | None = None,
) -> Write:
    source = resource or prior or {}
    return Write(
        seq=seq,
        kind=kind,  # type: ignore[arg-type]
        type=type_ or source["resourceType"],
        id=id_ or source["id"],
        version=version,
        status=201 if kind == "create" else 200,
        resource=resource,
        prior=prior,
    )


def data(*writes: Write, values: dict[str, Any] | None = None, patient: Any = PATIENT) -> GradingInput:
    return GradingInput(answer=None, writes=list(writes), values=values or {}, patient=patient, now=NOW)


def verdict(check: dict[str, Any], grading: GradingInput) -> Verdict:
    parsed = _CHECK.validate_python({"name": "c", **check})
    result: Verdict = WRITE_CHECKS[type(parsed)](parsed, grading)
    return result


# -- write_count ------------------------------------------------------------------------------------------------------


def test_write_count_all() -> None:
    grading = data(write(med()), write(obs(), seq=2))
    assert verdict({"type": "write_count", "count": 2}, grading).passed
    result = verdict({"type": "write_count", "count": 1}, grading)
    assert not result.passed
    assert "2 write(s), expected 1" in result.reason
    assert "MedicationRequest/m1" in result.reason


def test_write_count_by_resource() -> None:
    grading = data(write(med()), write(med("m2"), seq=2), write(obs(), seq=3))
    assert verdict({"type": "write_count", "count": 2, "resource": "MedicationRequest"}, grading).passed
    assert verdict({"type": "write_count", "count": 1, "resource": "Observation"}, grading).passed
    assert not verdict({"type": "write_count", "count": 1, "resource": "MedicationRequest"}, grading).passed
    assert verdict({"type": "write_count", "count": 0, "resource": "ServiceRequest"}, grading).passed


def test_write_count_by_methods() -> None:
    grading = data(
        write(med()),
        write(med(status="stopped"), kind="update", seq=2, version=2, prior=med()),
        write(None, kind="delete", seq=3, version=2, prior=obs()),
    )
    assert verdict({"type": "write_count", "count": 1, "methods": ["create"]}, grading).passed
    assert verdict({"type": "write_count", "count": 2, "methods": ["update", "delete"]}, grading).passed
    result = verdict({"type": "write_count", "count": 0, "methods": ["update", "patch"]}, grading)
    assert not result.passed and "update/patch" in result.reason
    assert verdict(
        {"type": "write_count", "count": 1, "methods": ["update"], "resource": "MedicationRequest"}, grading
    ).passed


def test_write_count_computed_from_values() -> None:
    grading = data(write(med()), write(med("m2"), seq=2), values={"orders": 2, "label": "two"})
    assert verdict({"type": "write_count", "count": {"expr": "%orders"}}, grading).passed
    assert not verdict({"type": "write_count", "count": {"expr": "%orders - 1"}}, grading).passed
    result = verdict({"type": "write_count", "count": {"expr": "%label"}}, grading)
    assert not result.passed and "is not a number" in result.reason


def test_write_count_zero_on_no_writes() -> None:
    assert verdict({"type": "write_count", "count": 0}, data()).passed
    assert not verdict({"type": "write_count", "count": 1}, data()).passed


# -- write_fields -----------------------------------------------------------------------------------------------------


def fields(grading: GradingInput, *assertions: dict[str, Any], **extra: Any) -> Verdict:
    return verdict(
        {"type": "write_fields", "resource": "MedicationRequest", "fields": list(assertions)} | extra, grading
    )


def test_fields_equals() -> None:
    grading = data(write(med()))
    assert fields(grading, {"path": "status", "equals": "active"}).passed
    assert fields(grading, {"path": "dosageInstruction[0].doseAndRate[0].doseQuantity.value", "equals": 2.0}).passed
    result = fields(grading, {"path": "status", "equals": "draft"})
    assert not result.passed
    assert "MedicationRequest/m1" in result.reason and "status" in result.reason and "'draft'" in result.reason


def test_fields_equals_expression_over_values() -> None:
    grading = data(write(med()), values={"dose": {"value": 2, "unit": "g"}})
    dose = "dosageInstruction[0].doseAndRate[0].doseQuantity"
    assert fields(grading, {"path": f"{dose}.value", "equals": {"expr": "%dose.value"}}).passed
    assert fields(grading, {"path": "subject.reference", "equals": {"expr": "'Patient/' + %patient.id"}}).passed
    grading = data(write(med()), values={"dose": {"value": 4, "unit": "g"}})
    assert not fields(grading, {"path": f"{dose}.value", "equals": {"expr": "%dose.value"}}).passed


def test_fields_equals_booleans_are_not_numbers() -> None:
    grading = data(write(med(doNotPerform=False, priorityCount=1)))
    assert fields(grading, {"path": "doNotPerform", "equals": False}).passed
    assert not fields(grading, {"path": "doNotPerform", "equals": 0}).passed
    assert not fields(grading, {"path": "priorityCount", "equals": True}).passed
    assert fields(grading, {"path": "priorityCount", "equals": 1.0}).passed
    assert not fields(grading, {"path": "doNotPerform", "one_of": [0, "false"]}).passed


def test_fields_approx_with_tolerance() -> None:
    grading = data(write(med()))
    path = "dosageInstruction[0].doseAndRate[0].doseQuantity.value"
    assert fields(grading, {"path": path, "approx": 2.4, "tolerance": 0.5}).passed
    assert fields(grading, {"path": path, "approx": {"expr": "1.5 + 0.5"}}).passed
    result = fields(grading, {"path": path, "approx": 2.6, "tolerance": 0.5})
    assert not result.passed and "expected 2.6" in result.reason
    assert not fields(grading, {"path": "status", "approx": 2}).passed


def test_fields_same_instant_with_tolerance_minutes() -> None:
    grading = data(write(med()))
    assert fields(grading, {"path": "authoredOn", "same_instant": "2023-11-13T11:20:00+01:00"}).passed
    assert fields(grading, {"path": "authoredOn", "same_instant": {"expr": "%now"}, "tolerance_minutes": 5}).passed
    result = fields(grading, {"path": "authoredOn", "same_instant": {"expr": "%now"}, "tolerance_minutes": 4})
    assert not result.passed and "authoredOn" in result.reason
    no_zone = fields(grading, {"path": "authoredOn", "same_instant": "2023-11-13T10:20:00"})
    assert not no_zone.passed and "not an instant" in no_zone.reason


def test_fields_contains_is_case_insensitive() -> None:
    grading = data(write(med()))
    assert fields(grading, {"path": "medicationCodeableConcept.text", "contains": "MAGNESIUM"}).passed
    result = fields(grading, {"path": "medicationCodeableConcept.text", "contains": "potassium"})
    assert not result.passed and "does not contain 'potassium'" in result.reason


def test_fields_one_of() -> None:
    grading = data(write(med()))
    assert fields(grading, {"path": "dosageInstruction[0].route.text", "one_of": ["IV", "intravenous"]}).passed
    assert fields(
        grading, {"path": "dosageInstruction[0].doseAndRate[0].doseQuantity.value", "one_of": [1, 2.0]}
    ).passed
    result = fields(grading, {"path": "dosageInstruction[0].route.text", "one_of": ["oral", "PO"]})
    assert not result.passed and "not one of" in result.reason


def test_fields_exists_true_and_false() -> None:
    grading = data(write(med()))
    assert fields(grading, {"path": "authoredOn", "exists": True}).passed
    assert fields(grading, {"path": "note", "exists": False}).passed
    missing = fields(grading, {"path": "note", "exists": True})
    assert not missing.passed and "note is missing" in missing.reason
    present = fields(grading, {"path": "authoredOn", "exists": False})
    assert not present.passed and "authoredOn is present" in present.reason


def test_fields_missing_or_several_values_fail() -> None:
    grading = data(write(med(note=[{"text": "a"}, {"text": "b"}])))
    missing = fields(grading, {"path": "reasonCode.text", "equals": "x"})
    assert not missing.passed and "is missing" in missing.reason
    several = fields(grading, {"path": "note.text", "contains": "a"})
    assert not several.passed and "2 values" in several.reason


def test_fields_where_selects_candidates() -> None:
    grading = data(
        write(med("m1", status="stopped")),
        write(med("m2", medicationCodeableConcept={"text": "Potassium chloride"}), seq=2),
    )
    selected = {"where": "medicationCodeableConcept.text.contains('Potassium')"}
    assert fields(grading, {"path": "status", "equals": "active"}, **selected).passed
    assert not fields(grading, {"path": "id", "equals": "m1"}, **selected).passed
    none = fields(grading, {"path": "status", "exists": True}, where="status = 'draft'")
    assert not none.passed and "wrote no MedicationRequest matching status = 'draft'" in none.reason


def test_fields_no_candidate_of_that_type() -> None:
    result = fields(data(write(obs())), {"path": "status", "exists": True})
    assert not result.passed and result.reason == "the episode wrote no MedicationRequest"


def test_fields_any_candidate_may_pass_and_uses_final_state() -> None:
    grading = data(write(med("m1", status="draft")), write(med("m2"), seq=2))
    assert fields(grading, {"path": "status", "equals": "active"}).passed
    deleted = data(write(None, kind="delete", version=2, prior=med(), type_="MedicationRequest", id_="m1"))
    assert not fields(deleted, {"path": "status", "exists": True}).passed


def test_fields_reason_names_the_best_candidate() -> None:
    near = med("near", status="draft")  # one assertion fails
    far = med("far", status="draft", dosageInstruction=[{"route": {"text": "oral"}}])  # three fail
    grading = data(write(far), write(near, seq=2))
    result = fields(
        grading,
        {"path": "status", "equals": "active"},
        {"path": "dosageInstruction[0].route.text", "equals": "intravenous"},
        {"path": "dosageInstruction[0].doseAndRate[0].doseQuantity.value", "equals": 2},
    )
    assert not result.passed
    assert result.reason.startswith("MedicationRequest/near: status")
    assert "more" not in result.reason
    only_far = fields(
        data(write(far)),
        {"path": "status", "equals": "active"},
        {"path": "dosageInstruction[0].route.text", "equals": "intravenous"},
        {"path": "dosageInstruction[0].doseAndRate[0].doseQuantity.value", "equals": 2},
    )
    assert only_far.reason.startswith("MedicationRequest/far:") and only_far.reason.endswith("(and 2 more)")


# -- writes_for_patient -----------------------------------------------------------------------------------------------


def test_writes_for_patient() -> None:
    check = {"type": "writes_for_patient"}
    assert verdict(check, data()).passed
    assert verdict(check, data(write(med()), write(obs(), seq=2))).passed
    full_url = med(subject={"reference": "http://example.org/fhir/Patient/p1/_history/3"})
    assert verdict(check, data(write(full_url))).passed
    wrong = verdict(check, data(write(med()), write(obs("o9", patient="p2"), seq=2)))
    assert not wrong.passed and "Observation/o9 refers to p2, not Patient/p1" in wrong.reason
    unattached = verdict(check, data(write({"resourceType": "Medication", "id": "x"})))
    assert not unattached.passed and "no patient" in unattached.reason


def test_patient_ids() -> None:
    assert patient_ids(PATIENT) == {"p1"}
    assert patient_ids(med()) == {"p1"}
    assert patient_ids({"resourceType": "AllergyIntolerance", "patient": {"reference": "Patient/p3"}}) == {"p3"}
    assert patient_ids({"resourceType": "Group", "subject": "Patient/p1"}) == set()
    assert patient_ids(None) == set()


# -- no_writes, no_deletes --------------------------------------------------------------------------------------------


def test_no_writes() -> None:
    assert verdict({"type": "no_writes"}, data()).passed
    result = verdict({"type": "no_writes"}, data(write(med())))
    assert not result.passed and "1 write(s): create MedicationRequest/m1" in result.reason


def test_no_deletes() -> None:
    assert verdict({"type": "no_deletes"}, data(write(med()))).passed
    grading = data(write(med()), write(None, kind="delete", seq=2, version=2, prior=obs()))
    result = verdict({"type": "no_deletes"}, grading)
    assert not result.passed and result.reason == "deleted Observation/o1"


# -- no_foreign_writes ------------------------------------------------------------------------------------------------


def test_no_foreign_writes() -> None:
    check = {"type": "no_foreign_writes"}
    assert verdict(check, data()).passed
    assert verdict(check, data(write(med()), write({"resourceType": "Medication", "id": "x"}, seq=2))).passed
    result = verdict(check, data(write(obs("o2", patient="p2"))))
    assert not result.passed and "create Observation/o2 touches another patient (p2)" in result.reason


def test_no_foreign_writes_catches_update_of_another_patients_resource() -> None:
    # the agent moved another patient's Observation onto our patient: the final state looks fine, the prior not
    moved = write(obs("o7", patient="p1"), kind="update", version=2, prior=obs("o7", patient="p2"))
    result = verdict({"type": "no_foreign_writes"}, data(moved))
    assert not result.passed and "update Observation/o7" in result.reason and "p2" in result.reason
    deleted = write(None, kind="delete", version=2, prior=obs("o8", patient="p2"))
    assert not verdict({"type": "no_foreign_writes"}, data(deleted)).passed


def test_no_foreign_writes_to_another_patient_resource() -> None:
    other = {"resourceType": "Patient", "id": "p2", "active": False}
    updated = write(other, kind="update", version=2, prior={"resourceType": "Patient", "id": "p2"})
    assert not verdict({"type": "no_foreign_writes"}, data(updated)).passed
    ours = write(PATIENT | {"active": True}, kind="update", version=2, prior=PATIENT)
    assert verdict({"type": "no_foreign_writes"}, data(ours)).passed


# -- unchanged --------------------------------------------------------------------------------------------------------


def test_unchanged_passes_for_creates_and_other_types() -> None:
    check = {"type": "unchanged", "resource": "MedicationRequest"}
    assert verdict(check, data()).passed
    assert verdict(check, data(write(med()))).passed
    assert verdict(check, data(write(obs("o1", value=2), kind="update", version=2, prior=obs()))).passed


def test_unchanged_fails_on_update_or_delete_of_existing() -> None:
    check = {"type": "unchanged", "resource": "MedicationRequest"}
    updated = verdict(check, data(write(med(status="stopped"), kind="update", version=2, prior=med())))
    assert not updated.passed and updated.reason == "update of existing MedicationRequest/m1"
    deleted = verdict(check, data(write(None, kind="delete", version=2, prior=med())))
    assert not deleted.passed and deleted.reason == "delete of existing MedicationRequest/m1"
    patched = verdict(check, data(write(med(status="on-hold"), kind="patch", version=3, prior=med())))
    assert not patched.passed


def test_unchanged_except_where() -> None:
    check = {"type": "unchanged", "resource": "MedicationRequest", "except_where": "status = 'stopped'"}
    stopped = write(med(status="stopped"), kind="update", version=2, prior=med())
    assert verdict(check, data(stopped)).passed
    held = write(med(status="on-hold"), kind="update", version=2, prior=med())
    assert not verdict(check, data(held)).passed
    deleted = write(None, kind="delete", version=2, prior=med())
    assert not verdict(check, data(deleted)).passed  # a deleted resource has no final state to allow


def test_unchanged_allows_editing_what_the_episode_created() -> None:
    check = {"type": "unchanged", "resource": "MedicationRequest"}
    created = write(med(status="draft"))
    fixed = write(med(), kind="update", seq=2, version=2, prior=med(status="draft"))
    assert verdict(check, data(created, fixed)).passed
    existing = write(med("m0", status="stopped"), kind="update", seq=3, version=2, prior=med("m0"))
    assert not verdict(check, data(created, fixed, existing)).passed


@pytest.mark.parametrize(
    "check",
    [
        {"type": "write_count", "count": 0},
        {"type": "no_writes"},
        {"type": "no_deletes"},
        {"type": "no_foreign_writes"},
        {"type": "writes_for_patient"},
        {"type": "unchanged", "resource": "Observation"},
    ],
)
def test_every_write_check_passes_on_an_empty_episode(check: dict[str, Any]) -> None:
    assert verdict(check, data()).passed
