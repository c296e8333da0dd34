"""What an agent reports about itself: its conversation (as plain JSON messages), token use and cost."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

__all__ = ["AgentTrace"]


class AgentTrace(BaseModel):
    model: str | None = None
    messages: list[dict[str, Any]] = Field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float | None = Field(None, description="USD, when the model's prices are known.")
    model_calls: int = 0
    retries: int = 0

    def add_usage(self, usage: dict[str, Any] | None) -> None:
        if usage:
            self.input_tokens += int(usage.get("input_tokens") or 0)
            self.output_tokens += int(usage.get("output_tokens") or 0)
