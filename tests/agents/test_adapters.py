"""The tool set as other frameworks take it: LangChain StructuredTools (tagged read/write) and the OpenAI
function-calling format; and a user's own agent class plugged in with ``--agent module:Class``."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
from fhir_sandbox.agent_choice import AgentChoice, AgentChoiceError, agent_factory
from fhir_sandbox.agents.llm import openai_tools
from fhir_sandbox.agents.tools import TOOL_SPECS, FhirTools, langchain_tools
from fhir_sandbox.fhir_server.client import FhirClient


def test_the_openai_format_carries_every_tool_with_its_json_schema() -> None:
    tools = openai_tools()
    assert [t["type"] for t in tools] == ["function"] * len(TOOL_SPECS)
    assert [t["function"]["name"] for t in tools] == ["search", "read", "create", "update", "finish"]
    assert tools[2]["function"]["parameters"]["required"] == ["resource"]


def test_langchain_tools_act_on_the_session_and_say_whether_they_write(session_base: str) -> None:
    with FhirClient(session_base) as client:
        tools = FhirTools(client, max_steps=10)
        by_name = {t.name: t for t in langchain_tools(tools)}
        assert {n: t.metadata["kind"] for n, t in by_name.items()} == {
            "search": "read",
            "read": "read",
            "create": "write",
            "update": "write",
            "finish": "read",
        }
        created = json.loads(by_name["create"].invoke({"resource": {"resourceType": "Patient", "gender": "female"}}))
        found = json.loads(by_name["search"].invoke({"resource_type": "Patient", "params": {"_id": created["id"]}}))
        refused = json.loads(by_name["read"].invoke({"resource_type": "Patient", "id": "no-such-patient"}))
    assert found["total"] == 1
    assert refused["error"] is True and refused["status"] == 404
    assert [c.tool for c in tools.calls] == ["create", "search", "read"]


def test_a_users_agent_class_is_loaded_by_module_and_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_agents.py").write_text(
        textwrap.dedent(
            """
            class Finisher:
                name = "finisher"

                def run(self, task, tools):
                    tools.call("finish", {"answer": 42})
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    make = agent_factory(AgentChoice(agent="my_agents:Finisher"))
    agent = make(None, {})  # type: ignore[arg-type]
    assert agent.name == "finisher"
    with pytest.raises(AgentChoiceError, match="cannot import"):
        agent_factory(AgentChoice(agent="my_agents:Missing"))
    with pytest.raises(AgentChoiceError, match="needs --model"):
        agent_factory(AgentChoice(agent="llm"))
    sys.modules.pop("my_agents", None)
