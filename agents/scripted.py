"""Agents that need no model: the reference agent (replays a scenario's reference solution through the same
tools an LLM agent uses) and the do-nothing agent (finishes at once with an empty answer: the floor a benchmark
must hold its scores above)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .base import AgentTask
from .tools import FhirTools

__all__ = ["DoNothingAgent", "ReferenceAgent", "substitute"]

Script = Callable[[Callable[[str, dict[str, Any]], Any], Mapping[str, str]], None]


class DoNothingAgent:
    name = "do-nothing"

    def run(self, task: AgentTask, tools: FhirTools) -> None:
        tools.call("finish", {"answer": None})


class ReferenceAgent:
    """Replays ``steps`` ((tool, args) pairs, ``${name}`` placeholders replaced from ``variables``), or runs
    ``script(call, variables)``."""

    name = "reference"

    def __init__(
        self,
        variables: Mapping[str, str],
        steps: Sequence[tuple[str, Mapping[str, Any]]] | None = None,
        script: Script | None = None,
    ):
        if (steps is None) == (script is None):
            raise ValueError("a reference agent needs steps or a script")
        self.steps = list(steps or ())
        self.script = script
        self.variables = dict(variables)

    def run(self, task: AgentTask, tools: FhirTools) -> None:
        if self.script is not None:
            self.script(tools.call, self.variables)
            return
        for tool, args in self.steps:
            tools.call(tool, substitute(dict(args), self.variables))
            if tools.finished:
                return


def substitute(value: Any, variables: Mapping[str, str]) -> Any:
    """``value`` with every ``${name}`` in its strings replaced (recursively through lists and objects)."""
    if isinstance(value, str):
        for name, replacement in variables.items():
            value = value.replace("${" + name + "}", replacement)
        return value
    if isinstance(value, list):
        return [substitute(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, variables) for k, v in value.items()}
    return value
