"""The LLM tool-calling agent on langchain-core: any chat model with ``bind_tools``.

Every tool call of a reply is executed (parallel calls included), in order; a call the model could not form
(bad JSON, cut off) gets an error result instead of being run; rate limits and transient provider errors are
retried with exponential backoff. The conversation, token use and retries are recorded in ``trace``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage

from .base import AgentTask, ModelUnavailable
from .pricing import price_of
from .prompts import SYSTEM_PROMPT, task_text
from .tools import TOOL_SPECS, FhirTools
from .trace import AgentTrace

__all__ = ["SYSTEM_PROMPT", "LLMAgent", "ModelUnavailable", "openai_tools"]

_RETRYABLE_NAMES = ("RateLimit", "Timeout", "APIConnection", "ServiceUnavailable", "InternalServer", "Overloaded")


def openai_tools() -> list[dict[str, Any]]:
    """The tool set in the OpenAI function-calling format (what ``bind_tools`` takes)."""
    return [{"type": "function", "function": spec} for spec in TOOL_SPECS]


class LLMAgent:
    name = "llm"

    def __init__(
        self,
        model: BaseChatModel,
        model_name: str | None = None,
        system_prompt: str = SYSTEM_PROMPT,
        max_retries: int = 6,
        backoff_seconds: float = 1.0,
        nudges: int = 1,
        prices: tuple[float, float] | None = None,
    ):
        """``prices``: USD per million input and output tokens (default: the known list price of the model)."""
        self.model = model
        self.system_prompt = system_prompt
        self.max_retries = max_retries
        self.backoff_seconds = backoff_seconds
        self.nudges = nudges
        self.trace = AgentTrace(model=model_name)
        self.prices = prices or price_of(model_name)

    def run(self, task: AgentTask, tools: FhirTools) -> None:
        bound = self.model.bind_tools(openai_tools())
        messages: list[BaseMessage] = [SystemMessage(self.system_prompt), HumanMessage(task_text(task))]
        self._record(messages)
        nudges = self.nudges
        while not tools.finished:
            reply = self._invoke(bound, messages)
            messages.append(reply)
            self._record([reply])
            calls = list(reply.tool_calls)
            if not calls and not reply.invalid_tool_calls:
                if nudges <= 0:
                    return  # the model stopped without calling finish
                nudges -= 1
                nudge = HumanMessage("Use the tools to do the task, then call `finish` with your answer.")
                messages.append(nudge)
                self._record([nudge])
                continue
            answers: list[BaseMessage] = []
            for call in calls:
                if tools.finished:
                    content = "error: the task is already finished"
                else:
                    content = tools.call(call["name"], call.get("args") or {}).text()
                answers.append(ToolMessage(content=content, tool_call_id=call.get("id") or ""))
            for bad in reply.invalid_tool_calls:
                error = (
                    f"error: the call could not be parsed ({bad.get('error') or 'invalid arguments'}); nothing was run"
                )
                answers.append(ToolMessage(content=error, tool_call_id=bad.get("id") or ""))
            messages.extend(answers)
            self._record(answers)

    def _invoke(self, bound: Any, messages: Sequence[BaseMessage]) -> AIMessage:
        for attempt in range(self.max_retries + 1):
            try:
                reply = bound.invoke(list(messages))
            except Exception as exc:
                if not _retryable(exc) or attempt == self.max_retries:
                    if _retryable(exc):
                        raise ModelUnavailable(f"{type(exc).__name__} after {attempt} retries: {exc}") from exc
                    raise
                self.trace.retries += 1
                time.sleep(min(60.0, self.backoff_seconds * 2**attempt) * (0.5 + random.random()))
                continue
            self.trace.model_calls += 1
            self.trace.add_usage(getattr(reply, "usage_metadata", None))
            if self.prices is not None:
                price_in, price_out = self.prices
                self.trace.cost = (self.trace.input_tokens * price_in + self.trace.output_tokens * price_out) / 1e6
            if not isinstance(reply, AIMessage):
                reply = AIMessage(content=str(getattr(reply, "content", reply)))
            return reply
        raise AssertionError("unreachable")

    def _record(self, messages: Sequence[BaseMessage]) -> None:
        self.trace.messages.extend(message_json(m) for m in messages)


def message_json(message: BaseMessage) -> dict[str, Any]:
    """A message as plain JSON for the trajectory."""
    data: dict[str, Any] = {"role": message.type, "content": message.content}
    if isinstance(message, AIMessage):
        if message.tool_calls:
            data["tool_calls"] = [
                {"id": c.get("id"), "name": c["name"], "args": c.get("args")} for c in message.tool_calls
            ]
        if message.invalid_tool_calls:
            data["invalid_tool_calls"] = [dict(c) for c in message.invalid_tool_calls]
        if message.usage_metadata:
            data["usage"] = dict(message.usage_metadata)
    if isinstance(message, ToolMessage):
        data["tool_call_id"] = message.tool_call_id
    return data


def _retryable(exc: Exception) -> bool:
    name = type(exc).__name__
    status = getattr(exc, "status_code", None) or getattr(getattr(exc, "response", None), "status_code", None)
    return any(part in name for part in _RETRYABLE_NAMES) or status in (408, 409, 429, 500, 502, 503, 504, 529)
