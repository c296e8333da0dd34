"""Load a population into a staging FHIR server, so that the bundled suites run there unchanged.

The population is exported with the fixtures' exporter (one transaction Bundle of shared resources, then one per
patient, each entry a PUT that keeps the resource's id) and each bundle is POSTed to the server's base, the shared
one first. A state file records every bundle the server accepted (by name and content hash): a rerun skips them,
so an interrupted push resumes where it stopped, and a bundle that changed since (a rebuilt population) is pushed
again. A transaction is all-or-nothing, so a bundle is either entirely on the server or not at all; PUTs with the
same ids never duplicate anything, even when a bundle is sent twice.

Before writing, each bundle still to push is checked against what the server holds: its Patient (same id with
different content, or its MRN already on another patient) and, for the shared bundle, every resource. Any such
conflict stops the push before anything is written, unless ``overwrite`` is given (then the server's versions are
replaced; an MRN on another patient stays a duplicate, which ``fhir-sandbox doctor`` reports).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from pydantic import BaseModel, Field

from .fhir_server import make_engine
from .fixtures import MRN_SYSTEM, export_population, populations_dir

__all__ = [
    "Conflict",
    "PushConflictError",
    "PushError",
    "PushProgress",
    "PushState",
    "PushSummary",
    "default_state_file",
    "push_population",
    "server_counts",
]

SHARED_BUNDLE = "00-shared.json"  # what fixtures/exporter.py names the bundle of resources no patient owns
_RETRY_STATUSES = {429, 502, 503, 504}
_ATTEMPTS = 4
_FHIR_JSON = "application/fhir+json"
_ID_BATCH = 50  # ids per `_id=a,b,...` search when checking the shared bundle


class PushError(RuntimeError):
    """The push stopped: the server refused a bundle, could not be reached, or refused the credentials."""


@dataclass(frozen=True)
class Conflict:
    """A resource the server already holds that the push would replace or duplicate."""

    bundle: str
    resource: str  # "Patient/abc"
    detail: str

    def __str__(self) -> str:
        return f"{self.bundle}: {self.resource} {self.detail}"


class PushConflictError(PushError):
    """The server holds different resources under the ids (or MRNs) of the population; nothing was written."""

    def __init__(self, conflicts: list[Conflict]):
        self.conflicts = conflicts
        shown = "; ".join(str(c) for c in conflicts[:3]) + ("; ..." if len(conflicts) > 3 else "")
        super().__init__(
            f"the server already holds {len(conflicts)} different resource(s) with the population's ids or MRNs "
            f"({shown}); nothing was written (push with overwrite to replace them)"
        )


class PushedBundle(BaseModel):
    sha256: str = Field(description="Hash of the bundle's bytes as exported.")
    resources: int
    pushed: str = Field(description="When the server accepted it (UTC).")


class PushState(BaseModel):
    """What has been pushed from one population to one server (the resume file)."""

    version: int = 1
    population: str
    target: str = Field(description="The FHIR base URL pushed to.")
    bundles: dict[str, PushedBundle] = Field(default_factory=dict, description="Bundle file name -> record.")


@dataclass(frozen=True)
class PushProgress:
    """Reported before each bundle is sent (``done_*`` count what is already on the server)."""

    bundle: str
    done_bundles: int
    total_bundles: int
    done_resources: int
    total_resources: int


@dataclass
class PushSummary:
    target: str
    state_file: Path
    pushed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already pushed by an earlier run
    remaining: list[str] = field(default_factory=list)  # left for a later run (``limit``)
    resources: int = 0  # resources sent by this run
    counts: dict[str, int] = field(default_factory=dict)  # resources per type in the population
    conflicts: list[Conflict] = field(default_factory=list)  # overwritten (only with overwrite)
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        return not self.remaining


def default_state_file(population: str, target: str) -> Path:
    """Where the push of ``population`` to ``target`` is recorded: beside the population files."""
    digest = hashlib.sha256(target.rstrip("/").encode()).hexdigest()[:12]
    return populations_dir() / "pushes" / f"{population}--{digest}.json"


def push_population(
    database: Path,
    population: str,
    target: str,
    http: httpx.Client,
    state_file: Path | None = None,
    overwrite: bool = False,
    limit: int | None = None,
    progress: Callable[[PushProgress], None] | None = None,
) -> PushSummary:
    """Push the population in ``database`` (named ``population`` in the state) to the FHIR base URL ``target``.

    Args:
        http: the client to send with (its ``auth`` authenticates every request).
        state_file: the resume file (default: ``default_state_file(population, target)``).
        overwrite: push even where the server holds different resources with the same ids or MRNs.
        limit: send at most this many bundles in this run (the rest stay for a later one).
        progress: called before each bundle is sent.

    Raises:
        PushConflictError: conflicts found and ``overwrite`` not given (nothing was written).
        PushError: a bundle was refused (named, with the server's OperationOutcome), the server is unreachable,
            or it refused the credentials; the bundles pushed before it are recorded.
        AuthError: ``http``'s auth failed (a token the server rejected, a token endpoint that refused).
    """
    started = time.perf_counter()
    server = _Server(target, http)
    state_file = state_file or default_state_file(population, server.base)
    state = _load_state(state_file, population, server.base)
    summary = PushSummary(target=server.base, state_file=state_file)
    with tempfile.TemporaryDirectory(prefix="fhir-sandbox-push-") as folder:
        engine = make_engine(database)
        try:
            summary.counts = export_population(engine, Path(folder)).counts
        finally:
            engine.dispose()
        bundles = _bundle_files(Path(folder) / "bundles")
        hashes = {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in bundles}
        done = {name for name, record in state.bundles.items() if hashes.get(name) == record.sha256}
        pending = [path for path in bundles if path.name not in done]
        summary.skipped = [path.name for path in bundles if path.name in done]
        total_resources = sum(summary.counts.values())
        done_resources = sum(state.bundles[name].resources for name in done)
        if pending:
            conflicts = [c for path in pending for c in _conflicts(server, path.name, _load_bundle(path))]
            if conflicts and not overwrite:
                raise PushConflictError(conflicts)
            summary.conflicts = conflicts
        for index, path in enumerate(pending):
            if limit is not None and index >= limit:
                summary.remaining = [p.name for p in pending[index:]]
                break
            if progress:
                progress(PushProgress(path.name, len(done), len(bundles), done_resources, total_resources))
            content = path.read_bytes()
            entries = len(orjson.loads(content).get("entry", ()))
            server.transaction(path.name, content, entries)
            state.bundles[path.name] = PushedBundle(sha256=hashes[path.name], resources=entries, pushed=_now())
            _save_state(state_file, state)
            done.add(path.name)
            done_resources += entries
            summary.pushed.append(path.name)
            summary.resources += entries
    summary.seconds = time.perf_counter() - started
    return summary


def server_counts(target: str, http: httpx.Client, types: list[str]) -> dict[str, int | None]:
    """How many resources of each type the server at ``target`` holds (None when it does not say)."""
    server = _Server(target, http)
    counts: dict[str, int | None] = {}
    for resource_type in types:
        response = server.get(resource_type, {"_summary": "count"}, resource_type)
        body = _json(response)
        total = body.get("total") if response.is_success and isinstance(body, dict) else None
        counts[resource_type] = total if isinstance(total, int) else None
    return counts


class _Server:
    """Requests to one FHIR base, retried on transient failures (429/502/503/504 honouring Retry-After, dropped
    connections); an unreachable server or refused credentials end the push."""

    def __init__(self, base: str, http: httpx.Client):
        self.base = base.rstrip("/")
        self.http = http

    def get(self, path: str, params: dict[str, str], what: str) -> httpx.Response:
        return self._call("GET", f"{self.base}/{path}", what, params=params)

    def transaction(self, name: str, content: bytes, entries: int) -> None:
        """POST the transaction Bundle ``content`` (of ``entries`` entries); it must answer for each."""
        response = self._call("POST", self.base, name, content=content)
        body = _json(response)
        if not response.is_success:
            hint = ""
            if response.status_code == 413:
                hint = f" (the bundle has {len(content) / 2**20:.1f} MiB: raise the server's request size limit)"
            raise PushError(
                f"bundle {name} ({entries} resources) was refused by {self.base}: HTTP {response.status_code}: "
                f"{_outcome(body)}{hint}"
            )
        answered = len(body.get("entry", ())) if isinstance(body, dict) and body.get("resourceType") == "Bundle" else 0
        if answered != entries:
            raise PushError(
                f"bundle {name}: {self.base} answered HTTP {response.status_code} with {answered} entries for "
                f"{entries} sent, not a transaction-response; it may not support transactions"
            )

    def _call(self, method: str, url: str, what: str, **kwargs: Any) -> httpx.Response:
        headers = {"Accept": _FHIR_JSON}
        if method == "POST":
            headers |= {"Content-Type": _FHIR_JSON, "Prefer": "return=minimal"}
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                response = self.http.request(method, url, headers=headers, **kwargs)
            except httpx.ConnectError as exc:
                raise PushError(f"cannot connect to {self.base}: {exc}") from None
            except httpx.TransportError as exc:
                if attempt == _ATTEMPTS:
                    raise PushError(f"{what}: the connection to {self.base} failed: {exc}") from None
                time.sleep(2**attempt)
                continue
            if response.status_code in (401, 403):
                refused = "refused the credentials" if self.http.auth is not None else "needs credentials (see --auth)"
                raise PushError(
                    f"{self.base} {refused}: HTTP {response.status_code} for {what}: {_outcome(_json(response))}"
                )
            if response.status_code in _RETRY_STATUSES and attempt < _ATTEMPTS:
                time.sleep(_retry_after(response, attempt))
                continue
            return response
        raise AssertionError("unreachable")


def _retry_after(response: httpx.Response, attempt: int) -> float:
    value = response.headers.get("Retry-After", "")
    return min(float(value), 60.0) if value.isdigit() else float(2**attempt)


def _json(response: httpx.Response) -> Any:
    try:
        return orjson.loads(response.content) if response.content else None
    except orjson.JSONDecodeError:
        return response.text


# -- bundles -------------------------------------------------------------------------------------------------------


def _bundle_files(folder: Path) -> list[Path]:
    """The shared bundle first (the patients' resources refer to it), then the patients' in name order."""
    return sorted(folder.glob("*.json"), key=lambda p: (p.name != SHARED_BUNDLE, p.name))


def _load_bundle(path: Path) -> dict[str, Any]:
    return dict(orjson.loads(path.read_bytes()))


# -- conflicts -----------------------------------------------------------------------------------------------------


def _conflicts(server: _Server, name: str, bundle: dict[str, Any]) -> Iterator[Conflict]:
    """What the server holds that differs from ``bundle``: its Patient and the Patient's MRN; for the shared
    bundle, every resource (it is small)."""
    resources = [entry["resource"] for entry in bundle.get("entry", ()) if "resource" in entry]
    if name == SHARED_BUNDLE:
        by_type: dict[str, list[dict[str, Any]]] = {}
        for resource in resources:
            by_type.setdefault(resource["resourceType"], []).append(resource)
        for resource_type, group in by_type.items():
            for start in range(0, len(group), _ID_BATCH):
                yield from _differing(server, name, resource_type, group[start : start + _ID_BATCH])
        return
    for patient in (r for r in resources if r.get("resourceType") == "Patient"):
        yield from _differing(server, name, "Patient", [patient])
        for identifier in patient.get("identifier", ()):
            if identifier.get("system") != MRN_SYSTEM or not identifier.get("value"):
                continue
            response = server.get("Patient", {"identifier": f"{MRN_SYSTEM}|{identifier['value']}"}, name)
            for other in _matches(response):
                if other.get("id") != patient["id"]:
                    yield Conflict(name, f"Patient/{other.get('id')}", f"already has MRN {identifier['value']}")


def _differing(server: _Server, name: str, resource_type: str, group: list[dict[str, Any]]) -> Iterator[Conflict]:
    ids = ",".join(r["id"] for r in group)
    response = server.get(resource_type, {"_id": ids, "_count": str(len(group))}, name)
    if not response.is_success:
        raise PushError(
            f"checking the {resource_type} ids of {name} on {server.base}: HTTP {response.status_code}: "
            f"{_outcome(_json(response))}"
        )
    held = {r.get("id"): r for r in _matches(response)}
    for resource in group:
        existing = held.get(resource["id"])
        if existing is None:
            continue
        changed = _changed_fields(existing, resource)
        if changed:
            yield Conflict(name, f"{resource_type}/{resource['id']}", f"differs on the server ({', '.join(changed)})")


def _matches(response: httpx.Response) -> list[dict[str, Any]]:
    body = _json(response) if response.is_success else None
    entries = body.get("entry", ()) if isinstance(body, dict) else ()
    return [e["resource"] for e in entries if "resource" in e and e.get("search", {}).get("mode", "match") == "match"]


def _changed_fields(held: dict[str, Any], ours: dict[str, Any]) -> list[str]:
    """The top-level fields that differ, ignoring what a server sets itself (version, time, source, narrative)."""
    a, b = _comparable(held), _comparable(ours)
    return sorted(key for key in a.keys() | b.keys() if a.get(key) != b.get(key))


def _comparable(resource: dict[str, Any]) -> dict[str, Any]:
    result = {k: v for k, v in resource.items() if k not in ("text", "meta")}
    meta = {k: v for k, v in (resource.get("meta") or {}).items() if k not in ("versionId", "lastUpdated", "source")}
    if meta:
        result["meta"] = meta
    return result


# -- state ---------------------------------------------------------------------------------------------------------


def _load_state(path: Path, population: str, target: str) -> PushState:
    if not path.exists():
        return PushState(population=population, target=target)
    try:
        state = PushState.model_validate_json(path.read_bytes())
    except ValueError as exc:
        raise PushError(f"the push state file {path} is not readable ({exc}); delete it to start over") from None
    if state.target.rstrip("/") != target or state.population != population:
        raise PushError(
            f"the push state file {path} records population {state.population!r} pushed to {state.target}, "
            f"not {population!r} to {target}; give another --state file"
        )
    return state


def _save_state(path: Path, state: PushState) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(orjson.dumps(state.model_dump(mode="json"), option=orjson.OPT_INDENT_2))
    os.replace(partial, path)  # a crash mid-write never leaves a torn state file


def _outcome(body: Any) -> str:
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        issues = body.get("issue", ())
        text = "; ".join(
            " ".join(str(part) for part in (i.get("severity"), i.get("code"), i.get("diagnostics")) if part)
            for i in issues
        )
        return text or "an OperationOutcome without issues"
    return (str(body) if body is not None else "no body")[:300]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
