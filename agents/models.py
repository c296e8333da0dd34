"""Chat models by name: ``provider:model`` (openai, anthropic, google, ollama; openai with ``base_url`` for any
OpenAI-compatible server such as vLLM). Provider packages are optional extras; a missing one gets a message
that says which to install. API keys come from the providers' usual environment variables and are never
recorded."""

from __future__ import annotations

import importlib
from typing import Any

from langchain_core.language_models import BaseChatModel

__all__ = ["PROVIDERS", "ModelSpecError", "chat_model"]

# provider -> (module, class, pip extra)
PROVIDERS: dict[str, tuple[str, str, str]] = {
    "openai": ("langchain_openai", "ChatOpenAI", "openai"),
    "anthropic": ("langchain_anthropic", "ChatAnthropic", "anthropic"),
    "google": ("langchain_google_genai", "ChatGoogleGenerativeAI", "google"),
    "ollama": ("langchain_ollama", "ChatOllama", "ollama"),
}


class ModelSpecError(ValueError):
    """A model name that cannot be used: unknown provider, or its package is not installed."""


def chat_model(
    spec: str,
    temperature: float | None = 0.0,
    seed: int | None = None,
    base_url: str | None = None,
    timeout: float = 120.0,
) -> BaseChatModel:
    provider, _, name = spec.partition(":")
    if not name or provider not in PROVIDERS:
        known = ", ".join(f"{p}:MODEL" for p in PROVIDERS)
        raise ModelSpecError(f"--model {spec!r}: expected provider:model, one of {known}")
    module_name, class_name, extra = PROVIDERS[provider]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise ModelSpecError(
            f"--model {spec!r} needs the {module_name} package: pip install 'fhir-sandbox[{extra}]'"
        ) from None
    kwargs: dict[str, Any] = {"model": name}
    if temperature is not None:
        kwargs["temperature"] = temperature
    if provider == "openai":
        kwargs |= {"timeout": timeout, "max_retries": 0}  # the agent retries, with backoff, and counts it
        if seed is not None:
            kwargs["seed"] = seed
        if base_url:
            kwargs["base_url"] = base_url
    elif provider == "anthropic":
        kwargs |= {"timeout": timeout, "max_retries": 0}
    elif provider == "ollama":
        if base_url:
            kwargs["base_url"] = base_url
        if seed is not None:
            kwargs["seed"] = seed
    try:
        return getattr(module, class_name)(**kwargs)  # type: ignore[no-any-return]
    except Exception as exc:  # e.g. no API key in the environment: one clear line, not a traceback
        raise ModelSpecError(f"--model {spec!r}: {type(exc).__name__}: {' '.join(str(exc).split())}") from None
