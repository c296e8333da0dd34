"""Token prices (USD per million input/output tokens) of common models, to put a cost on a run. Prices change:
these are list prices as published by the providers in 2025 and are only used when a run does not set its own
(``--price-in/--price-out``). Unknown models get no cost rather than a guess."""

from __future__ import annotations

__all__ = ["PRICES", "price_of"]

PRICES: dict[str, tuple[float, float]] = {
    "openai:gpt-4o": (2.50, 10.00),
    "openai:gpt-4o-mini": (0.15, 0.60),
    "openai:gpt-4.1": (2.00, 8.00),
    "openai:gpt-4.1-mini": (0.40, 1.60),
    "openai:gpt-4.1-nano": (0.10, 0.40),
    "openai:o3-mini": (1.10, 4.40),
    "anthropic:claude-3-5-haiku-latest": (0.80, 4.00),
    "anthropic:claude-3-5-sonnet-latest": (3.00, 15.00),
    "anthropic:claude-3-7-sonnet-latest": (3.00, 15.00),
    "google:gemini-2.0-flash": (0.10, 0.40),
}


def price_of(model: str | None) -> tuple[float, float] | None:
    """(input, output) USD per million tokens for ``provider:name``, or None when unknown (local models: 0)."""
    if model is None:
        return None
    if model.startswith("ollama:"):
        return (0.0, 0.0)
    return PRICES.get(model)
