"""Grading an episode: every check of the scenario, each with a verdict and a reason; the score is the product
of the checks in ``reward_basis`` (the others are diagnostics)."""

from __future__ import annotations

from typing import Any

from ..scenarios.model import AnswerCheck, PythonCheck, Scenario
from .answers import check_answer
from .custom import GRADERS
from .expressions import ExpressionError, is_true
from .inputs import GradingInput
from .outcome import CheckResult, Grade, Verdict
from .writes import WRITE_CHECKS

__all__ = ["grade"]

_ANSWER_TYPES = tuple(AnswerCheck.__args__)  # type: ignore[attr-defined]


def grade(scenario: Scenario, data: GradingInput) -> Grade:
    env = data.env()
    results = []
    basis = set(scenario.reward_basis)
    for check in scenario.expectations.checks:
        applicable = True
        try:
            if check.when is not None and not is_true(check.when, env):
                applicable, verdict = False, Verdict.ok(f"not applicable: {check.when} is not true")
            else:
                verdict = _run(check, data, env)
        except ExpressionError as exc:
            verdict = Verdict.fail(f"the scenario's expression failed: {exc}")
        results.append(
            CheckResult(
                name=check.name,
                type=check.type,
                passed=verdict.passed,
                reason=verdict.reason,
                applicable=applicable,
                counted=check.name in basis,
            )
        )
    score = 1.0 if all(r.passed for r in results if r.counted) else 0.0
    return Grade(score=score, checks=results)


def _run(check: Any, data: GradingInput, env: dict[str, Any]) -> Verdict:
    if isinstance(check, _ANSWER_TYPES):
        return check_answer(check, data.answer, env)
    if isinstance(check, PythonCheck):
        function = GRADERS.get(check.function)
        if function is None:
            return Verdict.fail(f"no grader function {check.function!r}; registered: {', '.join(sorted(GRADERS))}")
        try:
            return function(data, check.args)
        except Exception as exc:  # the answer is the agent's: a grader must not crash the episode on it
            return Verdict.fail(f"grader function {check.function!r} raised {type(exc).__name__}: {exc}")
    return WRITE_CHECKS[type(check)](check, data)  # type: ignore[no-any-return]
