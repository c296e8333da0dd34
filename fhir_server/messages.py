"""The request and response of one FHIR interaction, independent of HTTP, so that a REST call and a Bundle
entry go through the same code."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

__all__ = ["FhirRequest", "FhirResponse", "parse_prefer"]


@dataclass
class FhirRequest:
    method: str
    path: list[str]  # segments after the FHIR base
    query: list[tuple[str, str]]
    session: str
    base_url: str  # absolute FHIR base of the session, no trailing slash
    body: Any = None  # parsed JSON (a resource, a Bundle, a JSON Patch document) or None
    content_type: str | None = None
    if_match: str | None = None
    if_none_exist: str | None = None
    if_none_match: str | None = None
    prefer: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_url(cls, method: str, url: str, *, session: str, base_url: str, **kwargs: Any) -> FhirRequest:
        """A request for a relative URL such as ``Patient?name=x`` (as in a Bundle entry)."""
        parts = urlsplit(url)
        path = parts.path
        if path.startswith(base_url):
            path = path[len(base_url) :]
        segments = [s for s in path.strip("/").split("/") if s]
        return cls(
            method.upper(), segments, parse_qsl(parts.query, keep_blank_values=True), session, base_url, **kwargs
        )

    @property
    def url(self) -> str:
        """The request's URL relative to the base (for the write log)."""
        from urllib.parse import urlencode

        path = "/".join(self.path)
        return f"{path}?{urlencode(self.query)}" if self.query else path


@dataclass
class FhirResponse:
    status: int
    body: bytes | dict[str, Any] | None = None  # stored JSON bytes, a built dict, or nothing
    etag: str | None = None
    last_modified: str | None = None
    location: str | None = None
    outcome: dict[str, Any] | None = None  # the OperationOutcome for Prefer: return=OperationOutcome


def parse_prefer(header: str | None) -> dict[str, str]:
    """``Prefer: return=minimal, handling=strict`` -> {"return": "minimal", "handling": "strict"}."""
    prefs: dict[str, str] = {}
    for part in (header or "").replace(";", ",").split(","):
        key, _, value = part.strip().partition("=")
        if key:
            prefs[key.strip().lower()] = value.strip().strip('"').lower()
    return prefs
