"""The requests the latency benchmarks send: reads by id and the agents' query mix (MedAgentBench-style
patient-scoped searches), drawn at random over the generated patients. URLs are built before timing starts."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlencode

from .dataset import DATASET_NOW, LABS, LOINC, PatientSummary

__all__ = ["BASELINE", "QUERY_KINDS", "Workload"]

BASELINE = "read"

# kind -> what it stands for; the latency targets apply to every kind
QUERY_KINDS: dict[str, str] = {
    "read": "Observation/{id}",
    "obs-latest-code": "Observation?patient=…&code=…&_sort=-date&_count=1",
    "obs-vitals-24h": "Observation?patient=…&category=vital-signs&date=ge…",
    "patient-name-dob": "Patient?family=…&birthdate=…",
    "medrequest-active": "MedicationRequest?patient=…&status=active",
    "condition-all": "Condition?patient=…",
}


@dataclass
class Workload:
    """Random requests over ``patients``; ``rng`` makes the sequence repeatable."""

    patients: list[PatientSummary]
    rng: random.Random

    def url(self, kind: str) -> str:
        """A path relative to a FHIR base (``Observation?...``) for one request of ``kind``."""
        rng = self.rng
        patient = rng.choice(self.patients)
        if kind == "read":
            return f"Observation/{rng.choice(patient.observation_ids)}"
        if kind == "obs-latest-code":
            local = rng.choice(patient.lab_codes)
            # agents use both forms: a system|code token and MedAgentBench's bare local codes ("K", "MG")
            code = f"{LOINC}|{LABS[local].loinc}" if rng.random() < 0.5 else local
            return _query("Observation", patient=patient.id, code=code, _sort="-date", _count="1")
        if kind == "obs-vitals-24h":
            # asked of admitted patients: pick one who is in hospital at DATASET_NOW, if there is any
            admitted = [p for p in self.patients if p.inpatient_now]
            patient = rng.choice(admitted) if admitted else patient
            since = (DATASET_NOW - timedelta(hours=24)).isoformat(timespec="seconds")
            return _query("Observation", patient=patient.id, category="vital-signs", date=f"ge{since}")
        if kind == "patient-name-dob":
            return _query("Patient", family=patient.family, birthdate=patient.birth_date)
        if kind == "medrequest-active":
            return _query("MedicationRequest", patient=patient.id, status="active")
        if kind == "condition-all":
            return _query("Condition", patient=patient.id)
        raise ValueError(f"unknown query kind {kind!r}; known: {', '.join(QUERY_KINDS)}")

    def urls(self, kind: str, count: int) -> list[str]:
        return [self.url(kind) for _ in range(count)]

    def mixed(self, count: int) -> list[tuple[str, str]]:
        """``count`` (kind, url) pairs, kinds in equal shares, shuffled."""
        kinds = [kind for _ in range(count // len(QUERY_KINDS) + 1) for kind in QUERY_KINDS][:count]
        self.rng.shuffle(kinds)
        return [(kind, self.url(kind)) for kind in kinds]


def _query(resource_type: str, **params: str) -> str:
    return f"{resource_type}?{urlencode(params)}"
