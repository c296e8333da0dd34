"""Computed expectations: the named values of a scenario, read from the chart through the FHIR API as of the
scenario's ``now`` before the agent acts. Computing them from the chart (not writing them into the scenario)
keeps a scenario right against any population, or a staging server that holds its patient."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from statistics import fmean
from typing import Any

from ..fhir_server.client import FhirClient
from ..scenarios.model import (
    AgeValue,
    CountValue,
    ExistsValue,
    FormulaValue,
    LatestValue,
    MeanValue,
    PatientRef,
    Scenario,
    SeriesValue,
    TableValue,
)
from .expressions import ExpressionError, evaluate, single

__all__ = ["ValuesUnavailable", "compute_values", "effective_instant", "find_patient", "instant_text"]

_IGNORED_STATUS = {"entered-in-error", "cancelled"}


class ValuesUnavailable(RuntimeError):
    """A value could not be computed (patient missing, server error): an infrastructure error, not a failure."""


def find_patient(client: FhirClient, ref: PatientRef) -> dict[str, Any]:
    """The one Patient with this MRN.

    Raises:
        ValuesUnavailable: none or several patients have it, or the server failed.
    """
    try:
        found = client.search_all("Patient", {"identifier": f"{ref.system}|{ref.mrn}"})
    except RuntimeError as exc:
        raise ValuesUnavailable(str(exc)) from None
    if len(found) != 1:
        raise ValuesUnavailable(
            f"{len(found)} patients have MRN {ref.mrn} ({ref.system}) on {client.base_url}; expected 1"
        )
    return dict(found[0])


def compute_values(scenario: Scenario, client: FhirClient, patient: dict[str, Any] | None) -> dict[str, Any]:
    """Each of the scenario's values in declaration order (later ones may use earlier ones)."""
    now = scenario.now
    env: dict[str, Any] = {"now": instant_text(now), "patient": patient}
    values: dict[str, Any] = {}
    for name, spec in scenario.expectations.values.items():
        try:
            values[name] = _compute(spec, client, patient, now, env)
        except (RuntimeError, ExpressionError) as exc:  # a broken formula too: the episode cannot be graded
            raise ValuesUnavailable(f"value {name!r}: {exc}") from None
        env[name] = values[name]
    return values


def _compute(spec: Any, client: FhirClient, patient: dict[str, Any] | None, now: datetime, env: dict[str, Any]) -> Any:
    if isinstance(spec, FormulaValue):
        return single(evaluate(spec.expression, None, env))
    if isinstance(spec, TableValue):
        return _table(spec, env)
    if spec.patient is not None:
        patient = find_patient(client, spec.patient)
    if patient is None:
        raise RuntimeError(f"a {spec.kind} value needs the scenario's patient (or its own)")
    if isinstance(spec, AgeValue):
        return _age(patient, now)
    if isinstance(spec, CountValue | ExistsValue):
        params = {**spec.params, "patient": patient["id"], "_summary": "count"}
        reply = client.search(spec.resource, params)
        if not reply.ok:
            raise RuntimeError(f"{reply.url} answered HTTP {reply.status}")
        total = int((reply.body or {}).get("total", 0))
        return total if isinstance(spec, CountValue) else total > 0
    since = now - timedelta(hours=spec.within_hours) if spec.within_hours else None
    observations = _observations(client, patient["id"], spec.code, since, now)
    observations.sort(key=lambda pair: (pair[0], pair[1].get("id", "")))
    if isinstance(spec, LatestValue):
        return _point(observations[-1][1]) if observations else None
    if isinstance(spec, SeriesValue):
        chosen = observations[-spec.last :] if spec.last else observations
        return [_point(resource) for _, resource in chosen]
    assert isinstance(spec, MeanValue)
    numbers = [r["valueQuantity"]["value"] for _, r in observations if "value" in r.get("valueQuantity", {})]
    return round(fmean(numbers), 6) if numbers else None


def _point(resource: dict[str, Any]) -> dict[str, Any]:
    quantity = resource.get("valueQuantity") or {}
    return {
        "value": quantity.get("value"),
        "unit": quantity.get("unit") or quantity.get("code"),
        "time": _time_text(resource),
        "id": resource.get("id"),
    }


def _observations(
    client: FhirClient, patient_id: str, code: str, since: datetime | None, now: datetime
) -> list[tuple[datetime, dict[str, Any]]]:
    """The patient's Observations of ``code`` effective in [since, now], with their instants."""
    params: dict[str, Any] = {"patient": patient_id, "code": code, "_count": "200"}
    if since is not None:
        params["date"] = f"ge{instant_text(since)}"
    found = []
    for resource in client.search_all("Observation", params):
        moment = effective_instant(resource)
        if moment is None or resource.get("status") in _IGNORED_STATUS:
            continue
        if moment <= now and (since is None or moment >= since):
            found.append((moment, resource))
    return found


def effective_instant(resource: dict[str, Any]) -> datetime | None:
    """When an Observation was clinically true: effective[x] (a period's start), else issued."""
    text = _time_text(resource)
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _time_text(resource: dict[str, Any]) -> str | None:
    """The text of an Observation's clinical time, as stored: effective[x] (a period's start), else issued."""
    return (
        resource.get("effectiveDateTime")
        or resource.get("effectiveInstant")
        or (resource.get("effectivePeriod") or {}).get("start")
        or resource.get("issued")
    )


def _age(patient: dict[str, Any], now: datetime) -> int | None:
    text = patient.get("birthDate")
    if not isinstance(text, str) or len(text) < 10:
        return None
    born = date.fromisoformat(text[:10])
    today = now.date()
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def _table(spec: TableValue, env: dict[str, Any]) -> Any:
    value = single(evaluate(spec.input, None, env))
    if value is None:
        return spec.missing
    if isinstance(value, bool) or not isinstance(value, int | float):
        return spec.otherwise
    for row in spec.rows:
        if (row.below is not None and value < row.below) or (row.at_most is not None and value <= row.at_most):
            return row.value
    return spec.otherwise


def instant_text(moment: datetime) -> str:
    """A FHIR instant with its offset, to the second: 2023-11-13T10:15:00+00:00."""
    return moment.isoformat(timespec="seconds")
