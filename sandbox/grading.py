"""The two halves of an episode around the agent's part, shared by ``run_episode`` and MCP sessions.

``prepare_episode`` opens a session at the scenario's ``now``, adds its setup, marks the write log, finds the
patient and computes the scenario's values; ``grade_episode`` collects what was written after the mark (with the
final state of each written resource and the version it replaced) and grades it with the scenario.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import httpx

from .fhir_server.client import FhirClient
from .graders.grade import grade
from .graders.inputs import GradingInput, Write
from .graders.outcome import Grade
from .graders.values import compute_values, find_patient, instant_text
from .scenarios.model import Scenario
from .targets import SessionHandle, SetupError, Target, TargetError

__all__ = ["PreparedEpisode", "SetupError", "collect_writes", "grade_episode", "prepare_episode"]


@dataclass(frozen=True)
class PreparedEpisode:
    """A session ready for the agent: what grading needs besides the answer and the writes."""

    scenario: Scenario
    handle: SessionHandle
    client: FhirClient
    mark: int  # write-log entries before the agent acted (the setup's); the agent's writes come after
    patient: dict[str, Any] | None
    values: dict[str, Any]
    variables: dict[str, str]  # the ${...} of reference solutions: now, patient.id, patient.mrn

    @property
    def now(self) -> str:
        return self.variables["now"]


def prepare_episode(scenario: Scenario, target: Target, http: httpx.Client) -> PreparedEpisode:
    """Open ``scenario``'s session on ``target`` and prepare it; a session that fails to prepare is closed.

    Raises:
        TargetError, SetupError, ValuesUnavailable, httpx.HTTPError: infrastructure (or scenario) failures.
        NotRunnable: the target may not write the scenario's setup.
    """
    handle = target.open(scenario.now, label=scenario.id)
    try:
        client = FhirClient(handle.fhir_base_url, http)
        target.add_setup(handle, scenario.setup)
        mark = len(target.write_log(handle))
        patient = find_patient(client, scenario.patient) if scenario.patient else None
        values = compute_values(scenario, client, patient)
    except BaseException:
        with contextlib.suppress(TargetError):
            target.close(handle)
        raise
    variables = {"now": instant_text(scenario.now)}
    if patient is not None and scenario.patient is not None:
        variables |= {"patient.id": str(patient["id"]), "patient.mrn": scenario.patient.mrn}
    return PreparedEpisode(scenario, handle, client, mark, patient, values, variables)


def grade_episode(prepared: PreparedEpisode, answer: Any, target: Target) -> tuple[list[Write], Grade]:
    """The writes after the mark and the scenario's grade of them with ``answer`` (whether the agent finished
    is the caller's business).

    Raises:
        TargetError, httpx.HTTPError: the session's write log or resources could not be read.
    """
    writes = collect_writes(prepared.client, target.write_log(prepared.handle)[prepared.mark :])
    data = GradingInput(
        answer=answer, writes=writes, values=prepared.values, patient=prepared.patient, now=prepared.now
    )
    return writes, grade(prepared.scenario, data)


_KINDS = {"POST": "create", "PATCH": "patch", "DELETE": "delete"}


def collect_writes(client: FhirClient, log: list[dict[str, Any]]) -> list[Write]:
    """The successful writes in ``log`` with the final state of what they wrote and the version they replaced
    (and the refused ones a target without sessions records, as they were sent)."""
    final: dict[tuple[str, str], dict[str, Any] | None] = {}
    writes = []
    for entry in log:
        if entry.get("refused"):  # not sent (a run without --allow-writes): graded as the write it would have been
            kind = "create" if entry["method"] == "POST" else "update"
            writes.append(
                Write(
                    seq=entry["seq"],
                    kind=kind,
                    type=entry["type"],
                    id=entry["id"],
                    version=0,
                    status=0,
                    resource=entry["resource"],
                )
            )
            continue
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
