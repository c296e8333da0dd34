"""An episode's session life cycle: create, 10 writes (8 creates, an update and a delete that shadow base rows),
delete; timed over HTTP and through the Python ``Repository`` API."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from fhir_sandbox.fhir_server.searchparams import registry
from fhir_sandbox.fhir_server.storage.engine import make_engine
from fhir_sandbox.fhir_server.storage.repository import Repository

from .dataset import DATASET_NOW, PatientSummary, lab_observation

__all__ = ["PHASES", "CycleTimes", "Write", "http_cycles", "repository_cycles", "write_script"]

PHASES = ("create", "writes", "delete", "whole")
_WARMUP_CYCLES = 3


@dataclass(frozen=True)
class Write:
    method: str  # POST, PUT or DELETE
    resource_type: str
    resource_id: str | None
    body: dict[str, Any] | None


@dataclass
class CycleTimes:
    """Durations (ns) of each phase, one sample per cycle."""

    samples_ns: dict[str, list[int]] = field(default_factory=lambda: {phase: [] for phase in PHASES})

    def add(self, create: int, writes: int, delete: int) -> None:
        for phase, value in zip(PHASES, (create, writes, delete, create + writes + delete), strict=True):
            self.samples_ns[phase].append(value)


def write_script(patients: list[PatientSummary], rng: random.Random) -> list[Write]:
    """The 10 writes of one episode, on one random patient."""
    patient = rng.choice(patients)
    writes = [
        Write("POST", "Observation", None, lab_observation(patient.id, rng, DATASET_NOW - timedelta(minutes=5 * i)))
        for i in range(8)
    ]
    updated_id = rng.choice(patient.observation_ids)
    replacement = {**lab_observation(patient.id, rng, DATASET_NOW), "id": updated_id, "status": "amended"}
    writes.append(Write("PUT", "Observation", updated_id, replacement))
    writes.append(Write("DELETE", "Condition", rng.choice(patient.condition_ids), None))
    return writes


def http_cycles(
    origins: dict[str, str], patients: dict[str, list[PatientSummary]], cycles: int, seed: int
) -> dict[str, CycleTimes]:
    """``cycles`` timed life cycles over HTTP on each server in ``origins`` (by setting name), interleaved so that
    drift in the machine's speed affects every setting alike."""
    rng = random.Random(f"{seed}:http-sessions")
    with httpx.Client(timeout=60.0, headers={"Accept": "application/fhir+json"}) as client:

        def cycle(setting: str, number: int) -> tuple[int, int, int]:
            origin = origins[setting]
            script = write_script(patients[setting], rng)
            session_id = f"bench-http-{number}-{rng.getrandbits(32):08x}"
            start = time.perf_counter_ns()
            created = client.post(f"{origin}/sessions", json={"id": session_id, "now": DATASET_NOW.isoformat()})
            after_create = time.perf_counter_ns()
            _check(created, 201, "POST /sessions")
            base = created.json()["fhir_base_url"]
            for write in script:
                path = f"{base}/{write.resource_type}" + (f"/{write.resource_id}" if write.resource_id else "")
                response = client.request(write.method, path, json=write.body)
                _check(response, (200, 201), f"{write.method} {path}")
            after_writes = time.perf_counter_ns()
            deleted = client.delete(f"{origin}/sessions/{session_id}")
            end = time.perf_counter_ns()
            _check(deleted, 204, f"DELETE /sessions/{session_id}")
            return after_create - start, after_writes - after_create, end - after_writes

        return _interleaved(list(origins), cycle, cycles)


def repository_cycles(
    databases: dict[str, Path], patients: dict[str, list[PatientSummary]], cycles: int, seed: int
) -> dict[str, CycleTimes]:
    """``cycles`` timed life cycles through ``Repository`` in this process on each database, interleaved."""
    rng = random.Random(f"{seed}:api-sessions")
    engines = {setting: make_engine(path) for setting, path in databases.items()}
    repositories = {setting: Repository(engine, registry()) for setting, engine in engines.items()}

    def cycle(setting: str, number: int) -> tuple[int, int, int]:
        repository = repositories[setting]
        script = write_script(patients[setting], rng)
        session_id = f"bench-api-{number}-{rng.getrandbits(32):08x}"
        start = time.perf_counter_ns()
        repository.create_session(session_id, now=DATASET_NOW)
        after_create = time.perf_counter_ns()
        for write in script:
            with repository.unit(session_id) as unit:
                url = write.resource_type + (f"/{write.resource_id}" if write.resource_id else "")
                if write.method == "POST":
                    assert write.body is not None
                    unit.create(write.body, url=url)
                elif write.method == "PUT":
                    assert write.body is not None and write.resource_id is not None
                    unit.update(write.resource_type, write.resource_id, write.body, url=url)
                else:
                    assert write.resource_id is not None
                    unit.delete(write.resource_type, write.resource_id, url=url)
        after_writes = time.perf_counter_ns()
        repository.delete_session(session_id)
        end = time.perf_counter_ns()
        return after_create - start, after_writes - after_create, end - after_writes

    try:
        return _interleaved(list(databases), cycle, cycles)
    finally:
        for engine in engines.values():
            engine.dispose()


def _interleaved(
    settings: list[str], cycle: Callable[[str, int], tuple[int, int, int]], cycles: int
) -> dict[str, CycleTimes]:
    """Run ``cycle`` for every setting in turn, alternating the order (AB, BA, ...) so neither always goes
    first; the first ``_WARMUP_CYCLES`` rounds are not kept."""
    times = {setting: CycleTimes() for setting in settings}
    for number in range(_WARMUP_CYCLES + cycles):
        order = settings if number % 2 == 0 else settings[::-1]
        for setting in order:
            phases = cycle(setting, number)
            if number >= _WARMUP_CYCLES:
                times[setting].add(*phases)
    return times


def _check(response: httpx.Response, expected: int | tuple[int, ...], what: str) -> None:
    allowed = expected if isinstance(expected, tuple) else (expected,)
    if response.status_code not in allowed:
        raise RuntimeError(f"{what} answered {response.status_code}, expected {expected}: {response.text[:300]}")
