"""``fhir-sandbox mcp`` and ``fhir-sandbox grade``, driven by the MCP SDK's own client: in memory for most tests,
and once end to end over stdio with ``fhir-sandbox mcp`` as a subprocess. A two-patient population and a small
scenario (record a blood pressure for patient 0): the tools are TOOL_SPECS, the task is a prompt and a resource,
writes land in the session, a URL outside it is refused, and grading scores correct actions 1 and doing nothing 0."""

from __future__ import annotations

import fcntl
import json
import os
import re
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx
import pytest
from fhir_sandbox.agents.tools import TOOL_SPECS
from fhir_sandbox.cli import app
from fhir_sandbox.fhir_server import ServerSettings
from fhir_sandbox.fixtures import PopulationOptions, build_population
from fhir_sandbox.fixtures.ids import mrn
from fhir_sandbox.mcp_server import TASK_URI, McpSession, build_mcp_server, find_scenario, open_session
from fhir_sandbox.server import LocalServer
from fhir_sandbox.targets import LocalTarget
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from typer.testing import CliRunner

MRN = mrn(0, 0)  # patient 0 of the population
SCENARIO_ID = "test.mcp-bp"
NOW = "2023-11-13T10:15:00+00:00"
T = TypeVar("T")


def _scenario(title: str = "Record a blood pressure") -> dict[str, Any]:
    return {
        "id": SCENARIO_ID,
        "category": "record-vitals",
        "title": title,
        "instruction": f"Record a blood pressure of 120/80 mmHg for patient {MRN}, measured now.",
        "context": "Use LOINC 85354-9 for the panel, 8480-6 for systolic and 8462-4 for diastolic.",
        "now": NOW,
        "patient": {"mrn": MRN},
        "expectations": {
            "checks": [
                {"name": "one_observation", "type": "write_count", "count": 1, "resource": "Observation"},
                {
                    "name": "bp",
                    "type": "write_fields",
                    "resource": "Observation",
                    "fields": [
                        {"path": "component.where(code.coding.code = '8480-6').valueQuantity.value", "equals": 120},
                        {"path": "component.where(code.coding.code = '8462-4').valueQuantity.value", "equals": 80},
                    ],
                },
                {"name": "for_patient", "type": "writes_for_patient"},
            ]
        },
        "reward_basis": ["one_observation", "bp", "for_patient"],
        "reference": {
            "steps": [
                {"tool": "create", "args": {"resource": _blood_pressure("${patient.id}")}},
                {"tool": "finish", "args": {"answer": "recorded"}},
            ]
        },
    }


def _blood_pressure(patient_id: str) -> dict[str, Any]:
    def component(code: str, value: int) -> dict[str, Any]:
        return {
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "valueQuantity": {"value": value, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"},
        }

    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": NOW,
        "component": [component("8480-6", 120), component("8462-4", 80)],
    }


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two patients (~5 s to build), built once per run: xdist workers share the run's temporary root."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    path = root / "mcp-population.db"
    with (root / "mcp-population.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            build_population(PopulationOptions(patients=2), path)
    return path


@pytest.fixture(scope="module")
def fhir(population: Path) -> Iterator[LocalServer]:
    with LocalServer(ServerSettings(database=str(population))) as server:
        yield server


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    folder = tmp_path / "scenarios"
    folder.mkdir()
    (folder / "bp.json").write_text(json.dumps(_scenario()))
    return folder


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def session(fhir: LocalServer, population: Path, suite: Path, state_dir: Path) -> Iterator[McpSession]:
    with httpx.Client(timeout=60) as http:
        scenario, file = find_scenario(SCENARIO_ID, [str(suite)])
        target = LocalTarget(fhir.url, http)
        opened = open_session(scenario, file, [str(suite)], str(population), target, http, state_dir)
        yield opened
        http.delete(f"{fhir.url}/sessions/{opened.state.session_id}")  # when a test did not grade it


def _with_client(session: McpSession, act: Callable[[Client], Awaitable[T]]) -> T:
    async def main() -> T:
        async with Client(build_mcp_server(session)) as client:
            return await act(client)

    return anyio.run(main)


async def _record_blood_pressure(client: Client) -> tuple[str, str]:
    """What a correct agent does: find the patient, create the Observation, finish. Returns both ids."""
    found = await client.call_tool("search", {"resource_type": "Patient", "params": {"identifier": MRN}})
    assert not found.is_error, _text(found)
    patient_id = json.loads(_text(found))["entry"][0]["resource"]["id"]
    created = await client.call_tool("create", {"resource": _blood_pressure(patient_id)})
    assert not created.is_error, _text(created)
    finished = await client.call_tool("finish", {"answer": "recorded"})
    assert (finished.is_error, _text(finished)) == (False, "finished")
    return patient_id, json.loads(_text(created))["id"]


def _text(result: Any) -> str:
    return str(result.content[0].text)


def _grade(session_id: str, state_dir: Path) -> Any:
    return CliRunner().invoke(app, ["grade", session_id, "--state-dir", str(state_dir)])


def _flat(output: str) -> str:
    return " ".join(output.split())


def test_the_tools_are_the_typed_tools_and_the_task_is_a_prompt_and_a_resource(session: McpSession) -> None:
    async def act(client: Client) -> tuple[Any, ...]:
        tools = await client.list_tools()
        prompt = await client.get_prompt("task")
        resource = await client.read_resource(TASK_URI)
        return tools, prompt, resource, client.instructions

    tools, prompt, resource, instructions = _with_client(session, act)

    listed = [(tool.name, tool.description, tool.input_schema) for tool in tools.tools]
    assert listed == [(spec["name"], spec["description"], spec["parameters"]) for spec in TOOL_SPECS]
    task = prompt.messages[0].content.text
    assert task == resource.contents[0].text == session.task_text
    assert _scenario()["instruction"] in task and f"It is {NOW} now" in task and "at most 20 tool calls" in task
    assert task in instructions


def test_correct_actions_land_in_the_session_and_grade_scores_one(
    session: McpSession, fhir: LocalServer, state_dir: Path
) -> None:
    patient_id, observation_id = _with_client(session, _record_blood_pressure)

    session_id = session.state.session_id
    with httpx.Client(timeout=30) as http:
        log = LocalTarget(fhir.url, http).write_log(session.prepared.handle)
        assert [(e["method"], e["type"], e["id"]) for e in log] == [("POST", "Observation", observation_id)]
        assert http.get(f"{fhir.url}/fhir/Observation/{observation_id}").status_code == 404  # not outside the session
    stored = json.loads((state_dir / f"{session_id}.json").read_text())
    assert (stored["termination"], stored["answer"], stored["patient"]["id"]) == ("finished", "recorded", patient_id)
    assert [call["tool"] for call in stored["tool_calls"]] == ["search", "create", "finish"]

    graded = _grade(session_id, state_dir)
    assert graded.exit_code == 0, graded.output
    assert "score 1: finished, 3 tool call(s), 1 write(s)" in _flat(graded.output)
    assert "fail" not in graded.output
    with httpx.Client(timeout=30) as http:
        # deleted after grading (the list, not GET /sessions/ID: a server caches the sessions it has seen)
        assert session_id not in [listed["id"] for listed in http.get(f"{fhir.url}/sessions").json()]
    again = _grade(session_id, state_dir)
    assert again.exit_code == 0 and "score 1" in again.output and "graded earlier" in _flat(again.output)


def test_a_do_nothing_session_scores_zero(session: McpSession, state_dir: Path) -> None:
    async def act(client: Client) -> Any:
        return await client.call_tool("finish", {"answer": None})

    assert not _with_client(session, act).is_error
    graded = CliRunner().invoke(app, ["grade", session.state.session_id, "--state-dir", str(state_dir), "--keep"])
    assert graded.exit_code == 0, graded.output
    assert "score 0: finished, 1 tool call(s), 0 write(s)" in _flat(graded.output)
    assert "0 Observation write(s), expected 1" in _flat(graded.output)


def test_a_url_outside_the_session_is_refused_and_json_text_arguments_are_parsed(
    session: McpSession, fhir: LocalServer
) -> None:
    outside = (
        "http://example.org/fhir/Patient",
        f"{fhir.url}/fhir/Patient?identifier={MRN}",  # the same server's shared session
    )

    async def act(client: Client) -> list[Any]:
        results = [await client.call_tool("search", {"url": url}) for url in outside]
        as_text = {"resource_type": "Patient", "params": json.dumps({"identifier": MRN})}
        return [*results, await client.call_tool("search", as_text)]

    *refused, parsed = _with_client(session, act)
    for url, result in zip(outside, refused, strict=True):
        assert result.is_error
        assert json.loads(_text(result))["body"] == (
            f"error: {url} is outside the FHIR base URL {session.prepared.handle.fhir_base_url}"
        )
    assert not parsed.is_error and json.loads(_text(parsed))["total"] == 1
    assert [call.ok for call in session.tools.calls] == [False, False, True]


def test_grade_errors_are_one_clear_message(session: McpSession, suite: Path, state_dir: Path) -> None:
    unknown = _grade("0123456789abcdef", state_dir)
    assert unknown.exit_code == 2 and "unknown session '0123456789abcdef'" in unknown.output
    invalid = _grade("../etc", state_dir)
    assert invalid.exit_code == 2 and "is not a session id" in invalid.output

    (suite / "bp.json").write_text(json.dumps(_scenario(title="Record a BP, edited")))
    changed = _grade(session.state.session_id, state_dir)
    assert changed.exit_code == 2
    assert f"scenario {SCENARIO_ID} has changed since session {session.state.session_id}" in _flat(changed.output)
    assert "Traceback" not in unknown.output + invalid.output + changed.output


def test_mcp_refuses_an_unknown_scenario_or_database(population: Path, suite: Path, state_dir: Path) -> None:
    common = ["--suite", str(suite), "--state-dir", str(state_dir)]
    unknown = CliRunner().invoke(app, ["mcp", "--scenario", "nope", "--database", str(population), *common])
    assert unknown.exit_code == 2 and f"no scenario 'nope' in {suite}" in _flat(unknown.stderr)
    missing = CliRunner().invoke(app, ["mcp", "--scenario", SCENARIO_ID, "--database", "missing.db", *common])
    assert missing.exit_code == 2 and "no population file 'missing.db'" in _flat(missing.stderr)
    assert unknown.stdout == missing.stdout == ""  # on stdio, stdout is the protocol's


def test_stdio_end_to_end_with_fhir_sandbox_mcp_as_a_subprocess(
    population: Path, suite: Path, state_dir: Path, tmp_path: Path
) -> None:
    script = Path(sys.executable).with_name("fhir-sandbox")
    command, prefix = (
        (str(script), []) if script.exists() else (sys.executable, ["-c", "from fhir_sandbox.cli import main; main()"])
    )
    arguments = ["mcp", "--scenario", SCENARIO_ID, "--suite", str(suite), "--database", str(population)]
    parameters = StdioServerParameters(command=command, args=[*prefix, *arguments, "--state-dir", str(state_dir)])
    stderr = tmp_path / "mcp-stderr.txt"

    async def main() -> list[str]:
        with stderr.open("w") as errlog:
            async with Client(stdio_client(parameters, errlog=errlog)) as client:
                names = [tool.name for tool in (await client.list_tools()).tools]
                await _record_blood_pressure(client)
                return names

    assert anyio.run(main) == [spec["name"] for spec in TOOL_SPECS]
    printed = _flat(stderr.read_text())
    session_id = re.search(r"MCP session (\w+)", printed)
    assert session_id, printed
    assert f"fhir-sandbox grade {session_id[1]} --state-dir {state_dir}" in printed
    graded = _grade(session_id[1], state_dir)
    assert graded.exit_code == 0, graded.output
    assert "score 1: finished, 3 tool call(s), 1 write(s)" in _flat(graded.output)
