"""Small hand-written scenarios and agents for the run, report and agent tests (importable from any test: the
tests folder is on sys.path through its conftest; a subprocess gets it with PYTHONPATH).

Every scenario brings its own patient in ``setup``, so an empty population file serves them all."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import orjson
from fhir_sandbox.agents.base import AgentTask
from fhir_sandbox.agents.tools import FhirTools
from fhir_sandbox.fhir_server import make_engine

MRN = "S0000001"
MRN_SYSTEM = "http://hospital.example.org/fhir/sid/mrn"
NOW = "2023-11-13T10:15:00+00:00"
PATIENT_ID = "pt-1"  # the id setup gives the patient (agents must still find it by MRN)

PATIENT = {
    "resourceType": "Patient",
    "id": PATIENT_ID,
    "identifier": [{"system": MRN_SYSTEM, "value": MRN}],
    "name": [{"family": "Tester", "given": ["Kay"]}],
    "gender": "female",
    "birthDate": "1950-01-01",
}
POTASSIUM = {
    "resourceType": "Observation",
    "id": "k-1",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "2823-3"}, {"code": "K"}], "text": "Potassium"},
    "subject": {"reference": f"Patient/{PATIENT_ID}"},
    "effectiveDateTime": "2023-11-13T08:00:00+00:00",
    "valueQuantity": {"value": 3.4, "unit": "mmol/L"},
}
OLDER_POTASSIUM = (
    POTASSIUM
    | {"id": "k-0", "effectiveDateTime": "2023-11-12T08:00:00+00:00"}
    | {"valueQuantity": {"value": 4.1, "unit": "mmol/L"}}
)
MED = {
    "resourceType": "MedicationRequest",
    "id": "mr-1",
    "status": "active",
    "intent": "order",
    "medicationCodeableConcept": {"text": "potassium chloride 20 mEq tablet"},
    "subject": {"reference": f"Patient/{PATIENT_ID}"},
    "authoredOn": "2023-11-12T09:00:00+00:00",
}
PATIENT_SEARCH = {"tool": "search", "args": {"resource_type": "Patient", "params": {"identifier": MRN}}}
K_SEARCH = {
    "tool": "search",
    "args": {
        "resource_type": "Observation",
        "params": {"patient": "${patient.id}", "code": "K", "_sort": "-date", "_count": "1"},
    },
}


def _base(scenario_id: str, category: str, title: str, instruction: str) -> dict[str, Any]:
    return {
        "id": scenario_id,
        "category": category,
        "title": title,
        "instruction": instruction,
        "now": NOW,
        "patient": {"mrn": MRN},
        "setup": [PATIENT, OLDER_POTASSIUM, POTASSIUM],
    }


def potassium(scenario_id: str = "t.k-latest", answer: Any = 3.4, tolerance: float = 0.0) -> dict[str, Any]:
    """A read-only question: the latest potassium (3.4); the reference answers ``answer``."""
    return _base(
        scenario_id,
        "lookup",
        "Latest potassium",
        f"What is the most recent potassium of patient {MRN}, in mmol/L? Answer with the number.",
    ) | {
        "expectations": {
            "values": {"k": {"kind": "latest", "code": "K"}},
            "checks": [
                {
                    "name": "answer",
                    "type": "answer_number",
                    "expected": {"expr": "%k.value"},
                    "unit": "mmol/L",
                    "tolerance": tolerance,
                },
                {"name": "nothing_written", "type": "no_writes"},
            ],
        },
        "reward_basis": ["answer", "nothing_written"],
        "reference": {"steps": [PATIENT_SEARCH, K_SEARCH, {"tool": "finish", "args": {"answer": answer}}]},
    }


def bp_observation(patient_id: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"code": "vital-signs"}]}],
        "code": {"coding": [{"code": "BP"}], "text": "Blood pressure"},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": NOW,
        "valueString": "118/76 mmHg",
    }


def blood_pressure(scenario_id: str = "t.bp-record") -> dict[str, Any]:
    """A write task: record a blood pressure (a create)."""
    return _base(
        scenario_id,
        "charting",
        "Record a blood pressure",
        f"Record a blood pressure of 118/76 mmHg for patient {MRN}, taken now (flowsheet code BP, valueString "
        '"118/76 mmHg"). Then finish with an empty list.',
    ) | {
        "expectations": {
            "checks": [
                {"name": "one_write", "type": "write_count", "resource": "Observation", "count": 1},
                {
                    "name": "bp_fields",
                    "type": "write_fields",
                    "resource": "Observation",
                    "fields": [
                        {"path": "valueString", "equals": "118/76 mmHg"},
                        {"path": "code.coding.code", "equals": "BP"},
                    ],
                },
                {"name": "same_patient", "type": "writes_for_patient"},
            ]
        },
        "reward_basis": ["one_write", "bp_fields", "same_patient"],
        "reference": {
            "steps": [
                PATIENT_SEARCH,
                {"tool": "create", "args": {"resource": bp_observation("${patient.id}")}},
                {"tool": "finish", "args": {"answer": []}},
            ]
        },
    }


def stop_medication(scenario_id: str = "t.med-stop") -> dict[str, Any]:
    """A write task: stop an active order (an update, so the write has a prior version)."""
    scenario = _base(
        scenario_id,
        "orders",
        "Stop potassium chloride",
        f"Stop patient {MRN}'s active potassium chloride order (MedicationRequest mr-1). Finish with an empty list.",
    )
    stopped = copy.deepcopy(MED) | {"status": "stopped", "subject": {"reference": "Patient/${patient.id}"}}
    return scenario | {
        "setup": [*scenario["setup"], MED],
        "expectations": {
            "checks": [
                {"name": "one_update", "type": "write_count", "count": 1, "methods": ["update"]},
                {
                    "name": "stopped",
                    "type": "write_fields",
                    "resource": "MedicationRequest",
                    "fields": [{"path": "status", "equals": "stopped"}],
                },
            ]
        },
        "reward_basis": ["one_update", "stopped"],
        "reference": {
            "steps": [
                {"tool": "read", "args": {"resource_type": "MedicationRequest", "id": "mr-1"}},
                {"tool": "update", "args": {"resource": stopped}},
                {"tool": "finish", "args": {"answer": []}},
            ]
        },
    }


def write_suite(folder: Path, scenarios: list[dict[str, Any]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for scenario in scenarios:
        (folder / f"{scenario['id']}.json").write_bytes(orjson.dumps(scenario, option=orjson.OPT_INDENT_2))
    return folder


def standard_suite(folder: Path) -> Path:
    """Four scenarios in three categories; the reference agent passes all but ``t.k-rounded`` (it answers 3.5
    where the check's tolerance is 0)."""
    return write_suite(
        folder,
        [potassium(), potassium("t.k-rounded", answer=3.5), blood_pressure(), stop_medication()],
    )


def empty_population(path: Path) -> Path:
    """A population file with no resources (the scenarios' setup brings their patient)."""
    make_engine(path).dispose()
    return path


class SlowAgent:
    """Finds the patient, waits, answers 3.4: slow enough for a test to kill its run between episodes
    (``--agent run_kit:SlowAgent``)."""

    name = "slow"
    delay = 0.4

    def run(self, task: AgentTask, tools: FhirTools) -> None:
        tools.call("search", {"resource_type": "Patient", "params": {"identifier": MRN}})
        time.sleep(self.delay)
        tools.call("finish", {"answer": 3.4})
