"""Where episodes run: a FHIR server with sessions. ``LocalTarget`` is our server's session admin API (a session
per episode, its exact write log, deleted afterwards)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import httpx

__all__ = ["LocalTarget", "SessionHandle", "Target", "TargetError"]


class TargetError(RuntimeError):
    """The target failed (an infrastructure error: retried, never scored as the agent's failure)."""


@dataclass(frozen=True)
class SessionHandle:
    id: str
    fhir_base_url: str


class Target(Protocol):
    def open(self, now: datetime, label: str) -> SessionHandle: ...

    def write_log(self, handle: SessionHandle) -> list[dict[str, Any]]: ...

    def close(self, handle: SessionHandle) -> None: ...


class LocalTarget:
    """Sessions on our FHIR server at ``origin`` (http://127.0.0.1:PORT)."""

    def __init__(self, origin: str, http: httpx.Client):
        self.origin = origin.rstrip("/")
        self.http = http

    def open(self, now: datetime, label: str) -> SessionHandle:
        body = self._call("POST", "/sessions", json={"now": now.isoformat(), "label": label})
        return SessionHandle(id=body["id"], fhir_base_url=body["fhir_base_url"])

    def write_log(self, handle: SessionHandle) -> list[dict[str, Any]]:
        return list(self._call("GET", f"/sessions/{handle.id}/writes"))

    def close(self, handle: SessionHandle) -> None:
        self._call("DELETE", f"/sessions/{handle.id}")

    def _call(self, method: str, path: str, json: Any = None) -> Any:
        try:
            response = self.http.request(method, self.origin + path, json=json)
        except httpx.HTTPError as exc:
            raise TargetError(f"{method} {self.origin}{path}: {exc}") from None
        if response.status_code >= 300:
            raise TargetError(
                f"{method} {self.origin}{path} answered HTTP {response.status_code}: {response.text[:200]}"
            )
        return response.json() if response.content else None
