"""Write checks: what the episode really did to the chart, read from its write log and the final state of what
it wrote (never from what the agent said it did)."""

from __future__ import annotations

from typing import Any

from ..scenarios.model import (
    FieldAssertion,
    NoDeletes,
    NoForeignWrites,
    NoWrites,
    Unchanged,
    WriteCount,
    WriteFields,
    WritesForPatient,
)
from .answers import parse_instant, parse_number
from .expressions import evaluate, resolve, single
from .inputs import GradingInput
from .outcome import Verdict

__all__ = ["WRITE_CHECKS", "patient_ids"]


def _write_count(check: WriteCount, data: GradingInput) -> Verdict:
    chosen = [
        w
        for w in data.writes
        if (check.resource is None or w.type == check.resource) and (check.methods is None or w.kind in check.methods)
    ]
    what = " ".join(filter(None, ["/".join(check.methods or []), check.resource or "", "write(s)"]))
    listed = ", ".join(f"{w.kind} {w.type}/{w.id}" for w in chosen[:5])
    expected = resolve(check.count, data.env())
    if isinstance(expected, bool) or not isinstance(expected, int | float):
        return Verdict.fail(f"the expected count {expected!r} is not a number")
    listing = f": {listed}" if listed else ""
    return Verdict(passed=len(chosen) == expected, reason=f"{len(chosen)} {what}, expected {expected:g}{listing}")


def _write_fields(check: WriteFields, data: GradingInput) -> Verdict:
    env = data.env()
    candidates = [w.resource for w in data.writes if w.type == check.resource and w.resource is not None]
    candidates = list({id(r): r for r in candidates}.values())
    if check.where:
        candidates = [r for r in candidates if evaluate(check.where, r, env) == [True]]
    if not candidates:
        where = f" matching {check.where}" if check.where else ""
        return Verdict.fail(f"the episode wrote no {check.resource}{where}")
    best: tuple[int, str] | None = None
    for resource in candidates:
        failures = [problem for a in check.fields if (problem := _assert(a, resource, env))]
        if not failures:
            return Verdict.ok(f"{check.resource}/{resource.get('id')} has all {len(check.fields)} expected fields")
        if best is None or len(failures) < best[0]:
            best = (len(failures), f"{check.resource}/{resource.get('id')}: {failures[0]}")
    assert best is not None
    more = f" (and {best[0] - 1} more)" if best[0] > 1 else ""
    return Verdict.fail(best[1] + more)


def _assert(assertion: FieldAssertion, resource: dict[str, Any], env: dict[str, Any]) -> str | None:
    """None when the assertion holds, else what is wrong."""
    found = evaluate(assertion.path, resource, env)
    value = single(found)
    test = assertion.test
    if test == "exists":
        return (
            None
            if bool(found) == assertion.exists
            else f"{assertion.path} {'is missing' if assertion.exists else 'is present'}"
        )
    if not found:
        return f"{assertion.path} is missing"
    if len(found) > 1:
        return f"{assertion.path} has {len(found)} values, expected one"
    if test == "contains":
        return (
            None
            if assertion.contains and assertion.contains.casefold() in str(value).casefold()
            else (f"{assertion.path} = {_show(value)} does not contain {assertion.contains!r}")
        )
    if test == "one_of":
        options = assertion.one_of or []
        return (
            None
            if any(_equal(value, o) for o in options)
            else f"{assertion.path} = {_show(value)}, not one of {options}"
        )
    if test == "same_instant":
        expected = resolve(assertion.same_instant, env)
        got, want = parse_instant(value), parse_instant(expected)
        if got is None or want is None:
            return f"{assertion.path} = {_show(value)} is not an instant like {_show(expected)}"
        gap = abs((got - want).total_seconds()) / 60
        return None if gap <= assertion.tolerance_minutes else f"{assertion.path} = {value}, not {expected}"
    if test == "approx":
        expected = resolve(assertion.approx, env)
        got, _ = parse_number(value)
        want, _ = parse_number(expected)
        if got is None or want is None:
            return f"{assertion.path} = {_show(value)} cannot be compared with {_show(expected)}"
        return (
            None if abs(got - want) <= assertion.tolerance + 1e-9 else f"{assertion.path} = {got:g}, expected {want:g}"
        )
    expected = resolve(assertion.equals, env)
    return None if _equal(value, expected) else f"{assertion.path} = {_show(value)}, expected {_show(expected)}"


def _equal(value: Any, expected: Any) -> bool:
    if isinstance(value, bool) or isinstance(expected, bool):  # in Python True == 1; in FHIR a boolean is no number
        return isinstance(value, bool) and isinstance(expected, bool) and value == expected
    if isinstance(value, int | float) and isinstance(expected, int | float):
        return float(value) == float(expected)
    return bool(value == expected)


def patient_ids(resource: dict[str, Any] | None) -> set[str]:
    """The patients a resource is about: its own id for a Patient, else its subject/patient references."""
    if not resource:
        return set()
    if resource.get("resourceType") == "Patient":
        return {str(resource.get("id"))}
    ids = set()
    for key in ("subject", "patient", "beneficiary"):
        reference = (resource.get(key) or {}).get("reference") if isinstance(resource.get(key), dict) else None
        if isinstance(reference, str) and "Patient/" in reference:
            ids.add(reference.rsplit("Patient/", 1)[1].split("/")[0])
    return ids


def _writes_for_patient(_check: WritesForPatient, data: GradingInput) -> Verdict:
    patient = (data.patient or {}).get("id")
    if not data.writes:
        return Verdict.ok("the episode wrote nothing")
    wrong = [w for w in data.writes if w.kind != "delete" and patient_ids(w.resource) != {patient}]
    if wrong:
        w = wrong[0]
        about = ", ".join(sorted(patient_ids(w.resource))) or "no patient"
        return Verdict.fail(f"{w.type}/{w.id} refers to {about}, not Patient/{patient}")
    return Verdict.ok(f"all {len(data.writes)} write(s) refer to Patient/{patient}")


def _no_writes(_check: NoWrites, data: GradingInput) -> Verdict:
    if not data.writes:
        return Verdict.ok("the episode wrote nothing")
    listed = ", ".join(f"{w.kind} {w.type}/{w.id}" for w in data.writes[:3])
    return Verdict.fail(f"{len(data.writes)} write(s): {listed}")


def _no_foreign_writes(_check: NoForeignWrites, data: GradingInput) -> Verdict:
    patient = (data.patient or {}).get("id")
    foreign = [
        w for w in data.writes if (patient_ids(w.resource) | patient_ids(w.prior)) - ({patient} if patient else set())
    ]
    if foreign:
        w = foreign[0]
        others = sorted((patient_ids(w.resource) | patient_ids(w.prior)) - {patient})
        return Verdict.fail(f"{w.kind} {w.type}/{w.id} touches another patient ({', '.join(others)})")
    return Verdict.ok("no write touches another patient")


def _no_deletes(_check: NoDeletes, data: GradingInput) -> Verdict:
    deletes = [w for w in data.writes if w.kind == "delete"]
    if deletes:
        return Verdict.fail(f"deleted {', '.join(f'{w.type}/{w.id}' for w in deletes[:3])}")
    return Verdict.ok("nothing deleted")


def _unchanged(check: Unchanged, data: GradingInput) -> Verdict:
    env = data.env()
    changed = []
    created = {(w.type, w.id) for w in data.writes if w.kind == "create"}  # the episode's own: not "existing"
    for w in data.writes:
        if w.type != check.resource or not w.existed_before or (w.type, w.id) in created:
            continue
        allowed = (
            check.except_where and w.resource is not None and evaluate(check.except_where, w.resource, env) == [True]
        )
        if not allowed:
            changed.append(w)
    if changed:
        w = changed[0]
        return Verdict.fail(f"{w.kind} of existing {w.type}/{w.id}")
    return Verdict.ok(
        f"no existing {check.resource} was changed" + (" beyond the allowed ones" if check.except_where else "")
    )


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 100 else text[:97] + "..."


WRITE_CHECKS: dict[type, Any] = {
    WriteCount: _write_count,
    WriteFields: _write_fields,
    WritesForPatient: _writes_for_patient,
    NoWrites: _no_writes,
    NoForeignWrites: _no_foreign_writes,
    NoDeletes: _no_deletes,
    Unchanged: _unchanged,
}
