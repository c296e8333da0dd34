"""JSON parsed so that decimals compare by their written text: a round trip must keep ``1.50`` as ``1.50``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Number:
    """A JSON decimal compared by its exact written text (``1.50`` != ``1.5``)."""

    text: str


def parse(text: str | bytes) -> Any:
    return json.loads(text, parse_float=Number)
