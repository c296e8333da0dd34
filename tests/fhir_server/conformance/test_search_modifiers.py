"""Modifiers (R4 search.html#modifiers): ``:missing`` on every parameter type, ``:exact``/``:contains``
(string), ``:text``/``:not`` (token), ``:[type]``/``:identifier`` (reference), ``:above``/``:below`` (uri), and
a 400 OperationOutcome for every modifier a type does not support ("servers SHALL reject" them).
"""

from __future__ import annotations

import pytest

from .search_support import SearchSession, SessionFactory

UCUM = "http://unitsofmeasure.org"
VS = "http://example.org/fhir/ValueSet"

RESOURCES = [
    {"resourceType": "Patient", "id": "p"},
    {
        "resourceType": "Observation",
        "id": "full",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0", "display": "Glucose"}]},
        "subject": {"reference": "Patient/p"},
        "effectiveDateTime": "2021-04-01",
        "valueQuantity": {"value": 5.1, "unit": "mmol/L", "system": UCUM, "code": "mmol/L"},
        "category": [{"coding": [{"code": "laboratory"}]}],
    },
    {
        "resourceType": "Observation",
        "id": "bare",
        "status": "preliminary",
        "code": {"text": "Note"},
        "valueString": "Café au lait",
    },
    {
        "resourceType": "RiskAssessment",
        "id": "with",
        "status": "final",
        "subject": {"reference": "Patient/p"},
        "prediction": [{"probabilityDecimal": 0.3}],
    },
    {"resourceType": "RiskAssessment", "id": "without", "status": "final", "subject": {"reference": "Patient/p"}},
    {"resourceType": "ValueSet", "id": "a", "status": "active", "url": f"{VS}/a", "name": "Alpha"},
    {"resourceType": "ValueSet", "id": "ab", "status": "active", "url": f"{VS}/a/b"},
    {"resourceType": "ValueSet", "id": "other", "status": "active", "url": "http://elsewhere.org/ValueSet/a"},
    {"resourceType": "ValueSet", "id": "no-url", "status": "draft"},
]


@pytest.fixture(scope="module")
def s(new_session: SessionFactory) -> SearchSession:
    return new_session(RESOURCES)


@pytest.mark.parametrize(
    ("resource_type", "param", "present", "absent"),
    [
        ("Observation", "value-string", {"bare"}, {"full"}),  # string
        ("Observation", "category", {"full"}, {"bare"}),  # token
        ("Observation", "date", {"full"}, {"bare"}),  # date
        ("Observation", "value-quantity", {"full"}, {"bare"}),  # quantity
        ("Observation", "subject", {"full"}, {"bare"}),  # reference
        ("RiskAssessment", "probability", {"with"}, {"without"}),  # number
        ("ValueSet", "url", {"a", "ab", "other"}, {"no-url"}),  # uri
    ],
)
def test_missing_on_every_type(
    s: SearchSession, resource_type: str, param: str, present: set[str], absent: set[str]
) -> None:
    assert s.ids(resource_type, {f"{param}:missing": "true"}) == absent
    assert s.ids(resource_type, {f"{param}:missing": "false"}) == present


@pytest.mark.parametrize("value", ["yes", "TRUE", "1", "true,false"])
def test_missing_takes_only_true_or_false(s: SearchSession, value: str) -> None:
    s.error("Observation", {"category:missing": value})


def test_string_exact_and_contains(s: SearchSession) -> None:
    assert s.ids("Observation", {"value-string": "cafe"}) == {"bare"}
    assert s.ids("Observation", {"value-string:exact": "Café au lait"}) == {"bare"}
    assert s.ids("Observation", {"value-string:exact": "Cafe au lait"}) == set()
    assert s.ids("Observation", {"value-string:contains": "AU"}) == {"bare"}
    assert s.ids("Observation", {"value-string": "au"}) == set()


def test_token_text_and_not(s: SearchSession) -> None:
    assert s.ids("Observation", {"code:text": "gluc"}) == {"full"}
    assert s.ids("Observation", {"code:text": "note"}) == {"bare"}
    assert s.ids("Observation", {"code:not": "http://loinc.org|2339-0"}) == {"bare"}
    assert s.ids("Observation", {"category:not": "laboratory"}) == {"bare"}  # no category at all counts
    assert s.ids("Observation", {"status:not": "final"}) == {"bare"}


def test_reference_type_and_identifier(s: SearchSession) -> None:
    assert s.ids("Observation", {"subject:Patient": "p"}) == {"full"}
    assert s.ids("Observation", {"subject:Group": "p"}) == set()
    assert s.ids("Observation", {"subject:identifier": "p"}) == set()


def test_uri_exact_above_below(s: SearchSession) -> None:
    assert s.ids("ValueSet", {"url": f"{VS}/a"}) == {"a"}  # a uri matches exactly, not as a prefix
    assert s.ids("ValueSet", {"url": f"{VS}/A"}) == set()  # and with case
    assert s.ids("ValueSet", {"url:below": VS}) == {"a", "ab"}
    assert s.ids("ValueSet", {"url:below": f"{VS}/a"}) == {"a", "ab"}
    assert s.ids("ValueSet", {"url:above": f"{VS}/a/b/c"}) == {"a", "ab"}
    assert s.ids("ValueSet", {"url:above": f"{VS}/a"}) == {"a"}


def test_chained_parameters_keep_their_modifier(s: SearchSession) -> None:
    assert s.ids("Observation", {"subject:Patient._id": "p"}) == {"full"}
    assert s.ids("RiskAssessment", {"subject:Patient._id": "p"}) == {"with", "without"}


@pytest.mark.parametrize(
    ("resource_type", "param", "modifier", "value"),
    [
        ("Observation", "value-string", "text", "cafe"),
        ("Observation", "value-string", "not", "cafe"),
        ("Observation", "value-string", "below", "cafe"),
        ("Observation", "code", "exact", "2339-0"),
        ("Observation", "code", "contains", "2339"),
        ("Observation", "code", "below", "2339-0"),
        ("Observation", "code", "in", "http://example.org/vs"),
        ("Observation", "code", "of-type", "a|b|c"),
        ("Observation", "date", "exact", "2021"),
        ("Observation", "date", "not", "2021"),
        ("Observation", "value-quantity", "exact", "5.1"),
        ("Observation", "value-quantity", "not", "5.1"),
        ("RiskAssessment", "probability", "exact", "0.3"),
        ("RiskAssessment", "probability", "text", "0.3"),
        ("Observation", "subject", "exact", "Patient/p"),
        ("Observation", "subject", "text", "p"),
        ("ValueSet", "url", "exact", f"{VS}/a"),
        ("ValueSet", "url", "contains", "example"),
        ("Observation", "code", "foo", "x"),
        ("Observation", "code", "", "x"),
    ],
)
def test_unsupported_modifiers_are_rejected(
    s: SearchSession, resource_type: str, param: str, modifier: str, value: str
) -> None:
    outcome = s.error(resource_type, {f"{param}:{modifier}": value})
    assert outcome["issue"][0]["code"] in ("not-supported", "invalid", "value")


def test_modifiers_are_honoured_in_strict_mode_too(s: SearchSession) -> None:
    strict = {"Prefer": "handling=strict"}
    assert s.search("Observation", {"category:missing": "true"}, headers=strict)["total"] == 1
    s.error("Observation", {"category:below": "x"}, headers=strict)
