"""The doctor's probes: search features tried on real data (the Observations of one of a suite's patients), each
compared with what the data says the answer must be: ``_count`` honoured, ``next`` links that reach every result
once and stay under the base URL, ``_sort=-date`` newest first, date prefixes selecting exactly the right
results, token searches with and without a system, and ``_summary=count`` totals."""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from .fhir_server.client import FhirClient, FhirReply, OutsideBaseError
from .graders.values import effective_instant
from .scenarios.model import LatestValue, MeanValue, Scenario, SeriesValue

__all__ = [
    "P_BARE",
    "P_COUNT",
    "P_PAGING",
    "P_PATIENT",
    "P_SORT",
    "P_SUMMARY",
    "P_SYSTEM",
    "Probe",
    "Status",
    "all_pages",
    "date_probe",
    "error_text",
    "matches",
    "one_line",
    "outcome",
    "probe_order",
    "run_probes",
    "scrub",
]

Status = Literal["pass", "fail", "warn", "skip"]
_PAGE_LIMIT = 25  # pages followed by a probe before giving up on a server that pages forever
_PROBE_CANDIDATES = 8  # (patient, code) pairs tried to find data to probe with
# the instants (to the second, as the population and the probe's pivot have them) each date prefix selects
_COMPARE: dict[str, Callable[[datetime, datetime], bool]] = {
    "ge": operator.ge,
    "gt": operator.gt,
    "le": operator.le,
    "lt": operator.lt,
    "eq": operator.eq,
    "ne": operator.ne,
}
_BEARER = re.compile(r"(?i)\b(bearer\s+)[\w.~+/-]{16,}=*")  # a token after "Bearer", not the word "token"
_JWT = re.compile(r"\beyJ[\w-]+\.[\w-]+\.[\w-]*")


# probe names (what doctor.Needs.features lists)
P_PATIENT, P_COUNT, P_PAGING, P_SORT = "Observation by patient and code", "_count", "paging", "_sort=-date"
P_SYSTEM, P_BARE, P_SUMMARY = "code=system|code", "code (bare token)", "_summary=count"


def date_probe(prefix: str) -> str:
    return f"date={prefix}…"


@dataclass(frozen=True)
class Probe:
    name: str
    status: Status
    detail: str


@dataclass
class _Observation:
    id: str
    moment: datetime | None
    text: str | None  # effectiveDateTime, when it has a time of day
    coding: dict[str, Any]


def run_probes(
    client: FhirClient, scenarios: list[Scenario], patients: dict[tuple[str, str], Any], wanted: set[str]
) -> dict[str, Probe]:
    """The ``wanted`` probes (and the basic ones) on the Observations of one of the scenarios' patients found in
    ``patients`` (MRN -> Patient, or why it is not there); name -> result, in display order."""
    wanted = wanted | {P_PATIENT, P_COUNT, P_PAGING, P_SORT, date_probe("ge"), P_SYSTEM, P_BARE, P_SUMMARY}
    results: dict[str, Probe] = {}
    try:
        data = _probe_data(client, scenarios, patients)
    except OutsideBaseError as exc:
        data = ("fail", f"a next link leaves the base URL: {exc}")
    if len(data) == 2:  # no data to probe with: (status of P_PATIENT, why)
        for name in wanted:
            results[name] = Probe(name, data[0] if name == P_PATIENT else "skip", data[1])
    else:
        patient_id, code, observations = data
        detail = f"{len(observations)} with code {code} for Patient/{patient_id}"
        results[P_PATIENT] = Probe(P_PATIENT, "pass", detail)
        base = {"patient": patient_id, "code": code}
        for name in wanted - {P_PATIENT}:
            try:
                status, detail = _run_probe(client, name, base, observations)
            except OutsideBaseError as exc:
                status, detail = "fail", str(exc)
            results[name] = Probe(name, status, detail)
    return {name: results[name] for name in sorted(results, key=probe_order)}


def probe_order(name: str) -> tuple[int, str]:
    order = [P_PATIENT, P_COUNT, P_PAGING, P_SORT, P_SYSTEM, P_BARE, P_SUMMARY]
    return (order.index(name), name) if name in order else (len(order), name)


def _probe_data(
    client: FhirClient, scenarios: list[Scenario], patients: dict[tuple[str, str], Any]
) -> tuple[str, str, list[_Observation]] | tuple[Status, str]:
    """A suite patient's id, an Observation code and its results (at least 3 if a candidate has them, else the
    most found); or, when there are none, whether that is a failure (skip: the suite reads no Observations of
    a patient found) and why."""
    candidates: list[tuple[str, str]] = []
    for scenario in scenarios:
        patient = patients.get((scenario.patient.system, scenario.patient.mrn)) if scenario.patient else None
        if not isinstance(patient, dict):
            continue
        for code in _observation_codes(scenario):
            if (patient["id"], code) not in candidates:
                candidates.append((patient["id"], code))
    if not candidates:
        return "skip", "no patient found with an Observation code the suite reads"
    best: tuple[str, str, list[_Observation]] | None = None
    for patient_id, code in candidates[:_PROBE_CANDIDATES]:
        reply = client.search("Observation", {"patient": patient_id, "code": code, "_count": "200"})
        if not reply.ok:
            return "fail", f"Observation?patient={patient_id}&code={code}: HTTP {reply.status}: {outcome(reply)}"
        found = [_observation(r) for r in all_pages(client, reply)[0]]
        if best is None or len(found) > len(best[2]):
            best = (patient_id, code, found)
        if len(found) >= 3:
            break
    assert best is not None
    if not best[2]:
        tried = ", ".join(f"{c} of Patient/{p}" for p, c in candidates[:_PROBE_CANDIDATES])
        return "fail", f"no Observations found by patient and code (tried {tried})"
    return best


def _observation_codes(scenario: Scenario) -> list[str]:
    codes = [
        spec.code
        for spec in scenario.expectations.values.values()
        if isinstance(spec, LatestValue | MeanValue | SeriesValue) and spec.patient is None
    ]
    for step in scenario.reference.steps or ():
        params = step.args.get("params") or {}
        if step.tool == "search" and step.args.get("resource_type") == "Observation" and isinstance(params, dict):
            code = params.get("code")
            if isinstance(code, str) and "${" not in code and "," not in code:
                codes.append(code)
    return list(dict.fromkeys(codes))


def _observation(resource: dict[str, Any]) -> _Observation:
    text = resource.get("effectiveDateTime")
    codings = (resource.get("code") or {}).get("coding") or [{}]
    return _Observation(
        id=str(resource.get("id")),
        moment=effective_instant(resource),
        text=text if isinstance(text, str) and "T" in text else None,
        coding=codings[0],
    )


def _run_probe(
    client: FhirClient, name: str, base: dict[str, str], observations: list[_Observation]
) -> tuple[Status, str]:
    if name.startswith("date="):
        return _date_probe_result(client, name.removeprefix("date=").rstrip("…"), base, observations)
    if name in (P_SYSTEM, P_BARE):
        return _token_probe(client, name == P_SYSTEM, base, observations)
    probes = {P_COUNT: _count_probe, P_PAGING: _paging_probe, P_SORT: _sort_probe, P_SUMMARY: _summary_probe}
    if name not in probes:
        return "skip", "no such probe"
    return probes[name](client, base, observations)


def _count_probe(client: FhirClient, base: dict[str, str], observations: list[_Observation]) -> tuple[Status, str]:
    reply = client.search("Observation", {**base, "_count": "2"})
    if not reply.ok:
        return "fail", f"HTTP {reply.status}: {outcome(reply)}"
    got = len(matches(reply))
    if got > 2:
        return "fail", f"asked for 2 per page, got {got}"
    return "pass", f"asked for 2 per page, got {got} of {len(observations)}"


def _paging_probe(client: FhirClient, base: dict[str, str], observations: list[_Observation]) -> tuple[Status, str]:
    n = len(observations)
    if n < 3:
        return "skip", f"only {n} Observation(s) to page through"
    size = 2 if n <= 10 else math.ceil(n / 5)
    found, pages = all_pages(client, client.search("Observation", {**base, "_count": str(size)}))
    got = [str(r.get("id")) for r in found]
    if len(got) != len(set(got)):
        return "fail", f"{len(got) - len(set(got))} resource(s) repeated across {pages} pages of {size}"
    if set(got) != {o.id for o in observations}:
        reached = len(set(got) & {o.id for o in observations})
        return "fail", f"{reached} of {n} resources reached by following next links ({pages} pages)"
    return "pass", f"{pages} pages of {size} followed, all {n} resources once, links under the base URL"


def _sort_probe(client: FhirClient, base: dict[str, str], observations: list[_Observation]) -> tuple[Status, str]:
    dated = [o.moment for o in observations if o.moment is not None]
    if len(set(dated)) < 2:
        return "skip", "fewer than 2 distinct dates to sort"
    reply = client.search("Observation", {**base, "_sort": "-date", "_count": str(min(len(observations), 50))})
    if not reply.ok:
        return "fail", f"HTTP {reply.status}: {outcome(reply)}"
    moments = [m for m in (effective_instant(r) for r in matches(reply)) if m is not None]
    if not moments or moments != sorted(moments, reverse=True) or moments[0] != max(dated):
        return "fail", "results are not newest first: _sort=-date is ignored or wrong"
    return "pass", f"{len(moments)} results newest first"


def _token_probe(
    client: FhirClient, with_system: bool, base: dict[str, str], observations: list[_Observation]
) -> tuple[Status, str]:
    sample = next((o for o in observations if o.coding.get("code")), None)
    if sample is None:
        return "skip", "no coded Observation"
    system, code = sample.coding.get("system"), str(sample.coding["code"])
    if with_system and not system:
        return "skip", "the Observation's coding has no system"
    value = f"{system}|{code}" if with_system else code
    found, _ = all_pages(client, client.search("Observation", {"patient": base["patient"], "code": value}))
    if sample.id in {r.get("id") for r in found}:
        return "pass", f"code={value} found Observation/{sample.id}"
    return "fail", f"code={value} did not find Observation/{sample.id}"


def _summary_probe(client: FhirClient, base: dict[str, str], observations: list[_Observation]) -> tuple[Status, str]:
    reply = client.search("Observation", {**base, "_summary": "count"})
    total = reply.body.get("total") if reply.ok and isinstance(reply.body, dict) else None
    if total == len(observations):
        return "pass", f"total {total}"
    return "fail", f"HTTP {reply.status}, total {total!r}; expected {len(observations)}"


def _date_probe_result(
    client: FhirClient, prefix: str, base: dict[str, str], observations: list[_Observation]
) -> tuple[Status, str]:
    timed = sorted((o.moment, o.text, o.id) for o in observations if o.text and o.moment)
    if len({moment for moment, _, _ in timed}) < 2:
        return "skip", "fewer than 2 distinct effective times to filter"
    if prefix not in _COMPARE:
        return "skip", f"the prefix {prefix} is not probed"
    pivot, text, _ = timed[len(timed) // 2]
    expected = {id_ for moment, _, id_ in timed if _COMPARE[prefix](moment, pivot)}
    comparable = {id_ for _, _, id_ in timed}
    reply = client.search("Observation", {**base, "date": f"{prefix}{text}", "_count": "200"})
    if not reply.ok:
        return "fail", f"HTTP {reply.status}: {outcome(reply)}"
    got = {r.get("id") for r in all_pages(client, reply)[0]} & comparable
    if got == expected:
        return "pass", f"date={prefix}{text}: {len(got)} of {len(comparable)}, as expected"
    return "fail", f"date={prefix}{text}: expected {len(expected)} of {len(comparable)}, got {len(got)}"


def all_pages(client: FhirClient, reply: FhirReply) -> tuple[list[dict[str, Any]], int]:
    """The matches of a search and of every page its ``next`` links lead to, and the number of pages.

    Raises:
        OutsideBaseError: a next link leaves the base URL.
    """
    found = matches(reply)
    pages = 1
    while reply.ok and pages < _PAGE_LIMIT:
        links = reply.body.get("link", ()) if isinstance(reply.body, dict) else ()
        next_url = next((link.get("url") for link in links if link.get("relation") == "next"), None)
        if not next_url:
            break
        reply = client.request("GET", next_url)
        found += matches(reply)
        pages += 1
    return found, pages


# -- helpers --------------------------------------------------------------------------------------------------------


def matches(reply: FhirReply) -> list[dict[str, Any]]:
    body = reply.body if reply.ok and isinstance(reply.body, dict) else {}
    return [
        e["resource"]
        for e in body.get("entry", ())
        if isinstance(e, dict) and "resource" in e and e.get("search", {}).get("mode", "match") == "match"
    ]


def outcome(reply: FhirReply) -> str:
    body = reply.body
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        text = "; ".join(str(i.get("diagnostics") or i.get("code", "")) for i in body.get("issue", ()))
    else:
        text = str(body)[:200] if body else "no body"
    return scrub(text)


def error_text(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def scrub(text: str) -> str:
    """Whatever a server echoes, never print a token."""
    return _JWT.sub("[token]", _BEARER.sub(r"\1[token]", text))


def one_line(text: str) -> str:
    return " ".join(scrub(text).split())
