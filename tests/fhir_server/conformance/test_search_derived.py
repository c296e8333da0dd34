"""Parameters derived from others: a union (``Observation.combo-code`` is ``code | component-code``) and a
narrowing of references to one type (``Observation.patient`` is ``subject.where(resolve() is Patient)``). The
server stores their values once, under the parameters they derive from; every search feature must still see
them: plain values, ``:not``, ``:missing``, ``_sort``, ``_include``, ``_revinclude``, chains, ``_has`` and
compartments.
"""

from __future__ import annotations

from typing import Any

import pytest

from .search_support import SearchSession, SessionFactory

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def _concept(code: str) -> dict[str, Any]:
    return {"coding": [{"system": LOINC, "code": code}]}


def _observation(oid: str, subject: str, code: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": _concept(code),
        "subject": {"reference": subject},
        **extra,
    }


def _bp(oid: str, subject: str, systolic: float, diastolic: float) -> dict[str, Any]:
    return _observation(
        oid,
        subject,
        "85354-9",
        component=[
            {"code": _concept("8480-6"), "valueQuantity": _quantity(systolic, "mm[Hg]")},
            {"code": _concept("8462-4"), "valueQuantity": _quantity(diastolic, "mm[Hg]")},
        ],
    )


RESOURCES = [
    {"resourceType": "Patient", "id": "p1", "name": [{"family": "Alpha"}]},
    {"resourceType": "Patient", "id": "p2", "name": [{"family": "Beta"}]},
    {"resourceType": "Group", "id": "g1", "type": "person", "actual": True},
    {"resourceType": "Practitioner", "id": "dr", "name": [{"family": "House"}]},
    {"resourceType": "RelatedPerson", "id": "rp", "patient": {"reference": "Patient/p1"}},
    _bp("bp1", "Patient/p1", 150, 95),
    _bp("bp2", "Patient/p2", 110, 70),
    _observation("hr1", "Patient/p1", "8867-4", valueQuantity=_quantity(72, "/min")),
    _observation("grp", "Group/g1", "8867-4", valueQuantity=_quantity(80, "/min")),
    _observation(
        "concept",
        "Patient/p2",
        "1234-5",
        valueCodeableConcept=_concept("POS"),
        component=[{"code": _concept("5555-5"), "valueCodeableConcept": _concept("NEG")}],
    ),
    _observation(
        "absent",
        "Patient/p1",
        "1234-5",
        dataAbsentReason=_concept("asked-unknown"),
        component=[{"code": _concept("5555-5"), "dataAbsentReason": _concept("not-performed")}],
    ),
    {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"}, "code": {"text": "Asthma"}},
    {"resourceType": "Condition", "id": "c2", "subject": {"reference": "Group/g1"}, "code": {"text": "Outbreak"}},
    {
        "resourceType": "Encounter",
        "id": "e1",
        "status": "finished",
        "class": {"code": "AMB"},
        "subject": {"reference": "Patient/p1"},
        "participant": [
            {"individual": {"reference": "Practitioner/dr"}},
            {"individual": {"reference": "RelatedPerson/rp"}},
        ],
    },
]
OBSERVATIONS = {"bp1", "bp2", "hr1", "grp", "concept", "absent"}


@pytest.fixture(scope="module")
def s(new_session: SessionFactory) -> SearchSession:
    return new_session(RESOURCES)


def _included(s: SearchSession, path: str, params: dict[str, str]) -> set[str]:
    bundle = s.search(path, params)
    return {
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in bundle["entry"]
        if e["search"]["mode"] == "include"
    }


def test_a_union_finds_what_each_of_its_parts_finds(s: SearchSession) -> None:
    assert s.ids("Observation", {"code": "8480-6"}) == set()  # a component's code is not the code
    assert s.ids("Observation", {"component-code": "8480-6"}) == {"bp1", "bp2"}
    assert s.ids("Observation", {"combo-code": "8480-6"}) == {"bp1", "bp2"}
    assert s.ids("Observation", {"combo-code": f"{LOINC}|85354-9"}) == {"bp1", "bp2"}
    assert s.ids("Observation", {"combo-code": "8867-4,5555-5"}) == {"hr1", "grp", "concept", "absent"}
    assert s.ids("Observation", {"combo-value-quantity": "gt100"}) == {"bp1", "bp2"}
    assert s.ids("Observation", {"combo-value-quantity": f"lt75|{UCUM}|mm[Hg]"}) == {"bp2"}
    assert s.ids("Observation", {"combo-value-quantity": "lt75"}) == {"bp2", "hr1"}
    assert s.ids("Observation", {"value-quantity": "gt100"}) == set()
    assert s.ids("Observation", {"combo-value-concept": "NEG"}) == {"concept"}
    assert s.ids("Observation", {"combo-value-concept": "POS"}) == {"concept"}
    assert s.ids("Observation", {"combo-data-absent-reason": "not-performed"}) == {"absent"}
    assert s.ids("Observation", [("combo-code", "8480-6"), ("patient", "p1")]) == {"bp1"}


def test_not_and_missing_on_a_union(s: SearchSession) -> None:
    assert s.ids("Observation", {"combo-code:not": "8480-6"}) == OBSERVATIONS - {"bp1", "bp2"}
    assert s.ids("Observation", {"combo-code:not": "85354-9"}) == OBSERVATIONS - {"bp1", "bp2"}
    assert s.ids("Observation", {"combo-value-quantity:missing": "true"}) == {"concept", "absent"}
    assert s.ids("Observation", {"combo-value-concept:missing": "false"}) == {"concept"}
    assert s.ids("Observation", {"combo-data-absent-reason:missing": "false"}) == {"absent"}


def test_sorting_by_a_union_sorts_by_every_value(s: SearchSession) -> None:
    # ascending by the lowest value (bp1's diastolic 95), descending by the highest (its systolic 150)
    params = {"patient": "p1", "_sort": "combo-value-quantity"}
    assert s.match_ids("Observation", params) == ["hr1", "bp1", "absent"]
    assert s.match_ids("Observation", {**params, "_sort": "-combo-value-quantity"}) == ["bp1", "hr1", "absent"]
    assert s.match_ids("Observation", {"combo-code": "8480-6", "_sort": "-combo-code,_id"}) == ["bp1", "bp2"]


def test_patient_is_the_subject_when_it_is_a_patient(s: SearchSession) -> None:
    assert s.ids("Observation", {"patient": "p1"}) == {"bp1", "hr1", "absent"}
    assert s.ids("Observation", {"patient": "Patient/p2"}) == {"bp2", "concept"}
    assert s.ids("Observation", {"patient": "g1"}) == set()  # a Group is a subject, not a patient
    assert s.ids("Observation", {"subject": "g1"}) == {"grp"}
    assert s.ids("Observation", {"patient:missing": "true"}) == {"grp"}
    assert s.ids("Observation", {"patient:missing": "false"}) == OBSERVATIONS - {"grp"}
    assert s.ids("Condition", {"patient": "p1"}) == {"c1"}
    assert s.ids("Condition", {"patient:missing": "true"}) == {"c2"}
    assert s.match_ids("Observation", {"_sort": "patient,_id"}) == ["absent", "bp1", "hr1", "bp2", "concept", "grp"]
    assert s.match_ids("Observation", {"_sort": "-patient,_id"}) == ["bp2", "concept", "absent", "bp1", "hr1", "grp"]


def test_a_narrowing_to_another_type(s: SearchSession) -> None:
    assert s.ids("Encounter", {"practitioner": "dr"}) == {"e1"}
    assert s.ids("Encounter", {"practitioner": "rp"}) == set()
    assert s.ids("Encounter", {"participant": "rp"}) == {"e1"}
    assert _included(s, "Encounter", {"_include": "Encounter:practitioner"}) == {"Practitioner/dr"}
    assert _included(s, "Encounter", {"_include": "Encounter:participant"}) == {"Practitioner/dr", "RelatedPerson/rp"}


def test_includes_through_a_derived_parameter(s: SearchSession) -> None:
    assert _included(s, "Observation", {"code": "8867-4", "_include": "Observation:patient"}) == {"Patient/p1"}
    assert _included(s, "Observation", {"code": "8867-4", "_include": "Observation:subject"}) == {
        "Patient/p1",
        "Group/g1",
    }
    assert _included(s, "Patient", {"_id": "p1", "_revinclude": "Observation:patient"}) == {
        "Observation/bp1",
        "Observation/hr1",
        "Observation/absent",
    }
    assert _included(s, "Group", {"_revinclude": "Observation:patient"}) == set()
    assert _included(s, "Group", {"_revinclude": "Condition:subject"}) == {"Condition/c2"}


def test_chains_and_has_through_a_derived_parameter(s: SearchSession) -> None:
    assert s.ids("Observation", {"patient.family": "alpha"}) == {"bp1", "hr1", "absent"}
    assert s.ids("Condition", {"patient.family": "alpha"}) == {"c1"}
    assert s.ids("Patient", {"_has:Observation:patient:combo-code": "8480-6"}) == {"p1", "p2"}
    assert s.ids("Patient", {"_has:Observation:patient:combo-value-concept": "NEG"}) == {"p2"}
    assert s.ids("Patient", {"_has:Condition:patient:code:text": "asthma"}) == {"p1"}
    assert s.ids("Practitioner", {"_has:Encounter:practitioner:status": "finished"}) == {"dr"}


def test_compartments_whose_parameter_is_derived(s: SearchSession) -> None:
    # Condition's compartment parameter is patient (subject.where(resolve() is Patient))
    assert s.ids("Patient/p1/Condition") == {"c1"}
    assert s.ids("Patient/p1/Observation", {"combo-code": "8480-6"}) == {"bp1"}
    assert s.ids("Patient/p2/Observation") == {"bp2", "concept"}


def test_a_reference_that_is_not_type_and_id_is_no_patient(new_session: SessionFactory) -> None:
    """``patient`` is read as ``subject``'s references whose parsed type is Patient: one that only looks like a
    Patient reference (an id FHIR does not allow) is a subject, found by its text, but no patient, as it is in no
    patient's compartment."""
    bad = "Patient/not an id!"
    s = new_session([_observation("odd", bad, "8867-4")])
    assert s.ids("Observation", {"subject": bad}) == {"odd"}
    assert s.ids("Observation", {"patient": bad}) == set()
    assert s.ids("Observation", {"patient:missing": "true"}) == {"odd"}
