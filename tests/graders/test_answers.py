"""Answer checks: each type accepts what a clinician would accept and nothing else."""

from __future__ import annotations

from typing import Any

import pytest
from fhir_sandbox.graders.answers import check_answer, normal_text, parse_instant, parse_number
from fhir_sandbox.graders.inputs import GradingInput
from fhir_sandbox.scenarios.model import Check
from pydantic import TypeAdapter

_CHECK = TypeAdapter(Check)

VALUES: dict[str, Any] = {
    "weight": 69,
    "glucose": {"value": 191, "unit": "mg/dL", "time": "2023-11-12T08:00:00Z", "id": "g1"},
    "k": {"value": 3.2, "unit": "mmol/L", "time": "2023-11-13T06:30:00+00:00", "id": "k1"},
    "drugs": ["Metformin", "Lisinopril", "Atorvastatin"],
    "drug": "Metformin",
    "nothing": None,
}
ENV = GradingInput(
    values=VALUES, now="2023-11-13T10:15:00+00:00", patient={"resourceType": "Patient", "id": "p1"}
).env()


def run(check: dict[str, Any], answer: Any) -> tuple[bool, str]:
    verdict = check_answer(_CHECK.validate_python({"name": "c", **check}), answer, ENV)
    return verdict.passed, verdict.reason


def passes(check: dict[str, Any], answer: Any) -> bool:
    return run(check, answer)[0]


# -- answer_exact -----------------------------------------------------------------------------------------------------

EXACT_WEIGHT = {"type": "answer_exact", "expected": {"expr": "%weight"}}


@pytest.mark.parametrize("answer", [69, 69.0, 6.9e1])
def test_exact_numbers_compare_by_value(answer: Any) -> None:
    assert passes(EXACT_WEIGHT, answer)


@pytest.mark.parametrize("answer", ["69", 70, True, None, [69]])
def test_exact_rejects_other_types_and_values(answer: Any) -> None:
    ok, reason = run(EXACT_WEIGHT, answer)
    assert not ok
    assert "does not equal" in reason


def test_exact_strings_are_strict() -> None:
    check = {"type": "answer_exact", "expected": {"expr": "%drug"}}
    assert passes(check, "Metformin")
    assert not passes(check, "metformin")
    assert not passes(check, "Metformin.")
    assert not passes(check, " Metformin")


def test_exact_literal_and_list_expectations() -> None:
    assert passes({"type": "answer_exact", "expected": [3.2, "mmol/L"]}, [3.2, "mmol/L"])
    assert not passes({"type": "answer_exact", "expected": [3.2, "mmol/L"]}, ["mmol/L", 3.2])
    assert passes({"type": "answer_exact", "expected": True}, True)
    assert not passes({"type": "answer_exact", "expected": True}, 1)
    assert passes({"type": "answer_exact", "expected": None}, None)


def test_exact_list_of_expressions_is_resolved() -> None:
    check = {"type": "answer_exact", "expected": [{"expr": "%k.value"}, {"expr": "%k.unit"}]}
    assert passes(check, [3.2, "mmol/L"])
    assert not passes(check, [3.3, "mmol/L"])


# -- answer_number ----------------------------------------------------------------------------------------------------


def test_number_tolerance() -> None:
    check = {"type": "answer_number", "expected": {"expr": "%glucose.value"}, "tolerance": 0.5}
    assert passes(check, 191.5)
    assert passes(check, 190.5)
    assert not passes(check, 191.6)
    ok, reason = run(check, 192)
    assert not ok and "within 0.5" in reason


def test_number_zero_tolerance_is_exact() -> None:
    check = {"type": "answer_number", "expected": {"expr": "%k.value"}}
    assert passes(check, 3.2)
    assert passes(check, "3.2")
    assert not passes(check, 3.21)


def test_number_with_unit_only_when_that_unit_was_asked() -> None:
    asked = {"type": "answer_number", "expected": {"expr": "%glucose.value"}, "unit": "mg/dL"}
    bare = {"type": "answer_number", "expected": {"expr": "%glucose.value"}}
    assert passes(asked, "191 mg/dL")
    assert passes(asked, "191mg/dl")
    assert passes(asked, 191)
    ok, reason = run(bare, "191 mg/dL")
    assert not ok and "mg/dL" in reason
    ok, reason = run(asked, "10.6 mmol/L")
    assert not ok and "mmol/L" in reason


def test_number_wrong_unit_fails_even_with_right_number() -> None:
    check = {"type": "answer_number", "expected": {"expr": "%glucose.value"}, "unit": "mg/dL"}
    assert not passes(check, "191 mmol/L")


def test_number_one_element_list_counts_as_its_element() -> None:
    check = {"type": "answer_number", "expected": {"expr": "%weight"}}
    assert passes(check, [69])
    assert passes(check, "[69]")
    assert not passes(check, [69, 70])
    assert not passes(check, [])


@pytest.mark.parametrize("answer", [True, False, "true", "abc", None, {"value": 69}, "", "nan", float("nan")])
def test_number_rejects_non_numbers(answer: Any) -> None:
    ok, reason = run({"type": "answer_number", "expected": 1}, answer)
    assert not ok
    assert "not a number" in reason


def test_number_with_boolean_or_missing_expectation_fails() -> None:
    ok, reason = run({"type": "answer_number", "expected": {"expr": "%nothing"}}, 0)
    assert not ok and "no numeric expectation" in reason
    assert not passes({"type": "answer_number", "expected": True}, 1)
    assert not passes({"type": "answer_number", "expected": "191"}, 191)


def test_number_item_picks_an_element() -> None:
    value = {"type": "answer_number", "expected": {"expr": "%k.value"}, "item": 0}
    assert passes(value, [3.2, "2023-11-13T06:30:00Z"])
    assert not passes(value, [3.1, "2023-11-13T06:30:00Z"])
    ok, reason = run({**value, "item": 2}, [3.2, "x"])
    assert not ok and "no element 2" in reason
    assert not passes(value, 3.2)  # not a list


# -- answer_datetime --------------------------------------------------------------------------------------------------

WHEN_K = {"type": "answer_datetime", "expected": {"expr": "%k.time"}}


@pytest.mark.parametrize(
    "answer", ["2023-11-13T06:30:00Z", "2023-11-13T06:30:00+00:00", "2023-11-13T07:30:00+01:00", "2023-11-13T06:30Z"]
)
def test_datetime_same_instant_in_any_notation(answer: str) -> None:
    assert passes(WHEN_K, answer)


@pytest.mark.parametrize("answer", ["2023-11-13T06:30:01Z", "2023-11-13T06:30:00+01:00", "2023-11-12T06:30:00Z"])
def test_datetime_different_instants_fail(answer: str) -> None:
    ok, reason = run(WHEN_K, answer)
    assert not ok and "is not the same instant" in reason


@pytest.mark.parametrize("answer", ["2023-11-13", "2023-11-13T06:30:00", "yesterday", 20231113, None])
def test_datetime_without_zone_or_not_a_datetime_fails(answer: Any) -> None:
    ok, reason = run(WHEN_K, answer)
    assert not ok and "time zone" in reason


def test_datetime_tolerance_seconds() -> None:
    check = {**WHEN_K, "tolerance_seconds": 60}
    assert passes(check, "2023-11-13T06:31:00Z")
    assert passes(check, "2023-11-13T06:29:00Z")
    assert not passes(check, "2023-11-13T06:31:01Z")


def test_datetime_against_now_and_items() -> None:
    assert passes({"type": "answer_datetime", "expected": {"expr": "%now"}}, "2023-11-13T10:15:00Z")
    check = {"type": "answer_datetime", "expected": {"expr": "%glucose.time"}, "item": 1}
    assert passes(check, [191, "2023-11-12T09:00:00+01:00"])
    assert not passes(check, [191, "2023-11-12T09:00:00Z"])


def test_datetime_without_expected_instant_fails() -> None:
    ok, reason = run({"type": "answer_datetime", "expected": {"expr": "%nothing"}}, "2023-11-13T06:30:00Z")
    assert not ok and "no instant" in reason


# -- answer_set -------------------------------------------------------------------------------------------------------

SET = {"type": "answer_set", "expected": {"expr": "%drugs"}}


def test_set_is_order_insensitive_and_normalised() -> None:
    assert passes(SET, ["Atorvastatin", "Metformin", "Lisinopril"])
    assert passes(SET, ["lisinopril", "ATORVASTATIN ", "metformin"])
    assert passes(SET, '["Lisinopril", "Atorvastatin", "Metformin"]')


def test_set_missing_or_extra_elements_fail() -> None:
    ok, reason = run(SET, ["Metformin", "Lisinopril"])
    assert not ok and "does not have" in reason
    assert not passes(SET, ["Metformin", "Lisinopril", "Atorvastatin", "Aspirin"])
    assert not passes(SET, ["Metformin", "Metformin", "Lisinopril", "Atorvastatin"][:3])
    assert not passes(SET, ["Metformin", "Lisinopril", "Lisinopril"])


def test_set_needs_a_list() -> None:
    ok, reason = run(SET, "Metformin, Lisinopril, Atorvastatin")
    assert not ok and "not a list" in reason


def test_set_of_one_and_empty_set() -> None:
    assert passes({"type": "answer_set", "expected": {"expr": "%drug"}}, ["metformin"])
    assert passes({"type": "answer_set", "expected": {"expr": "%nothing"}}, [])
    assert not passes({"type": "answer_set", "expected": {"expr": "%nothing"}}, ["x"])


def test_set_numbers_by_value() -> None:
    assert passes({"type": "answer_set", "expected": [1, 2.5]}, [2.5, 1.0])
    assert not passes({"type": "answer_set", "expected": [1, 2.5]}, [2.5, "1"])


# -- answer_one_of ----------------------------------------------------------------------------------------------------

ONE_OF = {"type": "answer_one_of", "options": ["hold", {"expr": "%weight"}, {"expr": "%drug"}]}


@pytest.mark.parametrize("answer", ["hold", "HOLD.", 69, 69.0, "metformin"])
def test_one_of_accepts_any_option(answer: Any) -> None:
    assert passes(ONE_OF, answer)


@pytest.mark.parametrize("answer", ["give", 70, None, ["hold"], True])
def test_one_of_rejects_others(answer: Any) -> None:
    ok, reason = run(ONE_OF, answer)
    assert not ok and "is not one of" in reason


# -- answer_text ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("answer", ["Café au lait", "cafe au lait", "  CAFÉ   AU  LAIT. ", '"cafe au lait!"'])
def test_text_ignores_case_accents_punctuation_spaces(answer: str) -> None:
    assert passes({"type": "answer_text", "expected": "Café au lait"}, answer)


@pytest.mark.parametrize("answer", ["café noir", "cafe-au-lait", "cafeaulait", "au lait café", 1, None])
def test_text_different_text_fails(answer: Any) -> None:
    ok, reason = run({"type": "answer_text", "expected": "Café au lait"}, answer)
    assert not ok and "does not match" in reason


def test_text_from_expression() -> None:
    check = {"type": "answer_text", "expected": {"expr": "%k.unit"}}
    assert passes(check, "MMOL/L")
    assert not passes(check, "mmol")


# -- helpers ------------------------------------------------------------------------------------------------------


def test_parse_helpers() -> None:
    assert parse_number("191 mg/dL") == (191.0, "mg/dL")
    assert parse_number("-0.5") == (-0.5, "")
    assert parse_number(True) == (None, "")
    assert parse_number("mg 191") == (None, "")
    assert parse_instant("2023-11-13T10:15:00Z") == parse_instant("2023-11-13T11:15:00+01:00")
    assert parse_instant("2023-11-13") is None
    assert normal_text("  Ça  VA! ") == "ca va"
