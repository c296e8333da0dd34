"""Episodes on an external FHIR endpoint (a staging server): no sessions, so nothing isolates an episode's writes.

``StagingTarget`` implements the Target protocol on such an endpoint:

- The episode's FHIR base is the endpoint. Its write log is the tool layer's record of the agent's successful
  writes (method, type, id and version from the response or its Location, status), so grading takes the same
  path as on our server. Values are computed by reading the endpoint, as always.
- Without ``allow_writes`` the write tools refuse (no request is made). A scenario with setup resources is then
  ``not_runnable`` (its setup would be a write, and without it the scenario is not the one written), and so is one
  whose reference solution writes (a correct agent could not pass it: scoring it would score the configuration).
  In the others a refused write still counts for grading, as the write it would have been: an agent that orders
  where it should not fails ``no_writes`` whether or not the order reached the server.
- With ``allow_writes`` everything the run creates, setup and agent, carries two meta.tags, the run
  (``RUN_TAG_SYSTEM|run id``) and the episode (``EPISODE_TAG_SYSTEM|episode id``), and is deleted (newest first)
  when the episode closes, unless ``keep_writes``. Episodes whose scenarios share a patient run one at a time:
  on a shared chart one episode's setup or writes would change another's values.

``cleanup_run`` removes what a crashed (or ``--keep-writes``) run left: the resources its stored episodes created
and did not remove, and whatever else carries its run tag and was created by the sandbox (an agent's update of a
resource that existed before is tagged too, but is left in place and reported).
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import httpx
from pydantic import BaseModel, Field

from .agents.tools import WRITE_TOOLS, WRITES_DISABLED, ToolCall
from .auth import AuthOptions, ClientSecretAuth, SmartBackendAuth, make_auth
from .fhir_server.client import FhirClient
from .runs import RunFolder
from .scenarios.model import Scenario
from .targets import NotRunnable, SessionHandle, apply_setup

__all__ = [
    "EPISODE_TAG_SYSTEM",
    "RUN_TAG_SYSTEM",
    "WRITABLE_TYPES",
    "CleanupReport",
    "EndpointOptions",
    "StagingTarget",
    "cleanup_run",
    "connect",
    "new_run_id",
]

RUN_TAG_SYSTEM = "urn:fhir-sandbox:run"
EPISODE_TAG_SYSTEM = "urn:fhir-sandbox:episode"
# Searched for a run's tag when the endpoint has no system-wide search (besides the types the run is known to write)
WRITABLE_TYPES = (
    "AllergyIntolerance",
    "CarePlan",
    "Communication",
    "CommunicationRequest",
    "Condition",
    "DiagnosticReport",
    "DocumentReference",
    "Encounter",
    "Flag",
    "Goal",
    "Immunization",
    "MedicationAdministration",
    "MedicationRequest",
    "MedicationStatement",
    "Observation",
    "Patient",
    "Procedure",
    "ServiceRequest",
    "Task",
)
_GONE = (404, 410)


class EndpointOptions(BaseModel):
    """An external FHIR endpoint to run on, instead of our server."""

    fhir_base_url: str = Field(description="The endpoint's FHIR base URL, e.g. https://staging.example.org/fhir.")
    auth: AuthOptions = Field(default_factory=AuthOptions)
    allow_writes: bool = Field(False, description="Let agents (and scenario setups) write to the endpoint.")
    keep_writes: bool = Field(False, description="Leave what episodes created (remove it later with cleanup).")

    def manifest_view(self, run_id: str) -> dict[str, Any]:
        """What a run's manifest records of the endpoint: no client id, key path or secret."""
        return {
            "fhir_base_url": self.fhir_base_url.rstrip("/"),
            "auth": self.auth.mode,
            "allow_writes": self.allow_writes,
            "run_id": run_id,
        }


def new_run_id(name: str) -> str:
    """A run id to tag with: the run folder's name, made token-safe, and a random suffix."""
    slug = re.sub(r"[^A-Za-z0-9.-]+", "-", name).strip("-.")[:40] or "run"
    return f"{slug}-{uuid.uuid4().hex[:8]}"


@contextmanager
def connect(options: EndpointOptions, limits: httpx.Limits | None = None) -> Iterator[httpx.Client]:
    """An HTTP client authorised for the endpoint. A token is fetched now, so that a wrong client, key, secret or
    token endpoint fails here, once, and not in every episode.

    Raises:
        AuthError: the authorisation failed.
    """
    with httpx.Client(timeout=120, limits=limits or httpx.Limits()) as http:
        auth = make_auth(options.auth, options.fhir_base_url, http, writes=options.allow_writes)
        if isinstance(auth, SmartBackendAuth | ClientSecretAuth):
            auth.access_token()
        if auth is not None:
            http.auth = auth
        yield http


class StagingTarget:
    """Episodes on an endpoint without sessions (see the module docstring). ``scenarios`` are the run's: episodes
    of scenarios that share a patient are kept apart when writes are allowed."""

    def __init__(
        self,
        fhir_base_url: str,
        http: httpx.Client,
        run_id: str,
        allow_writes: bool = False,
        keep_writes: bool = False,
        scenarios: Sequence[Scenario] = (),
    ):
        self.fhir_base_url = fhir_base_url.rstrip("/")
        self.http = http
        self.run_id = run_id
        self.allow_writes = allow_writes
        self.keep_writes = keep_writes
        self._patients = {s.id: _patients(s) for s in scenarios}
        self._needs_writes = {s.id: _needs_writes(s) for s in scenarios}
        self._locks: dict[str, threading.Lock] = {}
        self._held: dict[str, list[threading.Lock]] = {}
        self._guard = threading.Lock()

    def open(self, now: datetime, label: str) -> SessionHandle:
        """The endpoint itself (``now`` cannot be set: the scenario's clock is in its text and values).

        Raises:
            NotRunnable: the scenario needs writes and the run does not allow them.
        """
        if not self.allow_writes and self._needs_writes.get(label):
            raise NotRunnable(f"{self._needs_writes[label]}; it runs on this endpoint only with --allow-writes")
        episode = f"{label}.{uuid.uuid4().hex[:8]}"
        held = self._acquire(self._patients.get(label, ())) if self.allow_writes else []
        with self._guard:
            self._held[episode] = held
        tags = ((RUN_TAG_SYSTEM, self.run_id), (EPISODE_TAG_SYSTEM, episode))
        return SessionHandle(id=episode, fhir_base_url=self.fhir_base_url, allow_writes=self.allow_writes, tags=tags)

    def add_setup(self, handle: SessionHandle, resources: list[dict[str, Any]]) -> None:
        if not resources:
            return
        if not self.allow_writes:
            raise NotRunnable(
                f"the scenario's setup writes {len(resources)} resource(s) to the endpoint; "
                "it runs here only with --allow-writes"
            )
        client = FhirClient(handle.fhir_base_url, self.http)
        bundle = apply_setup(client, [_tagged(r, handle.tags) for r in resources]) or {}
        for entry, resource in zip(bundle.get("entry", ()), resources, strict=False):
            ref = _ref(str(entry.get("response", {}).get("location") or ""))
            kind = resource["resourceType"]
            ident = ref[1] if ref and ref[0] == kind else (entry.get("resource") or {}).get("id")
            if ident:
                handle.created.append(f"{kind}/{ident}")

    def write_log(self, handle: SessionHandle) -> list[dict[str, Any]]:
        """The agent's successful writes, from its tool calls, and the writes it tried that were refused for want
        of --allow-writes (``refused``, with the resource it sent: graded as the write they would have been)."""
        client = FhirClient(handle.fhir_base_url, self.http)
        log: list[dict[str, Any]] = []
        for call in handle.calls:
            if call.tool in WRITE_TOOLS and call.result == WRITES_DISABLED:
                sent = call.args["resource"]
                log.append(
                    {
                        "seq": call.step,
                        "method": "POST" if call.tool == "create" else "PUT",
                        "type": sent["resourceType"],
                        "id": str(sent.get("id") or "") if call.tool == "update" else "",
                        "version": 0,
                        "status": 0,
                        "refused": True,
                        "resource": sent,
                    }
                )
                continue
            written = _written(call)
            if written is None:
                continue
            kind, ident, version = written
            if version is None:  # neither the body nor the Location said: the current version
                reply = client.read(kind, ident)
                meta = reply.body.get("meta", {}) if reply.ok and isinstance(reply.body, dict) else {}
                version = _int(meta.get("versionId")) or 1
            log.append(
                {
                    "seq": call.step,
                    "method": call.method,
                    "url": call.url,
                    "type": kind,
                    "id": ident,
                    "version": version,
                    "status": call.status,
                }
            )
        return log

    def close(self, handle: SessionHandle) -> None:
        """Record what the agent created and, unless ``keep_writes``, delete everything the episode created."""
        try:
            for call in handle.calls:
                written = _written(call)
                # a POST creates; so does a PUT answered 201 (update as create)
                if written and (call.method == "POST" or call.status == 201):
                    ref = f"{written[0]}/{written[1]}"
                    if ref not in handle.created:
                        handle.created.append(ref)
            if not self.keep_writes:
                client = FhirClient(handle.fhir_base_url, self.http)
                for ref in reversed(handle.created):  # newest first: it may refer to older ones
                    if _delete(client, ref) in (None, "gone"):
                        handle.removed.append(ref)
        finally:
            with self._guard:
                held = self._held.pop(handle.id, [])
            for lock in reversed(held):
                lock.release()

    def _acquire(self, keys: Iterable[str]) -> list[threading.Lock]:
        with self._guard:
            locks = [self._locks.setdefault(key, threading.Lock()) for key in sorted(set(keys))]
        for lock in locks:  # always in sorted order: no deadlock
            lock.acquire()
        return locks


class CleanupReport(BaseModel):
    """What ``cleanup_run`` found and did."""

    run_id: str
    fhir_base_url: str
    deleted: list[str] = Field(default_factory=list)
    already_gone: list[str] = Field(default_factory=list)
    failed: list[str] = Field(default_factory=list, description="Type/id: why the delete failed.")
    left: list[str] = Field(
        default_factory=list, description="Carry the run's tag but were not created by the sandbox (updated): kept."
    )


def cleanup_run(folder: RunFolder, http: httpx.Client, scenarios: Sequence[Scenario] = ()) -> CleanupReport:
    """Delete what the run in ``folder`` left on its endpoint: the resources its episodes created and did not
    remove, and the resources carrying its run tag whose first version the sandbox wrote. ``scenarios`` (the
    run's) add their setup types to the types searched when the endpoint has no system-wide search.

    Raises:
        ValueError: the run was not on an external endpoint.
    """
    endpoint = folder.manifest().config.get("endpoint")
    if not isinstance(endpoint, dict) or not endpoint.get("run_id"):
        raise ValueError(f"{folder.path} ran on our own server: its writes stayed in its sessions")
    run_id, base = str(endpoint["run_id"]), str(endpoint["fhir_base_url"])
    report = CleanupReport(run_id=run_id, fhir_base_url=base)
    client = FhirClient(base, http)
    known: list[str] = []
    types = set(WRITABLE_TYPES)
    for result in folder.episodes():
        removed = set(result.removed)
        known += [ref for ref in result.created if ref not in removed and ref not in known]
        types |= {ref.split("/", 1)[0] for ref in result.created} | {w.type for w in result.writes}
    types |= {r["resourceType"] for s in scenarios for r in s.setup}
    extra = []
    for ref in _tagged_with(client, f"{RUN_TAG_SYSTEM}|{run_id}", types):
        if ref in known:
            continue
        if _created_by_sandbox(client, ref):
            extra.append(ref)
        else:
            report.left.append(ref)
    for ref in [*extra, *reversed(known)]:  # the tag search's (an episode cut short) first, then newest first
        problem = _delete(client, ref, look_first=True)
        if problem is None:
            report.deleted.append(ref)
        elif problem == "gone":
            report.already_gone.append(ref)
        else:
            report.failed.append(f"{ref}: {problem}")
    return report


# -- helpers ------------------------------------------------------------------------------------------------------


def _patients(scenario: Scenario) -> set[str]:
    """The MRNs a scenario reads: its patient's and those its values name."""
    refs = [scenario.patient, *(getattr(v, "patient", None) for v in scenario.expectations.values.values())]
    return {f"{r.system}|{r.mrn}" for r in refs if r is not None}


def _needs_writes(scenario: Scenario) -> str | None:
    """Why the scenario cannot run without writes, or None."""
    if scenario.setup:
        return f"the scenario's setup writes {len(scenario.setup)} resource(s) to the endpoint"
    if scenario.expects_action:
        return "the scenario expects the agent to write (its reference solution does)"
    return None


def _tagged(resource: dict[str, Any], tags: Iterable[tuple[str, str]]) -> dict[str, Any]:
    meta = dict(resource.get("meta") or {})
    present = list(meta.get("tag") or [])
    have = {(t.get("system"), t.get("code")) for t in present}
    meta["tag"] = present + [{"system": s, "code": c} for s, c in tags if (s, c) not in have]
    return {**resource, "meta": meta}


def _ref(location: str) -> tuple[str, str, int | None] | None:
    """(type, id, version) of a Location: [base/]Type/id[/_history/version]."""
    segments = [s for s in location.split("?", 1)[0].split("/") if s]
    version = None
    if len(segments) >= 4 and segments[-2] == "_history":
        version, segments = _int(segments[-1]), segments[:-2]
    if len(segments) < 2 or not segments[-2][:1].isupper():
        return None
    return segments[-2], segments[-1], version


def _written(call: ToolCall) -> tuple[str, str, int | None] | None:
    """(type, id, version) of a successful write call; version None when neither body nor Location says."""
    if call.tool not in WRITE_TOOLS or not call.ok or call.status is None or not 200 <= call.status < 300:
        return None
    body = call.result if isinstance(call.result, dict) and call.result.get("resourceType") else {}
    if body.get("resourceType") == "OperationOutcome":
        body = {}
    sent = call.args.get("resource") if isinstance(call.args.get("resource"), dict) else {}
    located = _ref(call.location or "")
    kind = (located and located[0]) or body.get("resourceType") or sent.get("resourceType")
    ident = (located and located[1]) or body.get("id") or (sent.get("id") if call.tool == "update" else None)
    if not kind or not ident:
        return None
    version = _int((body.get("meta") or {}).get("versionId")) or (located and located[2]) or None
    if version is None and call.status == 201:
        version = 1
    return str(kind), str(ident), version


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _delete(client: FhirClient, ref: str, look_first: bool = False) -> str | None:
    """None when deleted; "gone" when it was not there; else why the delete failed. ``look_first`` reads it
    before (servers may answer a delete of nothing with 200, as ours does)."""
    kind, _, ident = ref.partition("/")
    try:
        if look_first and client.read(kind, ident).status in _GONE:
            return "gone"
        reply = client.delete(kind, ident)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"
    if reply.status in _GONE:
        return "gone"
    return None if reply.ok else f"HTTP {reply.status}"


def _tagged_with(client: FhirClient, tag: str, types: Iterable[str]) -> list[str]:
    """Type/id of every resource carrying ``tag``: one system-wide search, or one search per type."""
    try:
        found = client.search_all("", {"_tag": tag})
    except RuntimeError:  # no system-wide search (ours has none)
        found = []
        for kind in sorted(types):
            try:
                found += client.search_all(kind, {"_tag": tag})
            except RuntimeError:
                continue  # a type this server does not have
    return list(dict.fromkeys(f"{r['resourceType']}/{r['id']}" for r in found if "id" in r))


def _created_by_sandbox(client: FhirClient, ref: str) -> bool:
    """Whether the resource's first version carries a run tag (of any run): the sandbox created it."""
    kind, _, ident = ref.partition("/")
    reply = client.vread(kind, ident, 1)
    if not reply.ok or not isinstance(reply.body, dict):
        return False
    tags = (reply.body.get("meta") or {}).get("tag") or []
    return any(t.get("system") == RUN_TAG_SYSTEM for t in tags if isinstance(t, dict))
