"""JSON in and out of the server, keeping decimals exactly as they were written.

FHIR decimals carry their precision in their digits (``1.50`` is not ``1.5``), so a resource read back must show
the digits it was written with. Incoming JSON is parsed with the standard library so that each decimal becomes a
``RawDecimal`` (a float that remembers its text); orjson then writes that text back verbatim.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

__all__ = ["RawDecimal", "dumps", "loads", "loads_stored"]


class RawDecimal(float):
    """A float that remembers the exact text it was parsed from."""

    __slots__ = ("raw",)
    raw: str

    def __new__(cls, text: str) -> RawDecimal:
        value = float.__new__(cls, text)
        value.raw = text
        return value


def _fragment(value: Any) -> Any:
    if isinstance(value, RawDecimal):
        return orjson.Fragment(value.raw)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def loads(text: str | bytes) -> Any:
    """Parse JSON from a client, keeping decimal digits. Raises ``ValueError`` on malformed JSON."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    try:
        value = json.loads(text, parse_float=RawDecimal, parse_constant=_reject_constant)
    except RecursionError:  # a body of [[[[...]]]]: the parser's own limit, not a server fault
        raise ValueError("the JSON is nested too deeply") from None
    if _depth_exceeds(value, MAX_DEPTH):
        # every later step (validation, reference rewriting, indexing) walks the body recursively
        raise ValueError(f"the JSON is nested more than {MAX_DEPTH} levels deep")
    return value


MAX_DEPTH = 128  # real FHIR resources nest a few dozen levels at most


def _depth_exceeds(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values() if isinstance(child, dict | list))
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item if isinstance(child, dict | list))
    return False


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads_stored(text: str | bytes) -> Any:
    """Parse JSON the server stored itself (fast path; decimals become plain floats)."""
    return orjson.loads(text)


def dumps(value: Any) -> bytes:
    """Serialise to compact JSON bytes, writing decimals with their original digits."""
    return orjson.dumps(value, option=orjson.OPT_PASSTHROUGH_SUBCLASS, default=_fragment)
