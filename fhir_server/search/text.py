"""Text helpers shared by the search types: normalisation and FHIR search escaping."""

from __future__ import annotations

import unicodedata
from functools import lru_cache

__all__ = ["normalize", "split_escaped", "unescape"]


@lru_cache(maxsize=65536)  # the same displays and names recur across thousands of resources
def normalize(text: str) -> str:
    """Case- and accent-insensitive form of ``text`` (R4 string search)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


def split_escaped(text: str, separator: str) -> list[str]:
    """Split on ``separator`` where it is not escaped with a backslash; escapes are kept."""
    parts, current, i = [], [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            current.append(text[i : i + 2])
            i += 2
            continue
        if ch == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    return parts


def unescape(text: str) -> str:
    """Remove FHIR search escapes (``\\,``, ``\\|``, ``\\$``, ``\\\\``)."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)
