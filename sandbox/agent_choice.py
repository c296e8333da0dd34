"""``--agent``: which agent runs each episode: ``llm`` (default with ``--model``), ``text-protocol``,
``reference``, ``do-nothing``, or ``module:Class`` for your own (a class with a ``name`` and
``run(task, tools)``, built with no arguments, or with ``model=`` when ``--model`` is given)."""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from pydantic import BaseModel, Field

from .agents.base import Agent
from .agents.llm import LLMAgent
from .agents.models import chat_model
from .baselines import BASELINE_AGENTS
from .episode import AgentFactory
from .scenarios.model import Scenario

__all__ = ["AgentChoice", "AgentChoiceError", "agent_factory"]

BUILT_IN = ("llm", "text-protocol", "reference", "do-nothing")


class AgentChoiceError(ValueError):
    pass


class AgentChoice(BaseModel):
    agent: str = Field("reference", description="llm, text-protocol, reference, do-nothing or module:Class")
    model: str | None = Field(None, description="provider:model for llm and text-protocol agents")
    base_url: str | None = Field(None, description="An OpenAI-compatible server for --model openai:NAME")
    temperature: float | None = 0.0
    seed: int | None = None
    prices: tuple[float, float] | None = Field(None, description="USD per million input, output tokens")


def agent_factory(choice: AgentChoice) -> AgentFactory:
    """Raises AgentChoiceError (or ModelSpecError) for a choice that cannot run, before any episode starts."""
    if choice.agent in BASELINE_AGENTS:
        return BASELINE_AGENTS[choice.agent]
    if choice.agent in ("llm", "text-protocol"):
        if not choice.model:
            raise AgentChoiceError(f"--agent {choice.agent} needs --model provider:name (e.g. openai:gpt-4o-mini)")
        chat_model(choice.model, choice.temperature, choice.seed, choice.base_url)  # fail now, not per episode
        return _model_agent(choice)
    if ":" in choice.agent:
        return _user_agent(choice)
    raise AgentChoiceError(f"--agent {choice.agent!r}: expected one of {', '.join(BUILT_IN)} or module:Class")


def _model_agent(choice: AgentChoice) -> AgentFactory:
    def make(_scenario: Scenario, _variables: Mapping[str, str]) -> Agent:
        model = chat_model(choice.model or "", choice.temperature, choice.seed, choice.base_url)
        if choice.agent == "text-protocol":
            from .agents.text_protocol import TextProtocolAgent

            return TextProtocolAgent(model, choice.model, prices=choice.prices)
        return LLMAgent(model, choice.model, prices=choice.prices)

    return make


def _user_agent(choice: AgentChoice) -> AgentFactory:
    module_name, _, class_name = choice.agent.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise AgentChoiceError(f"--agent {choice.agent!r}: cannot import it ({exc})") from None
    if not callable(getattr(cls, "run", None)):
        raise AgentChoiceError(f"--agent {choice.agent!r}: the class has no run(task, tools) method")

    def make(_scenario: Scenario, _variables: Mapping[str, str]) -> Agent:
        if choice.model:
            return cls(model=chat_model(choice.model, choice.temperature, choice.seed, choice.base_url))  # type: ignore[no-any-return]
        return cls()  # type: ignore[no-any-return]

    return make
