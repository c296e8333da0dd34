"""One episode: open a session at the scenario's ``now``, add its setup, compute its values, let the agent act
through the FHIR tools, collect what it wrote (the write log and the final state of each written resource),
grade, and delete the session. Preparing and grading are in ``grading`` (MCP sessions use them too)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import httpx
from pydantic import BaseModel, Field

from .agents.base import Agent, AgentTask, ModelUnavailable
from .agents.tools import FhirTools, StepLimitReached, TimeLimitReached, ToolCall, ToolErrorLimitReached
from .agents.trace import AgentTrace
from .graders.inputs import Write
from .graders.outcome import CheckResult
from .graders.values import ValuesUnavailable, instant_text
from .grading import SetupError, grade_episode, prepare_episode
from .scenarios.model import Scenario
from .targets import NotRunnable, SessionHandle, Target, TargetError
from .templates import Templates

__all__ = ["AgentFactory", "EpisodeLimits", "EpisodeResult", "Termination", "run_episode"]

# Builds the episode's agent; gets the scenario and the ${...} variables of its reference solution
AgentFactory = Callable[[Scenario, Mapping[str, str]], Agent]


class Termination(StrEnum):
    FINISHED = "finished"
    NO_FINISH = "no_finish"  # the agent stopped without calling finish
    STEP_LIMIT = "step_limit"
    TOOL_ERROR_LIMIT = "tool_error_limit"
    TIME_LIMIT = "time_limit"
    TOKEN_LIMIT = "token_limit"
    AGENT_ERROR = "agent_error"  # the agent (or its model) raised
    INFRASTRUCTURE_ERROR = "infrastructure_error"  # server, setup or model provider failed: retried, not scored
    NOT_RUNNABLE = "not_runnable"  # needs writes the run does not allow (an endpoint without --allow-writes)


_LIMITS = {
    StepLimitReached: Termination.STEP_LIMIT,
    ToolErrorLimitReached: Termination.TOOL_ERROR_LIMIT,
    TimeLimitReached: Termination.TIME_LIMIT,
}


class EpisodeLimits(BaseModel):
    """Limits of the run, applied to every episode (the step limit is the scenario's)."""

    max_tool_errors: int | None = Field(10, ge=1, description="Failed tool calls before the episode ends.")
    max_seconds: float | None = Field(600, gt=0, description="Wall time of the agent's part of an episode.")
    max_tokens: int | None = Field(None, ge=1, description="Input + output tokens of the agent's model calls.")


class EpisodeResult(BaseModel):
    scenario_id: str
    scenario_version: int
    category: str
    agent: str
    model: str | None = None
    trial: int = 0
    termination: Termination
    score: float | None = Field(description="1.0 or 0.0; None when an infrastructure error prevented grading.")
    answer: Any = None
    checks: list[CheckResult] = Field(default_factory=list)
    tool_calls: list[ToolCall] = Field(default_factory=list)
    writes: list[Write] = Field(default_factory=list)
    values: dict[str, Any] = Field(default_factory=dict)
    patient_id: str | None = None
    patient: dict[str, Any] | None = Field(None, description="The scenario's Patient as the episode found it.")
    messages: list[dict[str, Any]] = Field(default_factory=list, description="The agent's conversation, if any.")
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float | None = None
    retries: int = Field(0, description="Model calls retried after transient errors.")
    attempts: int = Field(1, description="Tries of the episode (infrastructure errors are retried).")
    error: str | None = None
    created: list[str] = Field(
        default_factory=list,
        description="On an endpoint without sessions: what the episode created there (setup and agent), as Type/id.",
    )
    removed: list[str] = Field(default_factory=list, description="Of ``created``, what was deleted after grading.")
    started: str
    seconds: float


def run_episode(
    scenario: Scenario,
    make_agent: AgentFactory,
    target: Target,
    http: httpx.Client,
    trial: int = 0,
    limits: EpisodeLimits | None = None,
    templates: Templates | None = None,
) -> EpisodeResult:
    """Run one episode of ``scenario`` on ``target``: prepare its session (a copy of the scenario's template when
    ``templates`` is given), let the agent act, grade, close the session. Never raises for an agent's or the
    target's failure: the result's termination says what happened."""
    limits = limits or EpisodeLimits()
    started, clock = datetime.now(UTC), time.perf_counter()
    fields: dict[str, Any] = {}
    agent_name = "?"
    trace: AgentTrace | None = None
    handle: SessionHandle | None = None
    try:
        prepared = templates.prepare(scenario) if templates else prepare_episode(scenario, target, http)
        handle, client, patient = prepared.handle, prepared.client, prepared.patient
        agent = make_agent(scenario, prepared.variables)
        agent_name = agent.name
        trace = getattr(agent, "trace", None)
        deadline = time.monotonic() + limits.max_seconds if limits.max_seconds else None
        tools = FhirTools(
            client,
            scenario.limits.max_steps,
            limits.max_tool_errors,
            deadline,
            allow_writes=handle.allow_writes,
            tag=handle.tags,
            calls=handle.calls,
        )
        termination, error = _act(agent, scenario, handle, tools)
        if limits.max_tokens and trace and trace.input_tokens + trace.output_tokens > limits.max_tokens:
            termination, error = Termination.TOKEN_LIMIT, f"used more than {limits.max_tokens} tokens"
        writes, result = grade_episode(prepared, tools.answer, target)
        score = result.score if termination == Termination.FINISHED else 0.0
        fields = {
            "termination": termination,
            "score": score,
            "answer": tools.answer,
            "checks": result.checks,
            "tool_calls": tools.calls,
            "writes": writes,
            "values": prepared.values,
            "patient_id": patient["id"] if patient else None,
            "patient": patient,
            "error": error,
        }
    except NotRunnable as exc:
        fields = {"termination": Termination.NOT_RUNNABLE, "score": None, "error": str(exc)}
    except (TargetError, ValuesUnavailable, SetupError, ModelUnavailable, httpx.HTTPError) as exc:
        fields = {
            "termination": Termination.INFRASTRUCTURE_ERROR,
            "score": None,
            "error": f"{type(exc).__name__}: {exc}",
        }
    finally:
        if handle is not None:
            try:
                target.close(handle)
            except TargetError as exc:
                fields.setdefault("error", str(exc))
            fields |= {"created": list(handle.created), "removed": list(handle.removed)}
    if trace is not None:
        fields |= {
            "model": trace.model,
            "messages": trace.messages,
            "input_tokens": trace.input_tokens,
            "output_tokens": trace.output_tokens,
            "cost": trace.cost,
            "retries": trace.retries,
        }
    return EpisodeResult(
        scenario_id=scenario.id,
        scenario_version=scenario.version,
        category=scenario.category,
        agent=agent_name,
        trial=trial,
        started=started.isoformat(timespec="seconds"),
        seconds=round(time.perf_counter() - clock, 4),
        **fields,
    )


def _act(agent: Agent, scenario: Scenario, handle: SessionHandle, tools: FhirTools) -> tuple[Termination, str | None]:
    task = AgentTask(
        instruction=scenario.instruction,
        context=scenario.context,
        now=instant_text(scenario.now),
        fhir_base_url=handle.fhir_base_url,
        max_steps=scenario.limits.max_steps,
    )
    try:
        agent.run(task, tools)
    except (StepLimitReached, ToolErrorLimitReached, TimeLimitReached) as exc:
        return _LIMITS[type(exc)], str(exc)
    except (httpx.HTTPError, ModelUnavailable):
        raise  # the server or the model provider failed, not the agent
    except Exception as exc:  # an agent's own failure is its result, whatever it raised
        return Termination.AGENT_ERROR, f"{type(exc).__name__}: {exc}"
    return (Termination.FINISHED, None) if tools.finished else (Termination.NO_FINISH, None)
