"""The agents that need no model, built for a scenario: the reference agent (its reference solution) and the
do-nothing agent."""

from __future__ import annotations

from collections.abc import Mapping

from .agents.base import Agent
from .agents.scripted import DoNothingAgent, ReferenceAgent
from .scenarios.model import Scenario
from .scenarios.solutions import SOLUTIONS

__all__ = ["BASELINE_AGENTS", "do_nothing_agent", "reference_agent"]


def reference_agent(scenario: Scenario, variables: Mapping[str, str]) -> Agent:
    """Raises: KeyError for a reference function that is not registered."""
    reference = scenario.reference
    if reference.function is not None:
        if reference.function not in SOLUTIONS:
            raise KeyError(f"no reference solution {reference.function!r}; registered: {', '.join(sorted(SOLUTIONS))}")
        return ReferenceAgent(variables, script=SOLUTIONS[reference.function])
    return ReferenceAgent(variables, steps=[(step.tool, step.args) for step in reference.steps or ()])


def do_nothing_agent(_scenario: Scenario, _variables: Mapping[str, str]) -> Agent:
    return DoNothingAgent()


BASELINE_AGENTS = {"reference": reference_agent, "do-nothing": do_nothing_agent}
