"""Whether a FHIR server can run a suite: ``diagnose`` reads its CapabilityStatement, checks that the credentials
work, finds every patient the scenarios are about, probes the search features they rely on against real data
(probes.py: sorting, paging, date prefixes, token forms, ``_count``, ``_summary=count``) and says, per scenario,
whether it can run there and why not. ``examine`` does the same from an endpoint's options and suite names.

What a scenario needs is derived from what runs when it is played: finding its patient by MRN and computing its
values (graders/values.py: Observations by patient, code and date; counts with ``_summary=count``), its setup (a
transaction: writes) and its reference solution's steps (each search's type and parameters, reads, creates and
updates). An agent may use other searches; those it finds unsupported it is told about, as on any server.

The doctor never writes: ``allow_writes`` only says that the run will be allowed to, so that scenarios that write
count as runnable where the server declares the interactions they need.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import BaseModel, Field, computed_field
from rich.markup import escape
from rich.table import Table

from .auth import AuthError
from .fhir_server.client import FhirClient
from .probes import (
    P_BARE,
    P_COUNT,
    P_PAGING,
    P_PATIENT,
    P_SORT,
    P_SUMMARY,
    P_SYSTEM,
    Probe,
    Status,
    date_probe,
    error_text,
    matches,
    one_line,
    outcome,
    probe_order,
    run_probes,
    scrub,
)
from .scenarios.loader import ScenarioError, load_scenarios
from .scenarios.model import CountValue, ExistsValue, LatestValue, MeanValue, PatientRef, Scenario, SeriesValue
from .staging import EndpointOptions, connect

__all__ = [
    "DoctorCheck",
    "DoctorReport",
    "Needs",
    "ScenarioVerdict",
    "SuiteCount",
    "diagnose",
    "examine",
    "id_ranges",
    "report_tables",
    "scenario_needs",
]

_PREFIX = re.compile(r"^(eq|ne|gt|lt|ge|le|sa|eb|ap)(\d{4}.*)$")
_CODE_PARAMS = {"code", "vaccine-code", "combo-code", "component-code"}


class DoctorCheck(BaseModel):
    name: str
    status: Status
    detail: str = ""


class ScenarioVerdict(BaseModel):
    id: str
    suite: str
    runnable: bool
    reasons: list[str] = Field(default_factory=list, description="Why it cannot run (empty when it can).")
    notes: list[str] = Field(default_factory=list, description="What could not be verified (it may still run).")


class SuiteCount(BaseModel):
    suite: str
    runnable: int
    total: int


class DoctorReport(BaseModel):
    """What ``fhir-sandbox doctor`` found; ``error`` is set when the server could not be reached or the
    credentials were refused (then nothing else was checked)."""

    base_url: str
    allow_writes: bool = False
    error: str | None = None
    checks: list[DoctorCheck] = Field(default_factory=list)
    scenarios: list[ScenarioVerdict] = Field(default_factory=list)

    @property
    def connected(self) -> bool:
        return self.error is None

    @property
    def exit_code(self) -> int:
        """0 when the server could be examined (even if some scenarios cannot run there), 2 when it could not."""
        return 0 if self.connected else 2

    @computed_field  # type: ignore[prop-decorator]
    @property
    def suites(self) -> list[SuiteCount]:
        counts: dict[str, SuiteCount] = {}
        for verdict in self.scenarios:
            count = counts.setdefault(verdict.suite, SuiteCount(suite=verdict.suite, runnable=0, total=0))
            count.total += 1
            count.runnable += verdict.runnable
        return list(counts.values())

    def check(self, name: str) -> DoctorCheck | None:
        return next((c for c in self.checks if c.name == name), None)

    def verdict(self, scenario_id: str) -> ScenarioVerdict | None:
        return next((v for v in self.scenarios if v.id == scenario_id), None)


# -- what a scenario needs ------------------------------------------------------------------------------------------


@dataclass
class Needs:
    """What playing a scenario asks of a server."""

    patients: set[tuple[str, str]] = field(default_factory=set)  # (system, MRN)
    searches: set[tuple[str, str]] = field(default_factory=set)  # (resource type, parameter without modifier)
    interactions: set[tuple[str, str]] = field(default_factory=set)  # (resource type, search-type|read|create|update)
    transaction: bool = False
    writes: bool = False
    created: set[str] = field(default_factory=set)  # types it creates (a staging run deletes them afterwards)
    features: set[str] = field(default_factory=set)  # probe names (PROBES)
    notes: list[str] = field(default_factory=list)


def scenario_needs(scenario: Scenario) -> Needs:
    """What playing ``scenario`` needs: its patients, searches, interactions, writes and search features."""
    needs = Needs()
    if scenario.patient is not None:
        _needs_patient(needs, scenario.patient)
    for spec in scenario.expectations.values.values():
        if getattr(spec, "patient", None) is not None:
            _needs_patient(needs, spec.patient)
        if isinstance(spec, LatestValue | MeanValue | SeriesValue):
            _needs_search(needs, "Observation", {"patient": "x", "code": spec.code, "_count": "200"})
            needs.features |= {P_PATIENT, P_PAGING}
            if spec.within_hours:
                needs.features.add(date_probe("ge"))
                needs.searches.add(("Observation", "date"))
        elif isinstance(spec, CountValue | ExistsValue):
            _needs_search(needs, spec.resource, {**spec.params, "patient": "x", "_summary": "count"})
    if scenario.setup:
        needs.transaction = needs.writes = True
        for resource in scenario.setup:
            needs.interactions.add((resource["resourceType"], "update" if resource.get("id") else "create"))
            needs.created.add(resource["resourceType"])
    steps = scenario.reference.steps
    if steps is None:
        needs.notes.append(f"its reference solution is the function {scenario.reference.function!r}: not checked")
    for step in steps or ():
        args = step.args
        if step.tool == "search":
            if "url" in args and "resource_type" not in args:
                needs.features.add(P_PAGING)
            elif isinstance(args.get("resource_type"), str):
                params = args.get("params") or {}
                _needs_search(needs, args["resource_type"], params if isinstance(params, dict) else {})
        elif step.tool == "read" and isinstance(args.get("resource_type"), str):
            needs.interactions.add((args["resource_type"], "read"))
        elif step.tool in ("create", "update"):
            resource = args.get("resource")
            if isinstance(resource, dict) and isinstance(resource.get("resourceType"), str):
                needs.interactions.add((resource["resourceType"], step.tool))
                if step.tool == "create":
                    needs.created.add(resource["resourceType"])
            needs.writes = True
    return needs


def _needs_patient(needs: Needs, ref: PatientRef) -> None:
    needs.patients.add((ref.system, ref.mrn))
    needs.interactions.add(("Patient", "search-type"))
    needs.searches.add(("Patient", "identifier"))


def _needs_search(needs: Needs, resource_type: str, params: dict[str, Any]) -> None:
    needs.interactions.add((resource_type, "search-type"))
    for key, raw in params.items():
        name, _, modifier = str(key).partition(":")
        values = raw if isinstance(raw, list) else [raw]
        if modifier:
            needs.notes.append(f"{resource_type} {key}: the modifier is not probed")
        if name == "_sort":
            needs.features.add(P_SORT)  # the probe sorts Observations by -date, the only sort the suites use
            if values != ["-date"] or resource_type != "Observation":
                needs.notes.append(f"{resource_type} _sort={','.join(map(str, values))}: only -date is probed")
        elif name == "_count":
            needs.features.add(P_COUNT)
        elif name == "_summary" and "count" in values:
            needs.features.add(P_SUMMARY)
        elif not name.startswith("_"):
            needs.searches.add((resource_type, name))
        for value in (str(v) for v in values):
            match = _PREFIX.match(value)
            if match:
                needs.features.add(date_probe(match.group(1)))
            if name in _CODE_PARAMS and "${" not in value and resource_type == "Observation":
                needs.features.add(P_SYSTEM if "|" in value else P_BARE)


# -- the diagnosis --------------------------------------------------------------------------------------------------


def examine(endpoint: EndpointOptions, suites: Iterable[str] = ("core",)) -> DoctorReport:
    """``diagnose`` the endpoint for the scenarios of ``suites`` (names or paths), authorised by its options.

    Raises:
        ScenarioError: the scenario files have problems.
    """
    loaded = load_scenarios(suites)
    if loaded.problems:
        raise ScenarioError(loaded.problems)
    try:
        with connect(endpoint) as http:
            http.timeout = httpx.Timeout(60)
            return diagnose(endpoint.fhir_base_url, loaded.scenarios, http, endpoint.allow_writes)
    except AuthError as exc:  # a missing secret or key, or a token endpoint that refused
        report = DoctorReport(base_url=endpoint.fhir_base_url.rstrip("/"), allow_writes=endpoint.allow_writes)
        report.error = one_line(f"authentication failed: {error_text(exc)}")
        return report


def diagnose(
    base_url: str, scenarios: Iterable[Scenario], http: httpx.Client, allow_writes: bool = False
) -> DoctorReport:
    """Examine the FHIR server at ``base_url`` for ``scenarios``; ``http`` carries the credentials (its ``auth``).

    Never raises for what the server does: an unreachable server or refused credentials set ``report.error``.
    """
    scenarios = list(scenarios)
    client = FhirClient(base_url, http)
    report = DoctorReport(base_url=client.base_url, allow_writes=allow_writes)
    try:
        authenticated = http.auth is not None
        statement = _capabilities(client, report, authenticated)
        if report.error is None:
            _check_auth(client, report, scenarios, authenticated)
        if report.error is not None:
            return report
        needs = {s.id: scenario_needs(s) for s in scenarios}
        patients = _find_patients(client, report, needs.values())
        wanted: set[str] = set().union(*(n.features for n in needs.values()))
        probes = run_probes(client, scenarios, patients, wanted)
        report.checks += [
            DoctorCheck(name=f"probe: {p.name}", status=p.status, detail=p.detail) for p in probes.values()
        ]
    except AuthError as exc:  # a token that stopped working, a token endpoint that failed
        report.error = one_line(f"authentication failed: {error_text(exc)}")
        return report
    except httpx.HTTPError as exc:
        report.error = one_line(f"the connection to {client.base_url} failed: {error_text(exc)}")
        return report
    for scenario in scenarios:
        report.scenarios.append(_verdict(scenario, needs[scenario.id], statement, patients, probes, allow_writes))
    return report


def _capabilities(client: FhirClient, report: DoctorReport, authenticated: bool) -> _Statement | None:
    started = time.perf_counter()
    try:
        reply = client.request("GET", "metadata")
    except AuthError as exc:
        report.error = one_line(f"authentication failed: {error_text(exc)}")
        return None
    except httpx.HTTPError as exc:
        report.error = one_line(f"cannot reach {client.base_url}/metadata: {error_text(exc)}")
        return None
    seconds = time.perf_counter() - started
    if reply.status in (401, 403):
        report.error = one_line(
            f"authentication failed: {client.base_url}/metadata answered HTTP {reply.status}"
            f"{_refused(authenticated)}: {outcome(reply)}"
        )
        return None
    body = reply.body if isinstance(reply.body, dict) else {}
    if not reply.ok or body.get("resourceType") != "CapabilityStatement":
        what = body.get("resourceType") or (str(reply.body)[:80] if reply.body else "no body")
        report.checks.append(
            DoctorCheck(
                name="CapabilityStatement",
                status="warn",
                detail=f"GET metadata answered HTTP {reply.status} ({scrub(str(what))}); declarations not checked",
            )
        )
        return None
    statement = _Statement(body)
    software = body.get("software") or {}
    who = " ".join(str(software.get(k, "")) for k in ("name", "version")).strip() or "a server"
    report.checks.append(
        DoctorCheck(name="CapabilityStatement", status="pass", detail=f"{who}, in {seconds * 1000:.0f} ms")
    )
    version = str(body.get("fhirVersion", ""))
    r4 = version.startswith("4.0.")
    detail = version if r4 else f"{version or 'not stated'}, not R4 (4.0.x): searches and resources may differ"
    report.checks.append(DoctorCheck(name="fhirVersion", status="pass" if r4 else "fail", detail=detail))
    formats = [str(f) for f in body.get("format", ())]
    json_ok = any("json" in f for f in formats)
    report.checks.append(
        DoctorCheck(name="JSON format", status="pass" if json_ok else "fail", detail=", ".join(formats) or "none")
    )
    searchable = sum(1 for t in statement.types.values() if "search-type" in t.interactions)
    report.checks.append(
        DoctorCheck(
            name="interactions",
            status="pass",
            detail=f"{len(statement.types)} resource types, {searchable} searchable; transaction "
            + ("declared" if statement.transaction else "not declared"),
        )
    )
    return statement


def _check_auth(client: FhirClient, report: DoctorReport, scenarios: list[Scenario], authenticated: bool) -> None:
    """A read with the credentials: the first scenario patient's search (or any Patient search)."""
    ref = next((s.patient for s in scenarios if s.patient is not None), None)
    params = {"identifier": f"{ref.system}|{ref.mrn}"} if ref else {"_count": "1"}
    reply = client.search("Patient", params)  # an AuthError goes to diagnose()
    if reply.status in (401, 403):
        scope = " (may the token read Patient?)" if reply.status == 403 and authenticated else ""
        report.error = one_line(
            f"authentication failed: {reply.url.split('?')[0]} answered HTTP {reply.status}"
            f"{_refused(authenticated)}{scope}: {outcome(reply)}"
        )
    else:
        auth = "credentials accepted" if authenticated else "no credentials needed"
        report.checks.append(
            DoctorCheck(name="auth", status="pass", detail=f"a Patient search answered HTTP {reply.status}: {auth}")
        )


def _refused(authenticated: bool) -> str:
    return "" if authenticated else " (no credentials were given: see --auth)"


def _find_patients(client: FhirClient, report: DoctorReport, needs: Iterable[Needs]) -> dict[tuple[str, str], Any]:
    """MRN -> the Patient resource, or a message saying why there is not exactly one."""
    wanted = sorted({p for n in needs for p in n.patients})
    found: dict[tuple[str, str], Any] = {}
    for system, mrn in wanted:
        reply = client.search("Patient", {"identifier": f"{system}|{mrn}"})
        holders = matches(reply)
        if not reply.ok:
            found[(system, mrn)] = f"the search for patient {mrn} failed (HTTP {reply.status}: {outcome(reply)})"
        elif len(holders) == 1:
            found[(system, mrn)] = holders[0]
        elif holders:
            found[(system, mrn)] = f"{len(holders)} patients have MRN {mrn}"
        else:
            found[(system, mrn)] = f"patient {mrn} not found"
    present = sum(isinstance(v, dict) for v in found.values())
    missing = [v for v in found.values() if isinstance(v, str)]
    status: Status = "pass" if not missing else ("warn" if present else "fail")
    detail = f"{present} of {len(found)} found by MRN" + (f"; {', '.join(missing[:3])}" if missing else "")
    report.checks.append(DoctorCheck(name="patients", status=status, detail=detail + ("…" if len(missing) > 3 else "")))
    return found


# -- verdicts -------------------------------------------------------------------------------------------------------


@dataclass
class _Type:
    interactions: set[str]
    params: set[str]


class _Statement:
    """What a CapabilityStatement declares: per type, interactions and search parameters; system transaction."""

    def __init__(self, body: dict[str, Any]):
        self.types: dict[str, _Type] = {}
        self.transaction = False
        for rest in body.get("rest", ()):
            if rest.get("mode", "server") != "server":
                continue
            self.transaction |= any(i.get("code") == "transaction" for i in rest.get("interaction", ()))
            for resource in rest.get("resource", ()):
                kind = self.types.setdefault(str(resource.get("type")), _Type(set(), set()))
                kind.interactions |= {str(i.get("code")) for i in resource.get("interaction", ())}
                kind.params |= {str(p.get("name")) for p in resource.get("searchParam", ())}


def _verdict(
    scenario: Scenario,
    needs: Needs,
    statement: _Statement | None,
    patients: dict[tuple[str, str], Any],
    probes: dict[str, Probe],
    allow_writes: bool,
) -> ScenarioVerdict:
    reasons: list[str] = []
    notes = list(needs.notes)
    for key in sorted(needs.patients):
        if isinstance(patients.get(key), str):
            reasons.append(patients[key])
    if needs.writes and not allow_writes:
        reasons.append("needs writes (run with --allow-writes)")
    if statement is not None:
        for resource_type, interaction in sorted(needs.interactions):
            if interaction in ("create", "update") and not allow_writes:
                continue  # already said: needs writes
            declared = statement.types.get(resource_type)
            if declared is None:
                reasons.append(f"{resource_type} is not in the CapabilityStatement")
            elif interaction not in declared.interactions:
                reasons.append(f"{resource_type} interaction '{interaction}' not declared")
        for resource_type, param in sorted(needs.searches):
            declared = statement.types.get(resource_type)
            if declared is not None and param not in declared.params:
                reasons.append(f"{resource_type} search param '{param}' not declared")
        if needs.transaction and allow_writes and not statement.transaction:
            reasons.append("its setup needs the 'transaction' interaction, not declared")
        undeletable = sorted(
            t for t in needs.created if t in statement.types and "delete" not in statement.types[t].interactions
        )
        if allow_writes and undeletable:
            notes.append(f"'delete' not declared for {', '.join(undeletable)}: what the run creates may stay")
    for feature in sorted(needs.features, key=probe_order):
        probe = probes.get(feature)
        if probe is None or probe.status == "pass":
            continue
        if probe.status == "fail":
            reasons.append(f"probe {probe.name} failed: {probe.detail}")
        else:
            notes.append(f"{probe.name} unverified: {probe.detail}")
    reasons = list(dict.fromkeys(reasons))
    suite = scenario.id.split(".", 1)[0]
    return ScenarioVerdict(id=scenario.id, suite=suite, runnable=not reasons, reasons=reasons, notes=notes)


# -- rendering ------------------------------------------------------------------------------------------------------

_STYLE = {"pass": "green", "fail": "red", "warn": "yellow", "skip": "dim"}


def report_tables(report: DoctorReport) -> list[Table]:
    """The report as rich tables: the checks; runnable scenarios per suite; why the others cannot run."""
    checks = Table(title=f"FHIR endpoint {report.base_url}")
    for column in ("check", "result", "detail"):
        checks.add_column(column)
    for check in report.checks:
        style = _STYLE[check.status]
        checks.add_row(check.name, f"[{style}]{check.status}[/{style}]", escape(check.detail))
    tables = [checks]
    if not report.scenarios:
        return tables
    suites = Table(title="Scenarios" + (" (writes allowed)" if report.allow_writes else " (read-only)"))
    for column in ("suite", "can run", "cannot run", "total"):
        suites.add_column(column, justify="left" if column == "suite" else "right")
    for count in report.suites:
        suites.add_row(count.suite, str(count.runnable), str(count.total - count.runnable), str(count.total))
    tables.append(suites)
    for title, attribute in (("Why scenarios cannot run", "reasons"), ("Unverified (they may still run)", "notes")):
        grouped: dict[str, list[str]] = {}
        for verdict in report.scenarios:
            for reason in getattr(verdict, attribute):
                grouped.setdefault(reason, []).append(verdict.id)
        if not grouped:
            continue
        table = Table(title=title)
        for column in ("reason" if attribute == "reasons" else "note", "scenarios", "which"):
            table.add_column(column, justify="right" if column == "scenarios" else "left")
        for reason, ids in sorted(grouped.items(), key=lambda item: (-len(item[1]), item[0])):
            table.add_row(escape(reason), str(len(ids)), escape(id_ranges(ids)))
        tables.append(table)
    return tables


def id_ranges(ids: Iterable[str]) -> str:
    """Scenario ids, grouped and with numbered runs folded: "core.k-replacement.00-19,23; core.record-bp.03"."""
    groups: dict[str, list[str]] = {}
    for scenario_id in ids:
        head, _, tail = scenario_id.rpartition(".")
        groups.setdefault(head, []).append(tail)
    parts: list[str] = []
    for head, tails in groups.items():
        if not head or not all(t.isdigit() for t in tails):
            parts.extend(f"{head}.{t}" if head else t for t in tails)
            continue
        runs: list[list[str]] = []
        for tail in sorted(set(tails), key=int):
            if runs and int(tail) == int(runs[-1][-1]) + 1:
                runs[-1].append(tail)
            else:
                runs.append([tail])
        parts.append(f"{head}." + ",".join(r[0] + (f"-{r[-1]}" if len(r) > 1 else "") for r in runs))
    return "; ".join(parts)
