"""Number and quantity search (R4 search.html#number, #quantity, #prefix).

A search number is a range by its significant digits (``100`` is [99.5, 100.5), ``100.0`` is [99.95, 100.05),
``1e2`` is [50, 150)); a stored value is a point v. eq: v in the range; gt/lt: v above/below the number itself
("the value in the resource is greater than the provided value"); ge/le: gt/lt or eq; sa/eb: v wholly
above/below the range; ap: eq, or within 10% of the number. A quantity adds ``|system|code`` (both must match)
or ``||code`` (the code or the unit text matches).
"""

from __future__ import annotations

from typing import Any

import pytest

from .search_support import SearchSession, SessionFactory

UCUM = "http://unitsofmeasure.org"


def _risk(rid: str, *probabilities: float) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "RiskAssessment",
        "id": rid,
        "status": "final",
        "subject": {"reference": "Patient/p"},
    }
    if probabilities:
        resource["prediction"] = [{"probabilityDecimal": p} for p in probabilities]
    return resource


def _observation(oid: str, quantity: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    resource = {"resourceType": "Observation", "id": oid, "status": "final", "code": {"text": "x"}, **extra}
    if quantity is not None:
        resource["valueQuantity"] = quantity
    return resource


NUMBERS = {
    "100": 100,
    "99.6": 99.6,
    "100.4": 100.4,
    "100.5": 100.5,
    "99.5": 99.5,
    "99.4": 99.4,
    "110": 110,
    "91": 91,
    "89": 89,
    "0.5": 0.5,
}

RESOURCES = [
    {"resourceType": "Patient", "id": "p"},
    *(_risk(rid, value) for rid, value in NUMBERS.items()),
    _risk("two", 0.2, 0.8),
    _risk("none"),
    _observation("mg", {"value": 5.4, "unit": "mg", "system": UCUM, "code": "mg"}),
    _observation("mg-text", {"value": 5.4, "unit": "milligram", "system": UCUM, "code": "mg"}),
    _observation("g", {"value": 5.4, "unit": "g", "system": UCUM, "code": "g"}),
    _observation("unit-only", {"value": 5.4, "unit": "mg"}),
    _observation("other-system", {"value": 5.4, "unit": "mg", "system": "http://example.org/units", "code": "mg"}),
    _observation("kg70", {"value": 70, "unit": "kg", "system": UCUM, "code": "kg"}),
    _observation("kg70.2", {"value": 70.2, "unit": "kg", "system": UCUM, "code": "kg"}),
    _observation("kg69.5", {"value": 69.5, "unit": "kg", "system": UCUM, "code": "kg"}),
    _observation(
        "bp",
        component=[
            {
                "code": {"text": "systolic"},
                "valueQuantity": {"value": 120, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"},
            }
        ],
    ),
    _observation("no-value"),
]
ALL_RISKS = set(NUMBERS) | {"two"}
MG = {"mg", "mg-text", "unit-only", "other-system"}
ALL_54 = MG | {"g"}


@pytest.fixture(scope="module")
def s(new_session: SessionFactory) -> SearchSession:
    return new_session(RESOURCES)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("100", {"100", "99.6", "100.4", "99.5"}),  # [99.5, 100.5)
        ("eq100", {"100", "99.6", "100.4", "99.5"}),
        ("100.0", {"100"}),  # [99.95, 100.05)
        ("100.00", {"100"}),
        ("1e2", {"100", "99.6", "100.4", "100.5", "99.5", "99.4", "110", "91", "89"}),  # one digit: [50, 150)
        ("ne100", {"100.5", "99.4", "110", "91", "89", "0.5", "two"}),
        ("gt100", {"100.4", "100.5", "110"}),
        ("lt100", {"99.6", "99.5", "99.4", "91", "89", "0.5", "two"}),
        ("ge100", {"100", "99.6", "100.4", "100.5", "99.5", "110"}),
        ("le100", {"100", "99.6", "100.4", "99.5", "99.4", "91", "89", "0.5", "two"}),
        ("sa100", {"100.5", "110"}),
        ("eb100", {"99.4", "91", "89", "0.5", "two"}),
        ("ap100", {"100", "99.6", "100.4", "100.5", "99.5", "99.4", "110", "91"}),  # [90, 110]
        ("0.5", {"0.5"}),  # [0.45, 0.55)
        ("0.8", {"two"}),  # any of several values
        ("0.2,100.0", {"two", "100"}),
        ("-1", set()),
        ("gt-1", ALL_RISKS),
    ],
)
def test_number_prefixes(s: SearchSession, value: str, expected: set[str]) -> None:
    assert s.ids("RiskAssessment", {"probability": value}) == expected


def test_number_missing_and_and(s: SearchSession) -> None:
    assert s.ids("RiskAssessment", {"probability:missing": "true"}) == {"none"}
    assert s.ids("RiskAssessment", {"probability:missing": "false"}) == ALL_RISKS
    assert s.ids("RiskAssessment", [("probability", "ge99"), ("probability", "lt100")]) == {"99.6", "99.5", "99.4"}


def test_ap_edges(new_session: SessionFactory) -> None:
    values = {"a": 0.54, "b": 0.66, "c": 0.67, "d": 1.5, "e": 1.1, "f": 0.5}
    s = new_session([_risk(rid, value) for rid, value in values.items()])
    # exactly 10% either side matches (0.6 + 0.06 is 0.6599999999999999 in binary floating point)
    assert s.ids("RiskAssessment", {"probability": "ap0.60"}) == {"a", "b"}
    # "1" is [0.5, 1.5) and 10% is [0.9, 1.1]: 1.5 is neither
    assert s.ids("RiskAssessment", {"probability": "ap1"}) == {"a", "b", "c", "e", "f"}


@pytest.mark.parametrize("value", ["abc", "1,2x", "NaN", "Infinity", "1.2.3", "gt", "100|x|y"])
def test_bad_numbers_are_rejected(s: SearchSession, value: str) -> None:
    s.error("RiskAssessment", {"probability": value})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (f"5.4|{UCUM}|mg", {"mg", "mg-text"}),  # system and code
        ("5.4|http://example.org/units|mg", {"other-system"}),
        ("5.4||mg", MG),  # no system: the code or the unit text
        ("5.4||milligram", {"mg-text"}),
        ("5.4", ALL_54),  # no unit at all: any unit
        (f"5.4|{UCUM}|kg", set()),
        (f"5.40|{UCUM}|mg", {"mg", "mg-text"}),
        (f"6|{UCUM}|mg", set()),  # one digit: [5.5, 6.5) does not hold 5.4
        (f"ne5.4|{UCUM}|mg", set()),
        (f"le5.4|{UCUM}|mg", {"mg", "mg-text"}),
        (f"lt5.4|{UCUM}|mg", set()),
        (f"ap5|{UCUM}|mg", {"mg", "mg-text"}),  # within 10% of 5 and in [4.5, 5.5)
        (f"ap6|{UCUM}|mg", {"mg", "mg-text"}),  # within 10% of 6: [5.4, 6.6]
        (f"ap6.5|{UCUM}|mg", set()),  # [5.85, 7.15]
        (f"5.4|{UCUM}|mg,5.4|{UCUM}|g", {"mg", "mg-text", "g"}),
    ],
)
def test_quantity_units(s: SearchSession, value: str, expected: set[str]) -> None:
    assert s.ids("Observation", {"value-quantity": value}) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("70", {"kg70", "kg70.2", "kg69.5"}),  # [69.5, 70.5)
        ("gt70", {"kg70.2"}),  # a stored 70 is not greater than 70
        ("ge70", {"kg70", "kg70.2", "kg69.5"}),
        ("lt70", {"kg69.5"}),
        ("sa70", set()),
        ("eb70", set()),
        ("sa69", {"kg70", "kg70.2", "kg69.5"}),  # at or above 69.5, where [68.5, 69.5) ends
        ("sa69.5", {"kg70", "kg70.2"}),  # at or above 69.55
        ("eb71", {"kg70", "kg70.2", "kg69.5"}),  # below 70.5
        ("70.0", {"kg70"}),
    ],
)
def test_quantity_prefixes(s: SearchSession, value: str, expected: set[str]) -> None:
    assert s.ids("Observation", {"value-quantity": f"{value}|{UCUM}|kg"}) == expected


def test_component_quantity(s: SearchSession) -> None:
    assert s.ids("Observation", {"component-value-quantity": f"120|{UCUM}|mm[Hg]"}) == {"bp"}
    assert s.ids("Observation", {"component-value-quantity": "gt100||mmHg"}) == {"bp"}
    assert s.ids("Observation", {"value-quantity": "120"}) == set()  # a component is not the value


def test_quantity_missing(s: SearchSession) -> None:
    assert s.ids("Observation", {"value-quantity:missing": "true"}) == {"bp", "no-value"}


@pytest.mark.parametrize("value", ["abc", "abc|x|y", "||mg", "gt|x|y", "5.4.1||mg"])
def test_bad_quantities_are_rejected(s: SearchSession, value: str) -> None:
    s.error("Observation", {"value-quantity": value})
