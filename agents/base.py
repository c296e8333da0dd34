"""The agent interface: an agent gets the task (what a physician asks, and when) and the episode's tools, and
acts until it calls ``finish`` or runs out of steps. How it decides is its own business."""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel, Field

from .tools import FhirTools

__all__ = ["Agent", "AgentTask", "ModelUnavailable"]


class ModelUnavailable(RuntimeError):
    """The model provider kept failing with transient errors: not the agent's fault (an infrastructure error)."""


class AgentTask(BaseModel):
    """What the agent is told."""

    instruction: str
    context: str = ""
    now: str = Field(description="The current instant as the chart knows it (the scenario's clock).")
    fhir_base_url: str
    max_steps: int


class Agent(Protocol):
    name: str

    def run(self, task: AgentTask, tools: FhirTools) -> None:
        """Act through ``tools`` until finished; raise nothing for the agent's own mistakes (tools report them)."""
