"""Real-EHR behaviours a deployment can switch on (ServerSettings; reference/fhir-servers.md §2.7), so that agents
and clients meet the constraints of the servers they will really talk to. docs/server-differences.md describes them.

- ``require_patient`` (Epic): Observation searches need ``patient`` (or ``subject``) plus ``code`` or ``category``;
  searches of the other patient-compartment clinical types need ``patient``. Otherwise: 400, an OperationOutcome
  "Required search parameter missing: ...". A ``Patient/[id]/[type]`` compartment search has its patient.
- ``include_limit`` (Microsoft: 100; HAPI: 1000): at most this many ``_include``/``_revinclude`` resources per page.
  The rest are left out and the Bundle says so in its ``search.mode = outcome`` entry: a warning with issue code
  ``incomplete`` (what Microsoft's FHIR server does, and what R4 defines the outcome entry for).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .errors import InvalidSearch
from .search.execute import SearchResult
from .searchparams import SearchParamRegistry

__all__ = ["PATIENT_SCOPED", "check_required", "limit_includes", "note_truncated_includes"]

# The clinical types whose searches need a patient (Epic); Observation also needs code or category.
PATIENT_SCOPED = frozenset(
    {
        "AllergyIntolerance",
        "Condition",
        "DiagnosticReport",
        "Encounter",
        "Immunization",
        "MedicationRequest",
        "Observation",
        "Procedure",
        "ServiceRequest",
    }
)


def check_required(
    resource_type: str, items: Iterable[tuple[str, str]], registry: SearchParamRegistry, compartment: str | None
) -> None:
    """Raise InvalidSearch (400, issue code ``required``) when a search lacks the parameters Epic requires."""
    if resource_type not in PATIENT_SCOPED:
        return
    given = _given(items)
    has_patient = compartment is not None or any(
        code in given and registry.get(resource_type, code) is not None for code in ("patient", "subject")
    )
    missing = [] if has_patient else ["patient"]
    if resource_type == "Observation" and not given & {"code", "category"}:
        missing.append("code or category")
    if missing:
        needs = "patient plus code or category" if resource_type == "Observation" else "patient"
        raise InvalidSearch(
            f"Required search parameter missing: {' and '.join(missing)} ({resource_type} searches need {needs})",
            code="required",
        )


def _given(items: Iterable[tuple[str, str]]) -> set[str]:
    """The parameter codes given a value: not chained (``patient.name`` names no one patient), not ``:missing``."""
    codes = set()
    for name, value in items:
        code, _, modifier = name.partition(":")
        if value.strip() and "." not in name and modifier != "missing":
            codes.add(code)
    return codes


def limit_includes(result: SearchResult, limit: int | None) -> int:
    """Keep at most ``limit`` included resources in ``result``; return how many were left out."""
    if limit is None or len(result.included) <= limit:
        return 0
    dropped = len(result.included) - limit
    result.included = result.included[:limit]
    return dropped


def note_truncated_includes(bundle: dict[str, Any], dropped: int, limit: int) -> None:
    """Say in the searchset's outcome entry (made if there is none) that included resources were left out."""
    issue = {
        "severity": "warning",
        "code": "incomplete",
        "diagnostics": (
            f"Included items are truncated: this server returns at most {limit} included resources per page, and "
            f"{dropped} more were left out. Ask for fewer matches per page (_count) to get them all."
        ),
    }
    entries = bundle.setdefault("entry", [])
    for entry in entries:
        if entry.get("search", {}).get("mode") == "outcome":
            entry["resource"]["issue"].append(issue)
            return
    entries.append({"resource": {"resourceType": "OperationOutcome", "issue": [issue]}, "search": {"mode": "outcome"}})
