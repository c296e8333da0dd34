"""The LLM agents end to end, offline: a scripted tool-calling chat model drives LLMAgent and TextProtocolAgent
through real episodes (session, setup, values, tools, grading) on a live server."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest
from fhir_sandbox.agents.fake import ScriptedChatModel, tool_call
from fhir_sandbox.agents.llm import LLMAgent
from fhir_sandbox.agents.text_protocol import TextProtocolAgent
from fhir_sandbox.episode import EpisodeResult, Termination, run_episode
from fhir_sandbox.scenarios.model import Scenario
from fhir_sandbox.server import LocalServer
from fhir_sandbox.targets import LocalTarget
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.messages.tool import invalid_tool_call
from run_kit import MRN, PATIENT_ID, blood_pressure, bp_observation, potassium

POTASSIUM = Scenario.model_validate(potassium())
BLOOD_PRESSURE = Scenario.model_validate(blood_pressure())
USAGE = {"input_tokens": 120, "output_tokens": 7, "total_tokens": 127}


class RateLimitError(Exception):
    """Named like the providers' rate-limit errors: the agent retries it."""


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as client:
        yield client


@pytest.fixture
def episode(live_server: LocalServer, http: httpx.Client) -> Callable[..., EpisodeResult]:
    def run(scenario: Scenario, agent: LLMAgent) -> EpisodeResult:
        return run_episode(scenario, lambda _s, _v: agent, LocalTarget(live_server.url, http), http)

    return run


def potassium_script(messages: list[BaseMessage]) -> AIMessage:
    """Finds the patient by MRN, searches its potassium with the id read from that result, answers its value."""
    last = messages[-1]
    if isinstance(last, HumanMessage):
        return tool_call("search", resource_type="Patient", params={"identifier": MRN})
    assert isinstance(last, ToolMessage)
    found = orjson.loads(str(last.content))["entry"][0]["resource"]
    if found["resourceType"] == "Patient":
        params = {"patient": found["id"], "code": "K", "_sort": "-date", "_count": "1"}
        return tool_call("search", resource_type="Observation", params=params)
    return tool_call("finish", answer=found["valueQuantity"]["value"])


def test_llm_agent_passes_a_scenario_with_a_script_reading_tool_results(episode: Callable[..., EpisodeResult]) -> None:
    model = ScriptedChatModel(script=potassium_script, usage=USAGE)
    result = episode(POTASSIUM, LLMAgent(model, "fake:scripted"))
    assert result.termination == Termination.FINISHED
    assert result.score == 1.0, result.checks
    assert result.answer == 3.4
    assert result.model == "fake:scripted"
    assert [c.tool for c in result.tool_calls] == ["search", "search", "finish"]
    assert result.tool_calls[1].args["params"]["patient"] == PATIENT_ID  # read from the Patient search's result
    assert result.tool_calls[1].method == "GET" and result.tool_calls[1].status == 200
    # tokens from usage_metadata, per model call
    assert (result.input_tokens, result.output_tokens) == (360, 21)
    roles = [m["role"] for m in result.messages]
    assert roles == ["system", "human", "ai", "tool", "ai", "tool", "ai", "tool"]
    assert result.messages[2]["usage"]["input_tokens"] == 120


def test_parallel_tool_calls_are_all_executed_in_order(episode: Callable[..., EpisodeResult]) -> None:
    both = AIMessage(
        content="",
        tool_calls=[
            {"name": "search", "args": {"resource_type": "Patient", "params": {"identifier": MRN}}, "id": "a"},
            {"name": "search", "args": {"resource_type": "Observation", "params": {"code": "K"}}, "id": "b"},
        ],
    )

    def script(messages: list[BaseMessage]) -> AIMessage:
        if isinstance(messages[-1], HumanMessage):
            return both
        return tool_call("finish", answer=3.4)

    result = episode(POTASSIUM, LLMAgent(ScriptedChatModel(script=script)))
    assert result.score == 1.0
    assert [(c.tool, c.args.get("resource_type")) for c in result.tool_calls] == [
        ("search", "Patient"),
        ("search", "Observation"),
        ("finish", None),
    ]
    tool_messages = [m for m in result.messages if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in tool_messages[:2]] == ["a", "b"]
    assert '"resourceType":"Patient"' in tool_messages[0]["content"]
    assert '"resourceType":"Observation"' in tool_messages[1]["content"]


def test_an_invalid_tool_call_gets_an_error_and_runs_nothing(episode: Callable[..., EpisodeResult]) -> None:
    broken = AIMessage(
        content="",
        invalid_tool_calls=[
            invalid_tool_call(name="create", args='{"resource": {"resourceType": "Observ', id="bad-1", error="cut off")
        ],
    )
    script = ScriptedChatModel(script=[broken, tool_call("finish", answer=3.4)])
    result = episode(POTASSIUM, LLMAgent(script))
    assert result.termination == Termination.FINISHED
    assert [c.tool for c in result.tool_calls] == ["finish"]  # the broken create never ran
    assert result.writes == []
    error = next(m for m in result.messages if m["role"] == "tool")
    assert error["tool_call_id"] == "bad-1"
    assert "could not be parsed" in error["content"] and "nothing was run" in error["content"]
    assert result.messages[2]["invalid_tool_calls"][0]["name"] == "create"
    assert result.score == 1.0


def test_a_model_that_stops_without_finish_is_nudged_once(episode: Callable[..., EpisodeResult]) -> None:
    asked = []

    def chatty(messages: list[BaseMessage]) -> str:
        asked.append(len(messages))
        return "The potassium is probably fine."

    result = episode(POTASSIUM, LLMAgent(ScriptedChatModel(script=chatty)))
    assert result.termination == Termination.NO_FINISH
    assert result.score == 0.0
    assert len(asked) == 2  # the first reply, then one more after the nudge
    nudges = [m for m in result.messages[2:] if m["role"] == "human"]
    assert len(nudges) == 1 and "finish" in nudges[0]["content"]


def test_retryable_model_errors_are_retried_and_counted(episode: Callable[..., EpisodeResult]) -> None:
    failures = {"left": 2}

    def flaky(messages: list[BaseMessage]) -> AIMessage:
        if failures["left"]:
            failures["left"] -= 1
            raise RateLimitError("429: slow down")
        return potassium_script(messages)

    result = episode(POTASSIUM, LLMAgent(ScriptedChatModel(script=flaky), backoff_seconds=0.0001))
    assert result.termination == Termination.FINISHED
    assert result.score == 1.0
    assert result.retries == 2


def test_a_model_that_keeps_failing_is_an_infrastructure_error(episode: Callable[..., EpisodeResult]) -> None:
    def down(_messages: list[BaseMessage]) -> AIMessage:
        raise RateLimitError("429: the provider is overloaded")

    agent = LLMAgent(ScriptedChatModel(script=down), "fake:down", max_retries=2, backoff_seconds=0.0001)
    result = episode(POTASSIUM, agent)
    assert result.termination == Termination.INFRASTRUCTURE_ERROR
    assert result.score is None  # not scored: not the agent's failure
    assert result.error is not None and result.error.startswith("ModelUnavailable")
    assert result.retries == 2


def test_a_script_that_runs_out_is_an_agent_error(episode: Callable[..., EpisodeResult]) -> None:
    script = ScriptedChatModel(script=[tool_call("search", resource_type="Patient", params={"identifier": MRN})])
    result = episode(POTASSIUM, LLMAgent(script))
    assert result.termination == Termination.AGENT_ERROR
    assert result.score == 0.0
    assert result.error is not None and "ScriptExhausted" in result.error
    assert len(result.tool_calls) == 1


# -- the MedAgentBench text protocol --------------------------------------------------------------------------------


def text_script(messages: list[BaseMessage], chatter: bool = False) -> str:
    """GET the patient, POST a blood pressure for the id found, FINISH; optionally one invalid action first."""
    base = re.search(r"server at (\S+?)\. Based", str(messages[0].content))
    assert base is not None
    last = str(messages[-1].content)
    if len(messages) == 1:
        return "Let me think about this first." if chatter else f"GET {base[1]}/Patient?identifier={MRN}"
    if last.startswith("Invalid action"):
        return f"GET {base[1]}/Patient?identifier={MRN}"
    if last.startswith("Here is the response from the GET request"):
        patient = orjson.loads(last.split("\n")[1])["entry"][0]["resource"]
        return f"POST {base[1]}/Observation\n{orjson.dumps(bp_observation(patient['id'])).decode()}"
    assert last.startswith("POST request accepted"), last
    return "FINISH([])"


def test_text_protocol_get_post_finish_passes_a_write_scenario(episode: Callable[..., EpisodeResult]) -> None:
    result = episode(BLOOD_PRESSURE, TextProtocolAgent(ScriptedChatModel(script=text_script)))
    assert result.termination == Termination.FINISHED
    assert result.score == 1.0, result.checks
    assert [(c.tool, c.method, c.status) for c in result.tool_calls] == [
        ("search", "GET", 200),
        ("create", "POST", 201),
        ("finish", None, None),
    ]
    assert [(w.kind, w.type) for w in result.writes] == [("create", "Observation")]
    assert result.writes[0].resource is not None
    assert result.writes[0].resource["subject"]["reference"] == f"Patient/{PATIENT_ID}"
    assert result.answer == []


def test_text_protocol_answers_an_invalid_action_and_counts_it(episode: Callable[..., EpisodeResult]) -> None:
    def script(messages: list[BaseMessage]) -> str:
        return text_script(messages, chatter=True)

    result = episode(BLOOD_PRESSURE, TextProtocolAgent(ScriptedChatModel(script=script)))
    assert result.score == 1.0
    failed = [c for c in result.tool_calls if not c.ok]
    assert len(failed) == 1 and failed[0].step == 1
    assert result.messages[2]["content"].startswith("Invalid action")


def test_tool_messages_are_json_text(episode: Callable[..., EpisodeResult]) -> None:
    """What the model is shown is the server's JSON: a tool message parses back into the Bundle."""
    result = episode(POTASSIUM, LLMAgent(ScriptedChatModel(script=potassium_script)))
    bundle: dict[str, Any] = orjson.loads(next(m for m in result.messages if m["role"] == "tool")["content"])
    assert bundle["resourceType"] == "Bundle" and bundle["total"] == 1
