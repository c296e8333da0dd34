"""Episodes end to end against a live server: open a session, set up, compute values, let the agent act,
collect its writes, grade, delete the session; and ``fhir-sandbox scenarios validate`` on a tiny population."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fhir_sandbox.agents.base import Agent, AgentTask
from fhir_sandbox.agents.tools import FhirTools
from fhir_sandbox.baselines import do_nothing_agent, reference_agent
from fhir_sandbox.cli import app
from fhir_sandbox.episode import Termination, run_episode
from fhir_sandbox.fhir_server import Repository, make_engine
from fhir_sandbox.fhir_server.searchparams import registry
from fhir_sandbox.fixtures import LAB_CODE_SYSTEM, MRN_SYSTEM
from fhir_sandbox.scenarios.model import Scenario
from fhir_sandbox.scenarios.solutions import SOLUTIONS
from fhir_sandbox.server import LocalServer
from fhir_sandbox.targets import LocalTarget, SessionHandle
from typer.testing import CliRunner

NOW = "2023-11-13T10:15:00+00:00"
MRN = "E0000001"
PATIENT_REF = "Patient/episode-patient"  # setup creates it with this id (PUT)


def k_observation(when: str, value: float, subject: str = PATIENT_REF) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LAB_CODE_SYSTEM, "code": "K"}], "text": "Potassium"},
        "subject": {"reference": subject},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": "mmol/L"},
    }


SETUP = [
    {
        "resourceType": "Patient",
        "id": "episode-patient",
        "identifier": [{"system": MRN_SYSTEM, "value": MRN}],
        "birthDate": "1950-01-01",
    },
    k_observation("2023-11-12T06:00:00Z", 3.6),
    k_observation("2023-11-13T06:30:00Z", 3.1),
]
ORDER = {
    "resourceType": "MedicationRequest",
    "status": "active",
    "intent": "order",
    "medicationCodeableConcept": {"text": "Potassium chloride 20 mEq oral"},
    "subject": {"reference": "Patient/${patient.id}"},
    "authoredOn": "${now}",
}


def scenario_data(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": "test.episode.potassium",
        "category": "test",
        "title": "Replace potassium",
        "instruction": f"Patient {MRN}: what is the latest potassium? If below 3.5, order KCl 20 mEq.",
        "now": NOW,
        "patient": {"mrn": MRN},
        "setup": SETUP,
        "expectations": {
            "values": {"k": {"kind": "latest", "code": "K"}},
            "checks": [
                {"name": "answer", "type": "answer_number", "expected": {"expr": "%k.value"}, "unit": "mmol/L"},
                {
                    "name": "ordered",
                    "type": "write_fields",
                    "resource": "MedicationRequest",
                    "when": "%k.value < 3.5",
                    "fields": [
                        {"path": "medicationCodeableConcept.text", "contains": "potassium"},
                        {"path": "authoredOn", "same_instant": {"expr": "%now"}},
                    ],
                },
                {"name": "one_write", "type": "write_count", "count": 1},
                {"name": "own_patient", "type": "writes_for_patient"},
                {"name": "no_deletes", "type": "no_deletes"},
            ],
        },
        "reward_basis": ["answer", "ordered", "one_write", "own_patient"],
        "limits": {"max_steps": 5},
        "reference": {
            "steps": [
                {"tool": "search", "args": {"resource_type": "Observation",
                                            "params": {"patient": "${patient.id}", "code": "K", "_sort": "-date"}}},
                {"tool": "create", "args": {"resource": ORDER}},
                {"tool": "finish", "args": {"answer": "3.1 mmol/L"}},
            ]
        },
    }  # fmt: skip
    return data | changes


class RecordingTarget(LocalTarget):
    """A LocalTarget that remembers the sessions it opened."""

    def __init__(self, origin: str, http: httpx.Client):
        super().__init__(origin, http)
        self.opened: list[SessionHandle] = []

    def open(self, now: datetime, label: str) -> SessionHandle:
        handle = super().open(now, label)
        self.opened.append(handle)
        return handle


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30, verify=False) as client:
        yield client


@pytest.fixture
def target(live_server: LocalServer, http: httpx.Client) -> RecordingTarget:
    return RecordingTarget(live_server.url, http)


def assert_deleted(live_server: LocalServer, http: httpx.Client, target: RecordingTarget) -> None:
    assert target.opened, "no session was opened"
    for handle in target.opened:
        assert http.get(f"{live_server.url}/sessions/{handle.id}").status_code == 404
        assert http.get(f"{handle.fhir_base_url}/Patient").status_code == 404
    listed = {s["id"] for s in http.get(f"{live_server.url}/sessions").json()}
    assert not listed & {h.id for h in target.opened}


class ScriptedAgent:
    """An agent defined by a function of the tools (for tests)."""

    def __init__(self, act: Any, name: str = "scripted"):
        self.act = act
        self.name = name

    def run(self, task: AgentTask, tools: FhirTools) -> None:
        self.act(task, tools)


def agent_of(act: Any) -> Any:
    def make(_scenario: Scenario, _variables: Mapping[str, str]) -> Agent:
        return ScriptedAgent(act)

    return make


# -- run_episode ------------------------------------------------------------------------------------------------------


def test_reference_agent_scores_one(live_server: LocalServer, http: httpx.Client, target: RecordingTarget) -> None:
    scenario = Scenario.model_validate(scenario_data())
    result = run_episode(scenario, reference_agent, target, http, trial=2)
    assert result.termination == Termination.FINISHED, result.error
    assert result.score == 1.0, [c for c in result.checks if not c.passed]
    assert (result.agent, result.trial, result.scenario_id, result.scenario_version) == (
        "reference",
        2,
        "test.episode.potassium",
        1,
    )
    assert result.answer == "3.1 mmol/L"
    assert result.values["k"]["value"] == 3.1
    assert result.patient_id is not None
    assert [c.tool for c in result.tool_calls] == ["search", "create", "finish"]
    # setup wrote three resources; only the agent's order is its write
    assert [(w.kind, w.type) for w in result.writes] == [("create", "MedicationRequest")]
    written = result.writes[0].resource
    assert written is not None and written["subject"]["reference"] == f"Patient/{result.patient_id}"
    assert written["authoredOn"].startswith("2023-11-13T10:15:00")
    assert {c.name: c.counted for c in result.checks}["no_deletes"] is False
    assert result.error is None and result.seconds > 0
    assert_deleted(live_server, http, target)


def test_a_named_reference_solution_decides_from_what_the_tools_return(
    http: httpx.Client, target: RecordingTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    def replace_if_low(call: Any, variables: Mapping[str, str]) -> None:
        params = {"patient": variables["patient.id"], "code": "K", "_sort": "-date", "_count": "1"}
        latest = call("search", {"resource_type": "Observation", "params": params}).content["entry"][0]["resource"]
        value = latest["valueQuantity"]["value"]
        if value < 3.5:
            order = {
                **ORDER,
                "subject": {"reference": f"Patient/{variables['patient.id']}"},
                "authoredOn": variables["now"],
            }
            call("create", {"resource": order})
        call("finish", {"answer": value})

    monkeypatch.setitem(SOLUTIONS, "test.replace_if_low", replace_if_low)
    reference = {"function": "test.replace_if_low", "expects_writes": True}
    scenario = Scenario.model_validate(scenario_data(reference=reference))
    result = run_episode(scenario, reference_agent, target, http)
    assert (result.termination, result.score, result.answer) == (Termination.FINISHED, 1.0, 3.1)
    assert [c.tool for c in result.tool_calls] == ["search", "create", "finish"]
    assert scenario.expects_action  # declared: a function's writes cannot be read off it
    with pytest.raises(ValueError, match="expects_writes"):
        Scenario.model_validate(scenario_data(reference={"function": "test.replace_if_low"}))


def test_do_nothing_agent_scores_zero(live_server: LocalServer, http: httpx.Client, target: RecordingTarget) -> None:
    scenario = Scenario.model_validate(scenario_data())
    result = run_episode(scenario, do_nothing_agent, target, http)
    assert result.termination == Termination.FINISHED
    assert result.score == 0.0
    assert result.agent == "do-nothing" and result.answer is None and result.writes == []
    failed = {c.name for c in result.checks if c.counted and not c.passed}
    assert failed == {"answer", "ordered", "one_write"}
    assert_deleted(live_server, http, target)


def test_sessions_are_isolated_between_episodes(http: httpx.Client, target: RecordingTarget) -> None:
    scenario = Scenario.model_validate(scenario_data())
    first = run_episode(scenario, reference_agent, target, http)
    second = run_episode(scenario, reference_agent, target, http)
    # each episode's setup made exactly one patient with the MRN (find_patient would refuse two)
    assert first.score == second.score == 1.0
    assert len({h.id for h in target.opened}) == 2


def test_setup_refused_is_an_infrastructure_error(
    live_server: LocalServer, http: httpx.Client, target: RecordingTarget
) -> None:
    broken = [*SETUP, {"resourceType": "Observation", "status": "final"}]  # no code: invalid
    scenario = Scenario.model_validate(scenario_data(setup=broken))
    result = run_episode(scenario, reference_agent, target, http)
    assert result.termination == Termination.INFRASTRUCTURE_ERROR
    assert result.score is None
    assert result.error is not None and "SetupError" in result.error and "setup was refused" in result.error
    assert result.tool_calls == [] and result.checks == []
    assert_deleted(live_server, http, target)


def test_missing_patient_is_an_infrastructure_error(
    live_server: LocalServer, http: httpx.Client, target: RecordingTarget
) -> None:
    scenario = Scenario.model_validate(scenario_data(patient={"mrn": "NOBODY"}))
    result = run_episode(scenario, reference_agent, target, http)
    assert result.termination == Termination.INFRASTRUCTURE_ERROR and result.score is None
    assert result.error is not None and "ValuesUnavailable" in result.error and "NOBODY" in result.error
    assert_deleted(live_server, http, target)


def test_unreachable_target_is_an_infrastructure_error(http: httpx.Client) -> None:
    scenario = Scenario.model_validate(scenario_data())
    result = run_episode(scenario, reference_agent, LocalTarget("http://127.0.0.1:9", http), http)
    assert result.termination == Termination.INFRASTRUCTURE_ERROR and result.score is None
    assert result.error is not None and "TargetError" in result.error


def test_agent_that_raises_is_an_agent_error(
    live_server: LocalServer, http: httpx.Client, target: RecordingTarget
) -> None:
    def act(task: AgentTask, tools: FhirTools) -> None:
        tools.call("create", {"resource": {**ORDER, "subject": {"reference": "Patient/x"}, "authoredOn": NOW}})
        raise ValueError("the model returned nonsense")

    scenario = Scenario.model_validate(scenario_data())
    result = run_episode(scenario, agent_of(act), target, http)
    assert result.termination == Termination.AGENT_ERROR
    assert result.score == 0.0
    assert result.error == "ValueError: the model returned nonsense"
    assert [w.type for w in result.writes] == ["MedicationRequest"]  # what it did before failing is still recorded
    assert result.checks  # and graded
    assert_deleted(live_server, http, target)


def test_step_limit(live_server: LocalServer, http: httpx.Client, target: RecordingTarget) -> None:
    def act(task: AgentTask, tools: FhirTools) -> None:
        assert task.max_steps == 5
        while True:
            tools.call("search", {"resource_type": "Observation", "params": {"code": "K"}})

    scenario = Scenario.model_validate(scenario_data())
    result = run_episode(scenario, agent_of(act), target, http)
    assert result.termination == Termination.STEP_LIMIT
    assert result.score == 0.0
    assert len(result.tool_calls) == 5
    assert result.error is not None and "step limit of 5" in result.error
    assert_deleted(live_server, http, target)


def test_right_answer_without_finish_scores_zero(http: httpx.Client, target: RecordingTarget) -> None:
    lookup = scenario_data(reward_basis=["answer"])

    def act(task: AgentTask, tools: FhirTools) -> None:
        tools.call("search", {"resource_type": "Observation", "params": {"code": "K"}})

    result = run_episode(Scenario.model_validate(lookup), agent_of(act), target, http)
    assert result.termination == Termination.NO_FINISH and result.score == 0.0


def test_task_and_variables_given_to_the_agent(http: httpx.Client, target: RecordingTarget) -> None:
    seen: dict[str, Any] = {}

    def make(scenario: Scenario, variables: Mapping[str, str]) -> Agent:
        seen["variables"] = dict(variables)

        def act(task: AgentTask, tools: FhirTools) -> None:
            seen["task"] = task
            tools.call("finish", {"answer": 3.1})

        return ScriptedAgent(act)

    result = run_episode(Scenario.model_validate(scenario_data(reward_basis=["answer"])), make, target, http)
    assert result.score == 1.0
    assert seen["variables"] == {"now": NOW, "patient.id": result.patient_id, "patient.mrn": MRN}
    task: AgentTask = seen["task"]
    assert task.now == NOW and task.max_steps == 5 and task.instruction.startswith(f"Patient {MRN}")
    assert task.fhir_base_url == target.opened[0].fhir_base_url


def test_update_of_a_setup_resource_is_an_update_with_prior(http: httpx.Client, target: RecordingTarget) -> None:
    def act(task: AgentTask, tools: FhirTools) -> None:
        found = tools.call("search", {"resource_type": "Observation", "params": {"code": "K", "_sort": "date"}})
        oldest = found.content["entry"][0]["resource"]
        tools.call("update", {"resource": {**oldest, "status": "entered-in-error"}})
        tools.call("finish", {"answer": 3.1})

    data = scenario_data(reward_basis=["unchanged"])
    data["expectations"]["checks"].append({"name": "unchanged", "type": "unchanged", "resource": "Observation"})
    result = run_episode(Scenario.model_validate(data), agent_of(act), target, http)
    assert [(w.kind, w.version) for w in result.writes] == [("update", 2)]
    write = result.writes[0]
    assert write.prior is not None and write.prior["status"] == "final"
    assert write.resource is not None and write.resource["status"] == "entered-in-error"
    assert result.score == 0.0
    assert {c.name: c.reason for c in result.checks}["unchanged"].startswith("update of existing Observation/")


# -- fhir-sandbox scenarios validate ----------------------------------------------------------------------------------

POPULATION_MRN = "P0000001"


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny population file: one patient with one potassium."""
    path = tmp_path_factory.mktemp("population") / "tiny.db"
    engine = make_engine(path)
    patient = {
        "resourceType": "Patient",
        "id": "pop-1",
        "identifier": [{"system": MRN_SYSTEM, "value": POPULATION_MRN}],
        "birthDate": "1960-05-05",
    }
    Repository(engine, registry()).bulk_load([patient, {**k_observation(NOW, 4.2, "Patient/pop-1"), "id": "k-1"}])
    engine.dispose()
    return path


def lookup_data(**changes: Any) -> dict[str, Any]:
    return {
        "id": "test.validate.lookup",
        "category": "test",
        "title": "Latest potassium",
        "instruction": f"Latest potassium of {POPULATION_MRN}?",
        "now": "2023-11-13T12:00:00+00:00",
        "patient": {"mrn": POPULATION_MRN},
        "expectations": {
            "values": {"k": {"kind": "latest", "code": "K"}},
            "checks": [{"name": "answer", "type": "answer_number", "expected": {"expr": "%k.value"}}],
        },
        "reward_basis": ["answer"],
        "reference": {"steps": [{"tool": "finish", "args": {"answer": 4.2}}]},
    } | changes


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(data) if not isinstance(data, bytes) else data)
    return path


def validate(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["scenarios", "validate", *args], catch_exceptions=False)
    return result.exit_code, result.output


def test_validate_good_files_exit_zero(tmp_path: Path, population: Path) -> None:
    write_json(tmp_path / "lookup.json", lookup_data())
    write_json(tmp_path / "sub" / "action.json", scenario_data())
    code, output = validate(str(tmp_path), "--database", str(population))
    assert code == 0, output
    assert "2 scenario(s), 0 problem(s); reference 100.0%, do-nothing 0.0%" in output


def test_validate_bad_files_exit_one_with_file_and_pointer(tmp_path: Path, population: Path) -> None:
    good = write_json(tmp_path / "good.json", lookup_data())
    wrong = write_json(
        tmp_path / "wrong.json",
        lookup_data(id="test.validate.wrong", reference={"steps": [{"tool": "finish", "args": {"answer": 9}}]}),
    )
    invalid = write_json(tmp_path / "invalid.json", lookup_data(id="test.validate.invalid", now="noon"))
    bad_when = lookup_data(id="test.validate.when")
    bad_when["expectations"]["checks"][0]["when"] = "%k.value >> 1"  # fhirpathpy alone would evaluate this
    when = write_json(tmp_path / "when.json", bad_when)
    solution = write_json(
        tmp_path / "solution.json",
        lookup_data(id="test.validate.solution", reference={"function": "no_such", "expects_writes": False}),
    )
    code, output = validate(str(tmp_path), "--database", str(population))
    assert code == 1, output
    lines = output.splitlines()

    def problems_of(path: Path) -> list[str]:
        return [line.removeprefix(f"{path}:") for line in lines if line.startswith(f"{path}:")]

    assert problems_of(good) == []
    assert problems_of(wrong) == ["/reference: the reference solution scores 0.0: answer: 9 is not 4.2"]
    [now_problem] = problems_of(invalid)
    assert now_problem.startswith("/now: Input should be a valid datetime") and "(got 'noon')" in now_problem
    [when_problem] = problems_of(when)
    assert when_problem.startswith("/expectations/checks/0/when: invalid FHIRPath '%k.value >> 1'")
    [solution_problem] = problems_of(solution)
    assert solution_problem.startswith("/reference/function: no reference solution 'no_such'; valid: ")
    assert lines[-1].startswith("4 scenario(s), 4 problem(s); reference ")


def test_validate_reports_a_do_nothing_agent_that_scores_on_an_action(tmp_path: Path, population: Path) -> None:
    data = scenario_data(id="test.validate.lenient", reward_basis=["no_deletes"])
    path = write_json(tmp_path / "lenient.json", data)
    code, output = validate(str(path), "--database", str(population))
    assert code == 1
    assert f"{path}:/expectations: the do-nothing agent scores 1.0 on a scenario that expects an action" in output


def test_validate_without_running(tmp_path: Path) -> None:
    write_json(tmp_path / "lookup.json", lookup_data())
    code, output = validate(str(tmp_path), "--no-run")
    assert code == 0 and "1 scenario(s), 0 problem(s)" in output
    write_json(tmp_path / "broken.json", b"{")
    code, output = validate(str(tmp_path), "--no-run")
    assert code == 1 and f"{tmp_path / 'broken.json'}:/: not valid JSON" in output
