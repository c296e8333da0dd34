"""Where episodes run. ``LocalTarget`` is our server's session admin API (a session per episode, its exact write
log, deleted afterwards); ``staging.StagingTarget`` is an external endpoint without sessions (the write log is the
tool layer's record, and what the episode created is deleted afterwards)."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import httpx

from .agents.tools import ToolCall
from .fhir_server.client import FhirClient

__all__ = ["LocalTarget", "NotRunnable", "SessionHandle", "SetupError", "Target", "TargetError", "apply_setup"]


class TargetError(RuntimeError):
    """The target failed (an infrastructure error: retried, never scored as the agent's failure)."""


class SetupError(RuntimeError):
    """The scenario's setup resources were refused by the server."""


class NotRunnable(RuntimeError):
    """The scenario cannot run on this target as the run is configured (its setup needs writes the run does not
    allow): neither scored nor retried."""


@dataclass(frozen=True)
class SessionHandle:
    """An episode's place on a target, and what the episode's tools may do there."""

    id: str
    fhir_base_url: str
    allow_writes: bool = True  # false: the write tools refuse (an external endpoint without --allow-writes)
    tags: tuple[tuple[str, str], ...] = ()  # (system, code) meta.tags the tools put on what they write
    # the episode's tool calls (its FhirTools records into this list): the write log of a target whose server
    # keeps none
    calls: list[ToolCall] = field(default_factory=list, compare=False, repr=False)
    created: list[str] = field(default_factory=list, compare=False)  # Type/id created on a target without sessions
    removed: list[str] = field(default_factory=list, compare=False)  # ... of those, deleted when the episode closed


class Target(Protocol):
    def open(self, now: datetime, label: str) -> SessionHandle: ...

    def add_setup(self, handle: SessionHandle, resources: list[dict[str, Any]]) -> None:
        """Add the scenario's setup resources (one transaction).

        Raises:
            SetupError: the server refused them. NotRunnable: the target may not write them.
        """
        ...

    def write_log(self, handle: SessionHandle) -> list[dict[str, Any]]:
        """The session's writes in order: seq, method, type, id, version, status (as /sessions/{id}/writes)."""
        ...

    def close(self, handle: SessionHandle) -> None: ...


class LocalTarget:
    """Sessions on our FHIR server at ``origin`` (http://127.0.0.1:PORT), or spread over several servers on one
    database (``ServerProcesses``): each session is opened on the next, and stays there."""

    def __init__(self, origin: str | Sequence[str], http: httpx.Client):
        origins = [origin] if isinstance(origin, str) else list(origin)
        if not origins:
            raise ValueError("LocalTarget needs at least one server origin")
        self.origins = [o.rstrip("/") for o in origins]
        self.http = http
        self._next = itertools.cycle(self.origins)
        self._lock = threading.Lock()

    def open(self, now: datetime, label: str) -> SessionHandle:
        with self._lock:
            origin = next(self._next)
        body = self._call("POST", origin, "/sessions", json={"now": now.isoformat(), "label": label})
        return SessionHandle(id=body["id"], fhir_base_url=body["fhir_base_url"])

    def copy(self, handle: SessionHandle, now: datetime, label: str) -> SessionHandle:
        """A new session that starts as a copy of ``handle``'s data (on the same server, with an empty write
        log)."""
        body = {"now": now.isoformat(), "label": label, "copy_of": handle.id}
        created = self._call("POST", _origin_of(handle), "/sessions", json=body)
        return SessionHandle(id=created["id"], fhir_base_url=created["fhir_base_url"])

    def add_setup(self, handle: SessionHandle, resources: list[dict[str, Any]]) -> None:
        apply_setup(FhirClient(handle.fhir_base_url, self.http), resources)

    def write_log(self, handle: SessionHandle) -> list[dict[str, Any]]:
        return list(self._call("GET", _origin_of(handle), f"/sessions/{handle.id}/writes"))

    def close(self, handle: SessionHandle) -> None:
        self._call("DELETE", _origin_of(handle), f"/sessions/{handle.id}")

    def _call(self, method: str, origin: str, path: str, json: Any = None) -> Any:
        try:
            response = self.http.request(method, origin + path, json=json)
        except httpx.HTTPError as exc:
            raise TargetError(f"{method} {origin}{path}: {exc}") from None
        if response.status_code >= 300:
            raise TargetError(f"{method} {origin}{path} answered HTTP {response.status_code}: {response.text[:200]}")
        return response.json() if response.content else None


def _origin_of(handle: SessionHandle) -> str:
    """The origin of the server that holds the session (its FHIR base is ORIGIN/sessions/ID/fhir)."""
    return handle.fhir_base_url.rsplit("/sessions/", 1)[0]


def apply_setup(client: FhirClient, setup: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Write ``setup`` in one transaction (PUT where a resource has an id, else POST); returns the response Bundle.

    Raises:
        SetupError: the server refused it.
    """
    if not setup:
        return None
    entries = [
        {
            "resource": resource,
            "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"}
            if resource.get("id")
            else {"method": "POST", "url": resource["resourceType"]},
        }
        for resource in setup
    ]
    reply = client.transaction({"resourceType": "Bundle", "type": "transaction", "entry": entries})
    if not reply.ok:
        raise SetupError(f"the scenario's setup was refused (HTTP {reply.status}): {_diagnostics(reply.body)}")
    return reply.body if isinstance(reply.body, dict) else None


def _diagnostics(body: Any) -> str:
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        return "; ".join(str(i.get("diagnostics", "")) for i in body.get("issue", ()))
    return str(body)[:300]
