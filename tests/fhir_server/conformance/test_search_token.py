"""Token search (R4 search.html#token): ``code``, ``system|code``, ``|code``, ``system|``, Identifiers,
ContactPoints, booleans, ``:text``, ``:not``, ``:missing`` and escaping.
"""

from __future__ import annotations

from typing import Any

import pytest

from .search_support import SearchSession, SessionFactory

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
MRN = "http://hospital.example.org/mrn"
SSN = "http://hl7.org/fhir/sid/us-ssn"
LOCAL = "http://example.org/codes"


def _observation(oid: str, code: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": "final", "code": code, **extra}


VITALS = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}
LAB = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}

RESOURCES = [
    _observation(
        "glucose",
        {
            "coding": [{"system": LOINC, "code": "1234-5", "display": "Glucose [Mass/volume] in Blood"}],
            "text": "Blood glucose",
        },
        category=[LAB],
    ),
    _observation("no-system", {"coding": [{"code": "1234-5"}]}, category=[LAB]),
    _observation("other-system", {"coding": [{"system": SNOMED, "code": "1234-5"}]}),
    _observation(
        "two-codings",
        {
            "coding": [
                {"system": LOINC, "code": "8480-6", "display": "Systolic blood pressure"},
                {"system": SNOMED, "code": "271649006"},
            ]
        },
        category=[VITALS],
        status="amended",
    ),
    _observation("text-only", {"text": "Weight"}, category=[VITALS], status="preliminary"),
    _observation("comma", {"coding": [{"system": LOCAL, "code": "a,b"}]}),
    {
        "resourceType": "Patient",
        "id": "mrn",
        "identifier": [{"system": MRN, "value": "12345", "type": {"text": "Medical record number"}}],
        "gender": "female",
        "active": True,
        "telecom": [{"system": "email", "value": "eve@example.org"}, {"system": "phone", "value": "555-0100"}],
    },
    {"resourceType": "Patient", "id": "ssn", "identifier": [{"system": SSN, "value": "12345"}], "gender": "male"},
    {"resourceType": "Patient", "id": "no-system", "identifier": [{"value": "12345"}], "active": False},
    {"resourceType": "Patient", "id": "plain", "gender": "other"},
]

ALL_OBSERVATIONS = {"glucose", "no-system", "other-system", "two-codings", "text-only", "comma"}
ALL_PATIENTS = {"mrn", "ssn", "no-system", "plain"}


@pytest.fixture(scope="module")
def s(new_session: SessionFactory) -> SearchSession:
    return new_session(RESOURCES)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (f"{LOINC}|1234-5", {"glucose"}),  # system|code: both must match
        (f"{SNOMED}|1234-5", {"other-system"}),
        ("1234-5", {"glucose", "no-system", "other-system"}),  # code in any system, or none
        ("|1234-5", {"no-system"}),  # |code: only codings without a system
        (f"{LOINC}|", {"glucose", "two-codings"}),  # system|: any code in the system
        (f"{SNOMED}|271649006", {"two-codings"}),  # any coding of the concept counts
        (f"{LOINC}|1234-5,{SNOMED}|271649006", {"glucose", "two-codings"}),  # comma is OR
        (f"{LOINC}|9999-9", set()),
        (f"{LOCAL}|a\\,b", {"comma"}),  # an escaped comma is part of the code
        (f"{LOCAL}|a,b", set()),  # an unescaped one splits the value: "LOCAL|a" OR "b"
    ],
)
def test_code_forms(s: SearchSession, value: str, expected: set[str]) -> None:
    assert s.ids("Observation", {"code": value}) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (f"{MRN}|12345", {"mrn"}),
        (f"{SSN}|12345", {"ssn"}),
        ("12345", {"mrn", "ssn", "no-system"}),
        ("|12345", {"no-system"}),
        (f"{MRN}|", {"mrn"}),
        (f"{MRN}|99999", set()),
    ],
)
def test_identifier_forms(s: SearchSession, value: str, expected: set[str]) -> None:
    assert s.ids("Patient", {"identifier": value}) == expected


def test_identifier_text_searches_the_identifier_type_text(s: SearchSession) -> None:
    assert s.ids("Patient", {"identifier:text": "medical record"}) == {"mrn"}


def test_code_and_boolean_elements(s: SearchSession) -> None:
    assert s.ids("Patient", {"gender": "female"}) == {"mrn"}
    assert s.ids("Patient", {"gender": "female,male"}) == {"mrn", "ssn"}
    assert s.ids("Patient", {"active": "true"}) == {"mrn"}
    assert s.ids("Patient", {"active": "false"}) == {"no-system"}
    assert s.ids("Observation", {"status": "amended,preliminary"}) == {"two-codings", "text-only"}


def test_contact_points(s: SearchSession) -> None:
    assert s.ids("Patient", {"email": "eve@example.org"}) == {"mrn"}
    assert s.ids("Patient", {"phone": "555-0100"}) == {"mrn"}
    assert s.ids("Patient", {"phone": "eve@example.org"}) == set()  # phone only looks at system=phone
    assert s.ids("Patient", {"telecom": "phone|555-0100"}) == {"mrn"}  # ContactPoint: system|value
    assert s.ids("Patient", {"telecom": "email|555-0100"}) == set()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("glucose", {"glucose"}),  # Coding.display
        ("GLUC", {"glucose"}),  # string semantics: case-insensitive starts-with
        ("blood", {"glucose"}),  # CodeableConcept.text
        ("systolic", {"two-codings"}),
        ("weight", {"text-only"}),  # a concept with text and no coding
        # :text is "processed as a string" (search.html#token): starts-with, so a word inside does not match
        ("mass", set()),
        ("1234-5", set()),  # :text never looks at codes
    ],
)
def test_text_modifier(s: SearchSession, value: str, expected: set[str]) -> None:
    assert s.ids("Observation", {"code:text": value}) == expected


def test_not_excludes_matches_and_keeps_resources_without_a_value(s: SearchSession) -> None:
    # "Note that this includes resources that have no value for the parameter" (search.html#token)
    assert s.ids("Patient", {"gender:not": "male"}) == {"mrn", "no-system", "plain"}
    assert s.ids("Observation", {"code:not": "1234-5"}) == {"two-codings", "text-only", "comma"}
    assert s.ids("Observation", {"code:not": f"{LOINC}|1234-5"}) == ALL_OBSERVATIONS - {"glucose"}
    # a resource with any coding that matches is excluded, even if it has others that do not
    assert s.ids("Observation", {"code:not": f"{SNOMED}|271649006"}) == ALL_OBSERVATIONS - {"two-codings"}
    # comma values inside :not: none of them may match
    assert s.ids("Patient", {"gender:not": "male,female"}) == {"no-system", "plain"}
    assert s.ids("Observation", {"category:not": "laboratory"}) == {"other-system", "two-codings", "text-only", "comma"}


def test_missing(s: SearchSession) -> None:
    assert s.ids("Patient", {"gender:missing": "true"}) == {"no-system"}
    assert s.ids("Patient", {"gender:missing": "false"}) == {"mrn", "ssn", "plain"}
    assert s.ids("Patient", {"identifier:missing": "true"}) == {"plain"}
    assert s.ids("Observation", {"category:missing": "true"}) == {"other-system", "comma"}
    assert s.ids("Observation", {"category:missing": "false"}) == {"glucose", "no-system", "two-codings", "text-only"}


def test_repeated_parameters_are_and(s: SearchSession) -> None:
    params = [("code", f"{LOINC}|8480-6"), ("code", f"{SNOMED}|271649006")]
    assert s.ids("Observation", params) == {"two-codings"}
    assert s.ids("Observation", [("code", "1234-5"), ("category", "laboratory")]) == {"glucose", "no-system"}
    assert s.ids("Observation", [("code", "1234-5"), ("code", "8480-6")]) == set()


def test_token_modifiers_beyond_the_supported_set_are_rejected(s: SearchSession) -> None:
    for modifier in ("below", "above", "in", "not-in", "of-type", "exact", "contains"):
        outcome = s.error("Observation", {f"code:{modifier}": "1234-5"})
        assert modifier in outcome["issue"][0]["diagnostics"]
