"""One episode: open a session at the scenario's ``now``, add its setup, compute its values, let the agent act
through the FHIR tools, collect what it wrote (the write log and the final state of each written resource),
grade, and delete the session."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import httpx
from pydantic import BaseModel, Field

from .agents.base import Agent, AgentTask
from .agents.tools import FhirTools, StepLimitReached, ToolCall
from .fhir_server.client import FhirClient
from .graders.grade import grade
from .graders.inputs import GradingInput, Write
from .graders.outcome import CheckResult
from .graders.values import ValuesUnavailable, compute_values, find_patient, instant_text
from .scenarios.model import Scenario
from .targets import SessionHandle, Target, TargetError

__all__ = ["AgentFactory", "EpisodeResult", "Termination", "run_episode"]

# Builds the episode's agent; gets the scenario and the ${...} variables of its reference solution
AgentFactory = Callable[[Scenario, Mapping[str, str]], Agent]


class Termination(StrEnum):
    FINISHED = "finished"
    NO_FINISH = "no_finish"  # the agent stopped without calling finish
    STEP_LIMIT = "step_limit"
    AGENT_ERROR = "agent_error"  # the agent (or its model) raised
    INFRASTRUCTURE_ERROR = "infrastructure_error"  # the server or the scenario's setup failed: not scored


class EpisodeResult(BaseModel):
    scenario_id: str
    scenario_version: int
    category: str
    agent: str
    trial: int = 0
    termination: Termination
    score: float | None = Field(description="1.0 or 0.0; None when an infrastructure error prevented grading.")
    answer: Any = None
    checks: list[CheckResult] = Field(default_factory=list)
    tool_calls: list[ToolCall] = Field(default_factory=list)
    writes: list[Write] = Field(default_factory=list)
    values: dict[str, Any] = Field(default_factory=dict)
    patient_id: str | None = None
    error: str | None = None
    started: str
    seconds: float


class SetupError(RuntimeError):
    """The scenario's setup resources were refused by the server."""


def run_episode(
    scenario: Scenario, make_agent: AgentFactory, target: Target, http: httpx.Client, trial: int = 0
) -> EpisodeResult:
    started, clock = datetime.now(UTC), time.perf_counter()
    fields: dict[str, Any] = {}
    agent_name = "?"
    handle: SessionHandle | None = None
    try:
        handle = target.open(scenario.now, label=scenario.id)
        client = FhirClient(handle.fhir_base_url, http)
        _apply_setup(client, scenario.setup)
        mark = len(target.write_log(handle))
        patient = find_patient(client, scenario.patient) if scenario.patient else None
        values = compute_values(scenario, client, patient)
        variables = {"now": instant_text(scenario.now)}
        if patient is not None and scenario.patient is not None:
            variables |= {"patient.id": str(patient["id"]), "patient.mrn": scenario.patient.mrn}
        agent = make_agent(scenario, variables)
        agent_name = agent.name
        tools = FhirTools(client, scenario.limits.max_steps)
        termination, error = _act(agent, scenario, handle, tools)
        writes = _collect_writes(client, target.write_log(handle)[mark:])
        data = GradingInput(answer=tools.answer, writes=writes, values=values, patient=patient, now=variables["now"])
        result = grade(scenario, data)
        score = result.score if termination == Termination.FINISHED else 0.0
        fields = {
            "termination": termination,
            "score": score,
            "answer": tools.answer,
            "checks": result.checks,
            "tool_calls": tools.calls,
            "writes": writes,
            "values": values,
            "patient_id": patient["id"] if patient else None,
            "error": error,
        }
    except (TargetError, ValuesUnavailable, SetupError, httpx.HTTPError) as exc:
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
    except StepLimitReached as exc:
        return Termination.STEP_LIMIT, str(exc)
    except httpx.HTTPError:
        raise  # the server failed, not the agent
    except Exception as exc:  # an agent's own failure is its result, whatever it raised
        return Termination.AGENT_ERROR, f"{type(exc).__name__}: {exc}"
    return (Termination.FINISHED, None) if tools.finished else (Termination.NO_FINISH, None)


def _apply_setup(client: FhirClient, setup: list[dict[str, Any]]) -> None:
    if not setup:
        return
    entries = [
        {
            "resource": resource,
            "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"}
            if resource.get("id")
            else {"method": "POST", "url": resource["resourceType"]},
        }
        for resource in setup
    ]
    reply = client.transaction({"resourceType": "Bundle", "type": "transaction", "entry": entries})
    if not reply.ok:
        raise SetupError(f"the scenario's setup was refused (HTTP {reply.status}): {_diagnostics(reply.body)}")


_KINDS = {"POST": "create", "PATCH": "patch", "DELETE": "delete"}


def _collect_writes(client: FhirClient, log: list[dict[str, Any]]) -> list[Write]:
    """The successful writes in ``log`` with the final state of what they wrote and the version they replaced."""
    final: dict[tuple[str, str], dict[str, Any] | None] = {}
    writes = []
    for entry in log:
        if not 200 <= int(entry["status"]) < 300:
            continue
        key = (entry["type"], entry["id"])
        if key not in final:
            reply = client.read(*key)
            final[key] = reply.body if reply.status == 200 else None
        kind = _KINDS.get(entry["method"], "create" if entry["version"] == 1 else "update")
        prior = None
        if entry["version"] > 1:
            reply = client.vread(entry["type"], entry["id"], entry["version"] - 1)
            prior = reply.body if reply.status == 200 else None
        writes.append(
            Write(
                seq=entry["seq"],
                kind=kind,
                type=entry["type"],
                id=entry["id"],
                version=entry["version"],
                status=entry["status"],
                resource=final[key],
                prior=prior,
            )
        )
    return writes


def _diagnostics(body: Any) -> str:
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        return "; ".join(str(i.get("diagnostics", "")) for i in body.get("issue", ()))
    return str(body)[:300]
