"""Named reference solutions: for a scenario whose correct tool calls depend on what the chart holds, a Python
function that acts through the same tools an agent has. A scenario names one with
``"reference": {"function": "NAME"}``; register with ``@solution("NAME")``.

A solution gets ``call(tool, args)`` (returning the tool's result: ``.ok``, ``.status``, ``.content``) and the
episode's variables (``patient.id``, ``patient.mrn``, ``now``), and must end with a ``finish`` call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["SOLUTIONS", "Solution", "solution"]

ToolCaller = Callable[[str, dict[str, Any]], Any]
Solution = Callable[[ToolCaller, Mapping[str, str]], None]
SOLUTIONS: dict[str, Solution] = {}


def solution(name: str) -> Callable[[Solution], Solution]:
    def register(function: Solution) -> Solution:
        if name in SOLUTIONS:
            raise ValueError(f"a solution named {name!r} is already registered")
        SOLUTIONS[name] = function
        return function

    return register
