"""``--model openai:NAME --base-url URL`` end to end, offline: the LLM agent talks to a local OpenAI-compatible
chat-completions endpoint (as vLLM or llama.cpp serve) through langchain-openai, acts on a real FHIR server, and
is graded. Also: the tools reach the endpoint in the OpenAI function format, tokens are recorded, and the API
key appears nowhere in the episode's record."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fhir_sandbox.agent_choice import AgentChoice, agent_factory
from fhir_sandbox.episode import run_episode
from fhir_sandbox.fixtures import LAB_CODE_SYSTEM, MRN_SYSTEM
from fhir_sandbox.scenarios import Scenario
from fhir_sandbox.server import LocalServer
from fhir_sandbox.targets import LocalTarget

SECRET = "sk-test-not-a-real-key-0123456789"
MRN = "S0000042"


def _scenario() -> Scenario:
    return Scenario.model_validate(
        {
            "id": "test.k-latest",
            "category": "k-latest",
            "title": "Latest potassium",
            "instruction": f"What is the most recent potassium of patient {MRN}? Answer with the number in mmol/L.",
            "now": "2023-11-13T10:15:00+00:00",
            "patient": {"mrn": MRN},
            "setup": [
                {
                    "resourceType": "Patient",
                    "id": "k-patient",
                    "identifier": [{"system": MRN_SYSTEM, "value": MRN}],
                    "birthDate": "1950-01-01",
                },
                *[
                    {
                        "resourceType": "Observation",
                        "status": "final",
                        "code": {"coding": [{"system": LAB_CODE_SYSTEM, "code": "K"}]},
                        "subject": {"reference": "Patient/k-patient"},
                        "effectiveDateTime": when,
                        "valueQuantity": {"value": value, "unit": "mmol/L"},
                    }
                    for when, value in (("2023-11-12T06:00:00+00:00", 3.9), ("2023-11-13T06:00:00+00:00", 3.1))
                ],
            ],
            "expectations": {
                "values": {"k": {"kind": "latest", "code": "K"}},
                "checks": [
                    {"name": "answer", "type": "answer_number", "expected": {"expr": "%k.value"}, "unit": "mmol/L"},
                    {"name": "no_writes", "type": "no_writes"},
                ],
            },
            "reward_basis": ["answer", "no_writes"],
            "reference": {"steps": [{"tool": "finish", "args": {"answer": 3.1}}]},
        }
    )


class FakeOpenAI:
    """A chat-completions endpoint that plays a competent agent: it reads the tool results it is sent."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.app = FastAPI()
        self.app.post("/v1/chat/completions")(self.complete)

    async def complete(self, request: Request) -> dict[str, Any]:
        body = await request.json()
        self.requests.append({"body": body, "authorization": request.headers.get("authorization")})
        messages = body["messages"]
        tool_results = [m for m in messages if m["role"] == "tool"]
        if not tool_results:
            call = ("search", {"resource_type": "Patient", "params": {"identifier": MRN}})
        elif len(tool_results) == 1:
            patient = json.loads(tool_results[0]["content"])["entry"][0]["resource"]["id"]
            params = {"patient": patient, "code": "K", "_sort": "-date", "_count": "1"}
            call = ("search", {"resource_type": "Observation", "params": params})
        else:
            value = json.loads(tool_results[1]["content"])["entry"][0]["resource"]["valueQuantity"]["value"]
            call = ("finish", {"answer": value})
        return {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "tool_calls",
                    "message": {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": f"call_{len(self.requests)}",
                                "type": "function",
                                "function": {"name": call[0], "arguments": json.dumps(call[1])},
                            }
                        ],
                    },
                }
            ],
            "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
        }


@pytest.fixture(scope="module")
def fake_openai() -> Iterator[tuple[FakeOpenAI, str]]:
    fake = FakeOpenAI()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(fake.app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield fake, f"http://127.0.0.1:{port}/v1"
    server.should_exit = True
    thread.join(timeout=10)


def test_an_openai_compatible_model_does_the_task_and_its_key_is_never_recorded(
    fake_openai: tuple[FakeOpenAI, str], live_server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, base_url = fake_openai
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    make_agent = agent_factory(AgentChoice(agent="llm", model="openai:served-model", base_url=base_url, seed=7))
    with httpx.Client(timeout=30) as http:
        result = run_episode(_scenario(), make_agent, LocalTarget(live_server.url, http), http)

    assert (result.termination, result.score, result.answer) == ("finished", 1.0, 3.1), result.error
    assert [call.tool for call in result.tool_calls] == ["search", "search", "finish"]
    assert (result.model, result.input_tokens, result.output_tokens) == ("openai:served-model", 300, 60)
    first = fake.requests[0]["body"]
    assert {t["function"]["name"] for t in first["tools"]} == {"search", "read", "create", "update", "finish"}
    assert first["model"] == "served-model" and first["seed"] == 7 and first["temperature"] == 0.0
    assert fake.requests[0]["authorization"] == f"Bearer {SECRET}"  # the key reaches the provider...
    assert SECRET not in result.model_dump_json()  # ...and nowhere else
