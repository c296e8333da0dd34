"""Named Python grader functions: the escape hatch for logic a declarative check cannot say.

A scenario names one with ``{"type": "python", "function": "NAME", "args": {...}}``; the function gets the
grading input and the args, and returns a Verdict. Register with ``@grader("NAME")``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .answers import parse_number
from .inputs import GradingInput
from .outcome import Verdict

__all__ = ["GRADERS", "grader"]

GraderFunction = Callable[[GradingInput, dict[str, Any]], Verdict]
GRADERS: dict[str, GraderFunction] = {}


def grader(name: str) -> Callable[[GraderFunction], GraderFunction]:
    def register(function: GraderFunction) -> GraderFunction:
        if name in GRADERS:
            raise ValueError(f"a grader named {name!r} is already registered")
        GRADERS[name] = function
        return function

    return register


@grader("answer_is_sorted_by_date")
def answer_is_sorted_by_date(data: GradingInput, args: dict[str, Any]) -> Verdict:
    """A list answer whose elements (or their ``args['key']`` item) are in date order, newest first if
    ``args['newest_first']``."""
    answer = data.answer
    if not isinstance(answer, list):
        return Verdict.fail("the answer is not a list")
    key = args.get("key")
    dates = [item.get(key) if key and isinstance(item, dict) else item for item in answer]
    ordered = sorted(dates, reverse=bool(args.get("newest_first")))
    return Verdict(
        passed=dates == ordered, reason=f"{len(dates)} dates {'are' if dates == ordered else 'are not'} in order"
    )


@grader("answer_count")
def answer_count(data: GradingInput, args: dict[str, Any]) -> Verdict:
    """The answer is a list of ``args['count']`` elements (an int, or the name of a value)."""
    expected = args.get("count")
    if isinstance(expected, str):
        expected = data.values.get(expected)
    got = len(data.answer) if isinstance(data.answer, list) else parse_number(data.answer)[0]
    return Verdict(passed=got == expected, reason=f"{got} element(s), expected {expected}")
