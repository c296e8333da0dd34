"""Answer checks: the agent's final answer against the expected value, with the normalisations a clinician would
accept (69 == 69.0, "191 mg/dL" for 191 when mg/dL was asked, "Z" == "+00:00") and no others."""

from __future__ import annotations

import math
import re
import unicodedata
from datetime import datetime
from typing import Any

import orjson

from ..scenarios.model import (
    AnswerCheck,
    AnswerDatetime,
    AnswerExact,
    AnswerNumber,
    AnswerOneOf,
    AnswerSet,
    AnswerText,
)
from .expressions import resolve
from .outcome import Verdict

__all__ = ["check_answer", "normal_text", "parse_instant", "parse_number"]

_NUMBER_WITH_UNIT = re.compile(r"^\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*(.*?)\s*$")


def check_answer(check: AnswerCheck, answer: Any, env: dict[str, Any]) -> Verdict:
    answer = _decoded(answer)
    if check.item is not None:
        if not isinstance(answer, list) or check.item >= len(answer):
            return Verdict.fail(f"the answer {_show(answer)} has no element {check.item}")
        answer = _decoded(answer[check.item])
    if isinstance(check, AnswerOneOf):
        options = [resolve(option, env) for option in check.options]
        hit = any(_key(answer) == _key(option) for option in options)
        return _verdict(hit, f"{_show(answer)} {'is' if hit else 'is not'} one of {_show(options)}")
    expected = resolve(check.expected, env)
    if isinstance(check, AnswerNumber):
        return _number(check, answer, expected)
    if isinstance(check, AnswerDatetime):
        return _instant(check, answer, expected)
    if isinstance(check, AnswerSet):
        return _set(answer, expected)
    if isinstance(check, AnswerText):
        if expected is None:
            return Verdict.fail("the scenario gives no expected text (its expression is empty)")
        hit = isinstance(answer, str) and normal_text(answer) == normal_text(str(expected))
        return _verdict(hit, f"{_show(answer)} {'matches' if hit else 'does not match'} {_show(expected)}")
    assert isinstance(check, AnswerExact)
    hit = _key(answer, normal=False) == _key(expected, normal=False)
    return _verdict(hit, f"{_show(answer)} {'equals' if hit else 'does not equal'} {_show(expected)}")


def _number(check: AnswerNumber, answer: Any, expected: Any) -> Verdict:
    if isinstance(answer, list) and len(answer) == 1:
        answer = _decoded(answer[0])
    if expected is None or isinstance(expected, bool) or not isinstance(expected, int | float):
        return Verdict.fail(f"no numeric expectation to compare with (expected {_show(expected)})")
    value, unit = parse_number(answer)
    if value is None:
        return Verdict.fail(f"{_show(answer)} is not a number")
    if unit and (check.unit is None or _unit(unit) != _unit(check.unit)):
        return Verdict.fail(f"{_show(answer)} is in {unit!r}, not the {check.unit or 'bare number'} asked for")
    hit = abs(value - float(expected)) <= check.tolerance + 1e-9
    within = f" within {check.tolerance:g}" if check.tolerance else ""
    return _verdict(hit, f"{value:g} {'is' if hit else 'is not'}{within} {float(expected):g}")


def _instant(check: AnswerDatetime, answer: Any, expected: Any) -> Verdict:
    if isinstance(answer, list) and len(answer) == 1:
        answer = answer[0]
    got, want = parse_instant(answer), parse_instant(expected)
    if want is None:
        return Verdict.fail(f"no instant to compare with (expected {_show(expected)})")
    if got is None:
        return Verdict.fail(f"{_show(answer)} is not a date-time with a time zone")
    gap = abs((got - want).total_seconds())
    hit = gap <= check.tolerance_seconds
    return _verdict(hit, f"{answer} {'is' if hit else 'is not'} the same instant as {expected}")


def _set(answer: Any, expected: Any) -> Verdict:
    if not isinstance(expected, list):
        expected = [] if expected is None else [expected]
    if not isinstance(answer, list):
        return Verdict.fail(f"{_show(answer)} is not a list")
    left, right = sorted(map(_key, answer)), sorted(map(_key, expected))
    hit = left == right
    return _verdict(hit, f"{_show(answer)} {'has' if hit else 'does not have'} the elements of {_show(expected)}")


def parse_number(value: Any) -> tuple[float | None, str]:
    """A number and its unit from 191, 191.0, "191", "191 mg/dL"; (None, "") when it is not one."""
    if isinstance(value, bool):
        return None, ""
    if isinstance(value, int | float):
        return (float(value), "") if math.isfinite(value) else (None, "")
    if isinstance(value, str):
        match = _NUMBER_WITH_UNIT.match(value)
        if match:
            return float(match.group(1)), match.group(2)
    return None, ""


def parse_instant(value: Any) -> datetime | None:
    """An aware datetime from FHIR dateTime text; None for dates without a time zone or anything else."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.utcoffset() is not None else None


def normal_text(text: str) -> str:
    """Case, accents, surrounding punctuation and runs of spaces ignored."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return " ".join(plain.split()).strip(" .,;:!?\"'")


def _unit(unit: str) -> str:
    return unit.strip().replace(" ", "").casefold()


def _decoded(answer: Any) -> Any:
    """A JSON list or number sent as text ("[69]", "69") is taken as that JSON value."""
    if isinstance(answer, str) and answer.strip()[:1] in ("[", "{"):
        try:
            return orjson.loads(answer)
        except orjson.JSONDecodeError:
            return answer
    return answer


def _key(value: Any, normal: bool = True) -> Any:
    """A comparable form: numbers by value (not bools), strings normalised (if ``normal``), lists element-wise."""
    if isinstance(value, bool) or value is None:
        return ("v", repr(value))
    if isinstance(value, int | float):
        return ("n", float(value))
    if isinstance(value, str):
        return ("s", normal_text(value) if normal else value)
    if isinstance(value, list):
        return ("l", tuple(_key(v, normal) for v in value))
    return ("j", orjson.dumps(value, option=orjson.OPT_SORT_KEYS))


def _verdict(passed: bool, reason: str) -> Verdict:
    return Verdict(passed=passed, reason=reason)


def _show(value: Any) -> str:
    text = orjson.dumps(value).decode() if not isinstance(value, str) else repr(value)
    return text if len(text) <= 120 else text[:117] + "..."
