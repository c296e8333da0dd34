"""The agent's FHIR tools against a live server: results are the server's truth, URLs outside the session's base
are refused before any request, bad calls are error results, and the step limit holds."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fhir_sandbox.agents.base import AgentTask
from fhir_sandbox.agents.scripted import DoNothingAgent, ReferenceAgent, substitute
from fhir_sandbox.agents.tools import TOOL_SPECS, FhirTools, StepLimitReached
from fhir_sandbox.fhir_server.client import FhirClient

PATIENT = {"resourceType": "Patient", "name": [{"family": "Tool", "given": ["Test"]}], "birthDate": "1950-01-01"}


class Counting:
    """An httpx client that counts the requests it sends."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.http = httpx.Client(timeout=30, verify=False, event_hooks={"request": [self.requests.append]})


@pytest.fixture
def counting() -> Iterator[Counting]:
    counting = Counting()
    yield counting
    counting.http.close()


def tools_for(base: str, counting: Counting, max_steps: int = 20) -> FhirTools:
    return FhirTools(FhirClient(base, counting.http), max_steps)


@pytest.fixture
def tools(session_base: str, counting: Counting) -> FhirTools:
    return tools_for(session_base, counting)


def task(base: str, max_steps: int = 20) -> AgentTask:
    return AgentTask(instruction="x", now="2023-11-13T10:15:00+00:00", fhir_base_url=base, max_steps=max_steps)


# -- the server's truth -----------------------------------------------------------------------------------------------


def test_create_read_search_update(tools: FhirTools, session_base: str) -> None:
    created = tools.call("create", {"resource": PATIENT})
    assert created.ok and created.status == 201
    patient_id = created.content["id"]
    assert created.content["meta"]["versionId"] == "1"

    read = tools.call("read", {"resource_type": "Patient", "id": patient_id})
    assert read.ok and read.status == 200 and read.content["name"][0]["family"] == "Tool"

    found = tools.call("search", {"resource_type": "Patient", "params": {"family": "Tool"}})
    assert found.ok and found.content["resourceType"] == "Bundle" and found.content["type"] == "searchset"
    assert [e["resource"]["id"] for e in found.content["entry"]] == [patient_id]
    none = tools.call("search", {"resource_type": "Patient", "params": {"family": "Nobody"}})
    assert none.ok and none.content.get("entry", []) == []

    changed = {**read.content, "birthDate": "1951-02-03"}
    updated = tools.call("update", {"resource": changed})
    assert updated.ok and updated.status == 200
    assert updated.content["meta"]["versionId"] == "2" and updated.content["birthDate"] == "1951-02-03"

    assert [c.tool for c in tools.calls] == ["create", "read", "search", "search", "update"]
    assert [c.step for c in tools.calls] == [1, 2, 3, 4, 5]
    assert tools.calls[0].method == "POST" and tools.calls[0].url == f"{session_base}/Patient"
    assert tools.calls[4].method == "PUT" and tools.calls[4].url == f"{session_base}/Patient/{patient_id}"
    assert tools.steps_left == 15


def test_search_params_lists_and_paging_url(tools: FhirTools) -> None:
    for family in ("Page", "Page", "Page"):
        assert tools.call("create", {"resource": {**PATIENT, "name": [{"family": family}]}}).ok
    first = tools.call("search", {"resource_type": "Patient", "params": {"family": "Page", "_count": 2}})
    assert first.ok and len(first.content["entry"]) == 2
    next_url = next(link["url"] for link in first.content["link"] if link["relation"] == "next")
    second = tools.call("search", {"url": next_url})
    assert second.ok and len(second.content["entry"]) == 1
    both = tools.call("search", {"resource_type": "Patient", "params": {"birthdate": ["ge1949-01-01", "le1950-12-31"]}})
    assert both.ok and both.content["total"] == 3


def test_read_missing_is_a_404_result(tools: FhirTools) -> None:
    result = tools.call("read", {"resource_type": "Patient", "id": "does-not-exist"})
    assert not result.ok and result.status == 404
    assert result.content["resourceType"] == "OperationOutcome"
    assert tools.calls[-1].ok is False and tools.calls[-1].status == 404


def test_invalid_resource_gets_the_operation_outcome(tools: FhirTools) -> None:
    bad = {"resourceType": "Observation", "status": "final", "valueQuantity": {"value": "high"}}  # no code
    result = tools.call("create", {"resource": bad})
    assert not result.ok and result.status in (400, 422)
    assert result.content["resourceType"] == "OperationOutcome"
    assert result.content["issue"][0]["severity"] == "error"
    unknown_type = tools.call("create", {"resource": {"resourceType": "Potato"}})
    assert not unknown_type.ok and unknown_type.content["resourceType"] == "OperationOutcome"


def test_update_of_a_missing_id_is_refused(tools: FhirTools, counting: Counting) -> None:
    result = tools.call("update", {"resource": PATIENT})  # no id
    assert not result.ok and result.status is None and "id must be a plain FHIR id" in result.content
    assert counting.requests == []


# -- only the session's base ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://example.org/fhir/Patient",
        "https://{host}/sessions/{session}/fhir/Patient",  # another scheme
        "http://{host}/fhir/Patient",  # the shared default session
        "http://{host}/sessions/other-session/fhir/Patient",
        "http://{host}/sessions/{session}x/fhir/Patient",  # a session whose id starts like ours
        "http://{host}/sessions/{session}/fhir/../../other-session/fhir/Patient",
        "http://{host}/sessions/{session}/fhir/%2e%2e/%2e%2e/other-session/fhir/Patient",
        "../../other-session/fhir/Patient",
        "Patient/../../../other-session/fhir/Patient",
        "http://{host}/sessions",
    ],
)
def test_urls_outside_the_base_are_refused_without_a_request(session_base: str, counting: Counting, url: str) -> None:
    host = httpx.URL(session_base).netloc.decode()
    session = session_base.split("/sessions/")[1].split("/")[0]
    tools = tools_for(session_base, counting)
    result = tools.call("search", {"url": url.format(host=host, session=session)})
    assert not result.ok and result.status is None
    assert "outside the FHIR base URL" in result.content
    assert counting.requests == []
    assert tools.calls[-1].url is None and tools.calls[-1].ok is False


@pytest.mark.parametrize(
    ("tool", "args", "message"),
    [
        ("read", {"resource_type": "Patient", "id": "../x"}, "id must be"),
        ("read", {"resource_type": "Patient", "id": ".."}, "id must be"),
        ("read", {"resource_type": "Patient", "id": "a/b"}, "id must be"),
        ("read", {"resource_type": "Patient", "id": "a?b=1"}, "id must be"),
        ("read", {"resource_type": "Patient", "id": "%2e%2e"}, "id must be"),
        ("read", {"resource_type": "../sessions", "id": "x"}, "resource_type must be"),
        ("read", {"resource_type": "Patient", "id": 7}, "id must be"),
        ("search", {"resource_type": "Patient/../..", "params": {}}, "resource_type must be"),
        ("search", {"resource_type": "Patient", "params": "family=x"}, "params must be an object"),
        ("create", {"resource": {"resourceType": "../Patient"}}, "resourceType must be"),
        ("create", {"resource": ["not", "an", "object"]}, "resource must be a FHIR resource"),
        ("create", {"resource": {"id": "x"}}, "resource must be a FHIR resource"),
        ("update", {"resource": {**PATIENT, "id": "../../other"}}, "id must be"),
    ],
)
def test_path_smuggling_is_refused_without_a_request(
    session_base: str, counting: Counting, tool: str, args: dict[str, Any], message: str
) -> None:
    tools = tools_for(session_base, counting)
    result = tools.call(tool, args)
    assert not result.ok and result.status is None
    assert message in result.content
    assert counting.requests == []


# -- bad calls and the step limit -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tool", "args", "message"),
    [
        ("delete", {"resource_type": "Patient", "id": "x"}, "unknown tool 'delete'; the tools are search, read"),
        ("read", {"resource_type": "Patient"}, "missing argument(s) id"),
        ("read", {}, "missing argument(s) id, resource_type"),
        ("read", {"resource_type": "Patient", "id": "x", "version": 2}, "unknown argument(s) version; allowed"),
        ("create", {}, "missing argument(s) resource"),
        ("finish", {}, "missing argument(s) answer"),
        ("finish", {"answer": 1, "confidence": 0.9}, "unknown argument(s) confidence"),
        ("search", {"type": "Patient"}, "unknown argument(s) type"),
    ],
)
def test_bad_calls_are_error_results(tools: FhirTools, tool: str, args: dict[str, Any], message: str) -> None:
    result = tools.call(tool, args)
    assert not result.ok and result.status is None
    assert result.content.startswith("error: ") and message in result.content
    assert tools.calls[-1].tool == tool and tools.calls[-1].ok is False
    assert not tools.finished


def test_tool_specs_match_the_tools() -> None:
    assert [spec["name"] for spec in TOOL_SPECS] == ["search", "read", "create", "update", "finish"]
    assert all(spec["parameters"]["type"] == "object" for spec in TOOL_SPECS)


def test_step_limit(session_base: str, counting: Counting) -> None:
    tools = tools_for(session_base, counting, max_steps=3)
    tools.call("search", {"resource_type": "Patient"})
    tools.call("read", {"resource_type": "Patient", "id": "nope"})
    tools.call("nonsense", {})  # a bad call is a step too
    assert tools.steps_left == 0
    sent = len(counting.requests)
    with pytest.raises(StepLimitReached, match="step limit of 3"):
        tools.call("search", {"resource_type": "Patient"})
    with pytest.raises(StepLimitReached):
        tools.call("finish", {"answer": 1})
    assert len(tools.calls) == 3 and len(counting.requests) == sent == 2
    assert not tools.finished


def test_finish_records_the_answer_and_ends_the_task(tools: FhirTools, counting: Counting) -> None:
    result = tools.call("finish", {"answer": [3.2, "2023-11-13T06:30:00Z"]})
    assert result.ok and tools.finished and tools.answer == [3.2, "2023-11-13T06:30:00Z"]
    after = tools.call("search", {"resource_type": "Patient"})
    assert not after.ok and "already finished" in after.content
    assert len(tools.calls) == 1 and counting.requests == []
    again = tools.call("finish", {"answer": "changed my mind"})
    assert not again.ok and tools.answer == [3.2, "2023-11-13T06:30:00Z"]


def test_finish_with_null_answer(tools: FhirTools) -> None:
    assert tools.call("finish", {"answer": None}).ok
    assert tools.finished and tools.answer is None


# -- the scripted agents ----------------------------------------------------------------------------------------------


def test_substitute_replaces_placeholders_recursively() -> None:
    variables = {"patient.id": "p1", "patient.mrn": "S1", "now": "2023-11-13T10:15:00+00:00"}
    value = {
        "ref": "Patient/${patient.id}",
        "list": ["${patient.mrn}", 3, {"when": "${now}"}, None],
        "same": "${patient.id}-${patient.id}",
        "unknown": "${other}",
        "number": 1.5,
    }
    assert substitute(value, variables) == {
        "ref": "Patient/p1",
        "list": ["S1", 3, {"when": "2023-11-13T10:15:00+00:00"}, None],
        "same": "p1-p1",
        "unknown": "${other}",
        "number": 1.5,
    }
    assert value["ref"] == "Patient/${patient.id}"  # the input is not modified


def test_reference_agent_replays_steps_with_placeholders(tools: FhirTools, session_base: str) -> None:
    patient = tools.call("create", {"resource": PATIENT}).content
    variables = {"patient.id": patient["id"], "now": "2023-11-13T10:15:00+00:00"}
    flag = {
        "resourceType": "Flag",
        "status": "active",
        "code": {"text": "created at ${now}"},
        "subject": {"reference": "Patient/${patient.id}"},
    }
    steps = [
        ("read", {"resource_type": "Patient", "id": "${patient.id}"}),
        ("create", {"resource": flag}),
        ("finish", {"answer": "${patient.id}"}),
        ("search", {"resource_type": "Patient"}),  # never run: the agent stops at finish
    ]
    ReferenceAgent(variables, steps=steps).run(task(session_base), tools)
    assert tools.finished and tools.answer == patient["id"]
    assert [c.tool for c in tools.calls] == ["create", "read", "create", "finish"]
    assert tools.calls[1].ok and tools.calls[1].url.endswith(f"/Patient/{patient['id']}")
    written = tools.calls[2].result
    assert written["subject"]["reference"] == f"Patient/{patient['id']}"
    assert written["code"]["text"] == "created at 2023-11-13T10:15:00+00:00"
    assert steps[1][1]["resource"]["subject"]["reference"] == "Patient/${patient.id}"


def test_reference_agent_runs_a_script(tools: FhirTools, session_base: str) -> None:
    seen: list[Any] = []

    def script(call: Any, variables: Any) -> None:
        seen.append(call("search", {"resource_type": "Patient"}).ok)
        call("finish", {"answer": variables["patient.mrn"]})

    ReferenceAgent({"patient.mrn": "S1"}, script=script).run(task(session_base), tools)
    assert seen == [True] and tools.answer == "S1"


def test_reference_agent_needs_steps_or_script() -> None:
    with pytest.raises(ValueError, match="steps or a script"):
        ReferenceAgent({})
    with pytest.raises(ValueError, match="steps or a script"):
        ReferenceAgent({}, steps=[], script=lambda call, variables: None)


def test_do_nothing_agent_finishes_with_none(tools: FhirTools, session_base: str, counting: Counting) -> None:
    DoNothingAgent().run(task(session_base), tools)
    assert tools.finished and tools.answer is None
    assert [c.tool for c in tools.calls] == ["finish"]
    assert counting.requests == []
