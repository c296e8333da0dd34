"""grade(): every check gets a verdict and a reason; the score is the product of the reward_basis checks."""

from __future__ import annotations

from typing import Any

import pytest
from fhir_sandbox.graders import GradingInput, Write, grade
from fhir_sandbox.graders.custom import GRADERS
from fhir_sandbox.graders.outcome import Verdict
from fhir_sandbox.scenarios.model import Scenario

NOW = "2023-11-13T10:15:00+00:00"


def scenario(checks: list[dict[str, Any]], basis: list[str] | None = None) -> Scenario:
    return Scenario.model_validate(
        {
            "id": "test.grade",
            "category": "test",
            "title": "grading",
            "instruction": "What is the latest potassium?",
            "now": NOW,
            "expectations": {"checks": checks},
            "reward_basis": basis or [c["name"] for c in checks],
            "reference": {"steps": [{"tool": "finish", "args": {"answer": 3.2}}]},
        }
    )


def grading(
    answer: Any = None, values: dict[str, Any] | None = None, writes: list[Write] | None = None
) -> GradingInput:
    return GradingInput(
        answer=answer,
        values=values if values is not None else {"k": {"value": 3.2, "unit": "mmol/L"}},
        writes=writes or [],
        patient={"resourceType": "Patient", "id": "p1"},
        now=NOW,
    )


ANSWER = {"name": "answer", "type": "answer_number", "expected": {"expr": "%k.value"}, "tolerance": 0.05}
NO_WRITES = {"name": "nothing_written", "type": "no_writes"}


def by_name(result: Any) -> dict[str, Any]:
    return {c.name: c for c in result.checks}


def test_score_is_one_when_every_counted_check_passes() -> None:
    result = grade(scenario([ANSWER, NO_WRITES]), grading(3.2))
    assert result.score == 1.0
    assert [c.name for c in result.checks] == ["answer", "nothing_written"]
    assert all(c.passed and c.counted and c.applicable for c in result.checks)
    assert result.failed == []


def test_score_is_zero_when_any_counted_check_fails() -> None:
    written = Write(seq=1, kind="create", type="Flag", id="f1", version=1, status=201, resource={"id": "f1"})
    result = grade(scenario([ANSWER, NO_WRITES]), grading(3.2, writes=[written]))
    assert result.score == 0.0
    assert [c.name for c in result.failed] == ["nothing_written"]
    result = grade(scenario([ANSWER, NO_WRITES]), grading(4.0))
    assert result.score == 0.0
    assert [c.name for c in result.failed] == ["answer"]


def test_diagnostics_are_reported_but_not_counted() -> None:
    diagnostic = {"name": "said_units", "type": "answer_text", "expected": "3.2 mmol/L"}
    result = grade(scenario([ANSWER, diagnostic], basis=["answer"]), grading(3.2))
    assert result.score == 1.0
    checks = by_name(result)
    assert checks["said_units"].counted is False
    assert checks["said_units"].passed is False
    assert "does not match" in checks["said_units"].reason
    assert result.failed == []
    # and the other way round: the diagnostic passing does not rescue a failing counted check
    result = grade(scenario([ANSWER, diagnostic], basis=["answer"]), grading("3.2 mmol/L"))
    assert result.score == 0.0 and by_name(result)["said_units"].passed


def test_when_false_is_not_applicable_and_passes() -> None:
    low = {**ANSWER, "name": "low_answer", "when": "%k.value < 3.0", "expected": "give"}
    result = grade(scenario([ANSWER, low]), grading(3.2))
    check = by_name(result)["low_answer"]
    assert check.applicable is False and check.passed is True
    assert "not applicable" in check.reason and "%k.value < 3.0" in check.reason
    assert result.score == 1.0


def test_when_true_applies_the_check() -> None:
    high = {"name": "high", "type": "answer_text", "expected": "hold", "when": "%k.value >= 3.0"}
    result = grade(scenario([high]), grading("give"))
    assert by_name(result)["high"].applicable is True
    assert result.score == 0.0
    assert grade(scenario([high]), grading("Hold")).score == 1.0


def test_when_empty_is_false() -> None:
    conditional = {"name": "c", "type": "answer_text", "expected": "x", "when": "%k.missing > 1"}
    result = grade(scenario([conditional]), grading("y"))
    assert by_name(result)["c"].applicable is False and result.score == 1.0


@pytest.mark.parametrize(
    "check",
    [
        {**ANSWER, "expected": {"expr": "%kk.value"}},  # an undefined value
        {**ANSWER, "when": "%k.value +* 1"},  # not FHIRPath
        {**ANSWER, "when": "%undefined > 1"},
        {
            "name": "answer",
            "type": "write_fields",
            "resource": "Flag",
            "where": "%nope",
            "fields": [{"path": "status", "exists": True}],
        },
    ],
)
def test_a_broken_expression_fails_its_check_with_a_reason(check: dict[str, Any]) -> None:
    written = Write(seq=1, kind="create", type="Flag", id="f1", version=1, status=201, resource={"id": "f1"})
    result = grade(scenario([check, NO_WRITES], basis=["answer"]), grading(3.2, writes=[written]))
    failed = by_name(result)["answer"]
    assert failed.passed is False
    assert "the scenario's expression failed" in failed.reason and "FHIRPath" in failed.reason
    assert result.score == 0.0
    assert by_name(result)["nothing_written"].reason  # the other checks still ran


def test_python_check_registered() -> None:
    check = {"name": "three", "type": "python", "function": "answer_count", "args": {"count": 3}}
    assert grade(scenario([check]), grading(["a", "b", "c"])).score == 1.0
    result = grade(scenario([check]), grading(["a", "b"]))
    assert result.score == 0.0 and by_name(result)["three"].reason == "2 element(s), expected 3"
    by_value = {"name": "n", "type": "python", "function": "answer_count", "args": {"count": "n"}}
    assert grade(scenario([by_value]), grading(["a", "b"], values={"n": 2})).score == 1.0


def test_python_check_sorted_by_date() -> None:
    check = {
        "name": "sorted",
        "type": "python",
        "function": "answer_is_sorted_by_date",
        "args": {"key": "date", "newest_first": True},
    }
    newest_first = [{"date": "2023-11-12"}, {"date": "2023-10-01"}]
    assert grade(scenario([check]), grading(newest_first)).score == 1.0
    assert grade(scenario([check]), grading(newest_first[::-1])).score == 0.0
    assert grade(scenario([check]), grading("2023-11-12")).score == 0.0


def test_python_check_unknown_name_fails_and_lists_the_registered() -> None:
    check = {"name": "custom", "type": "python", "function": "no_such_grader"}
    result = grade(scenario([check]), grading(1))
    reason = by_name(result)["custom"].reason
    assert result.score == 0.0
    assert "no grader function 'no_such_grader'" in reason and "answer_count" in reason


def test_python_check_that_raises_fails_instead_of_crashing(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(_data: GradingInput, _args: dict[str, Any]) -> Verdict:
        raise KeyError("date")

    monkeypatch.setitem(GRADERS, "broken_for_test", broken)
    check = {"name": "custom", "type": "python", "function": "broken_for_test"}
    result = grade(scenario([check, NO_WRITES]), grading(1))
    assert result.score == 0.0
    assert "broken_for_test" in by_name(result)["custom"].reason and "KeyError" in by_name(result)["custom"].reason
    # an answer the agent controls must not crash a registered grader either (None does not sort with text)
    sorted_check = {"name": "s", "type": "python", "function": "answer_is_sorted_by_date", "args": {"key": "date"}}
    result = grade(scenario([sorted_check]), grading([{"date": "2023-01-01"}, {"when": "2023-02-01"}]))
    assert result.score == 0.0
