"""The MedAgentBench text protocol: the model answers in plain text with one of ``GET url``, ``POST url`` plus a
JSON body, or ``FINISH([answers])``, one action per turn. Unlike MedAgentBench, a POST really happens and the
model is told what the server said (the stored resource or the OperationOutcome), so results on this protocol
can be compared with the tool-calling agent's on the same scenarios."""

from __future__ import annotations

import re
from typing import Any

import orjson
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from .base import AgentTask
from .llm import LLMAgent
from .prompts import task_text
from .tools import FhirTools

__all__ = ["TextProtocolAgent"]

PROMPT = """You are an expert in using FHIR functions to assist medical professionals. You are given a question \
and a FHIR R4 server at {base}. Based on the question, make one or more requests to achieve the purpose.
1. To read, answer with exactly: GET {base}/<Type>?<param1>=<value1>&<param2>=<value2>...
2. To write, answer with exactly: POST {base}/<Type> on the first line, then the JSON resource.
3. When you have the answers and have done every requested task, answer with exactly: FINISH([answer1, answer2, ...])
Your response must be one of the three, one request at a time, with no other text. Writes are saved in the chart.

{task}"""

_GO_ON = "Please call FINISH if you have got answers for all the questions and finished all the requested tasks"
_FENCE = re.compile(r"^```[a-z_]*\s*|\s*```$")


class TextProtocolAgent(LLMAgent):
    name = "text-protocol"

    def __init__(self, model: BaseChatModel, model_name: str | None = None, **kwargs: Any):
        super().__init__(model, model_name, **kwargs)

    def run(self, task: AgentTask, tools: FhirTools) -> None:
        messages: list[BaseMessage] = [HumanMessage(PROMPT.format(base=task.fhir_base_url, task=task_text(task)))]
        self._record(messages)
        while not tools.finished:
            reply = self._invoke(self.model, messages)
            messages.append(reply)
            self._record([reply])
            feedback = self._act(_text(reply), tools)
            if feedback is None:
                return
            answer = HumanMessage(feedback)
            messages.append(answer)
            self._record([answer])

    def _act(self, text: str, tools: FhirTools) -> str | None:
        text = _FENCE.sub("", text.strip()).strip()
        if text.startswith("FINISH(") and text.endswith(")"):
            tools.call("finish", {"answer": _answer(text[len("FINISH(") : -1])})
            return None
        if text.startswith("GET "):
            result = tools.call("search", {"url": text[4:].strip()})
            body = _json(result.content)
            if not result.ok:
                return f"Error in sending the GET request (HTTP {result.status}): {body}"
            return f"Here is the response from the GET request:\n{body}\n{_GO_ON}"
        if text.startswith("POST "):
            first, _, payload = text.partition("\n")
            try:
                resource = orjson.loads(payload)
            except orjson.JSONDecodeError:
                tools.call("create", {"resource": None})  # recorded as a failed call
                return "Invalid POST request: the lines after the URL are not JSON"
            if isinstance(resource, dict) and "resourceType" not in resource:
                resource["resourceType"] = first[5:].strip().rstrip("/").rsplit("/", 1)[-1]
            result = tools.call("create", {"resource": resource})
            verdict = (
                "POST request accepted and executed" if result.ok else f"POST request failed (HTTP {result.status})"
            )
            return f"{verdict}. The server answered:\n{_json(result.content)}"
        tools.call("respond", {"text": text[:200]})  # recorded as a failed (invalid) call
        return "Invalid action: answer with GET, POST or FINISH exactly as instructed."


def _text(message: AIMessage) -> str:
    content = message.content
    if isinstance(content, list):
        return "".join(part.get("text", "") if isinstance(part, dict) else str(part) for part in content)
    return str(content)


def _answer(inner: str) -> Any:
    """FINISH's list: one answer stands for itself, several stay a list; text that is not JSON stays text."""
    try:
        value = orjson.loads(inner)
    except orjson.JSONDecodeError:
        return inner.strip()
    return value[0] if isinstance(value, list) and len(value) == 1 else value


def _json(content: Any) -> str:
    return content if isinstance(content, str) else orjson.dumps(content).decode()
