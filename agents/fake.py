"""A scripted, tool-capable chat model for tests and offline runs: it replies from a list of messages, or from a
function of the conversation, and fails loudly when its script runs out (LangChain's own fakes either cannot
bind tools or silently start over)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import ConfigDict, PrivateAttr

__all__ = ["ScriptExhausted", "ScriptedChatModel", "tool_call"]

Reply = AIMessage | str
Script = Sequence[Reply] | Callable[[list[BaseMessage]], Reply]


class ScriptExhausted(RuntimeError):
    """The model was asked for more replies than its script has."""


def tool_call(name: str, call_id: str | None = None, **args: Any) -> AIMessage:
    """An assistant message calling one tool: ``tool_call("search", resource_type="Patient", params={...})``."""
    return AIMessage(
        content="", tool_calls=[{"name": name, "args": args, "id": call_id or f"call_{name}", "type": "tool_call"}]
    )


class ScriptedChatModel(BaseChatModel):
    """Replies with ``script``'s messages in order (or ``script(messages)``), after ``delay`` seconds each."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    script: Any
    delay: float = 0.0
    usage: dict[str, int] | None = None  # usage_metadata to report per reply, if any
    _position: int = PrivateAttr(0)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedChatModel:  # type: ignore[override]
        return self  # the script decides which tools it calls

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.delay:
            time.sleep(self.delay)
        reply = self._next(messages)
        message = AIMessage(content=reply) if isinstance(reply, str) else reply
        if self.usage and not message.usage_metadata:
            message = message.model_copy(update={"usage_metadata": dict(self.usage)})
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _next(self, messages: list[BaseMessage]) -> Reply:
        if callable(self.script):
            return self.script(messages)  # type: ignore[no-any-return]
        if self._position >= len(self.script):
            raise ScriptExhausted(
                f"the scripted model has no reply {self._position + 1} (its script has {len(self.script)})"
            )
        reply = self.script[self._position]
        self._position += 1
        return reply  # type: ignore[no-any-return]
