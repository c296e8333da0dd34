"""Helpers for the REST conformance tests (R4 http.html): OperationOutcome checks, the session's write log,
and small resource builders. Every test runs in its own session (the ``fhir`` fixture)."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

FHIR_JSON = "application/fhir+json"
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
SYSTEM = "urn:test:conformance"


def session_url(fhir: httpx.Client) -> str:
    """``http://host/sessions/{id}`` for a client bound to ``http://host/sessions/{id}/fhir/``."""
    return str(fhir.base_url).rstrip("/").removesuffix("/fhir")


def base_url(fhir: httpx.Client) -> str:
    """The session's FHIR base, without the trailing slash (as the server writes it in links)."""
    return str(fhir.base_url).rstrip("/")


def write_log(fhir: httpx.Client) -> list[dict[str, Any]]:
    """The session's write log, in order."""
    response = fhir.get(session_url(fhir) + "/writes")
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()
    return entries


def assert_outcome(response: httpx.Response, status: int, *fragments: str, code: str | None = None) -> dict[str, Any]:
    """``response`` has ``status`` and an error OperationOutcome whose diagnostics contain every fragment."""
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    assert response.headers["content-type"].startswith(FHIR_JSON), response.headers
    outcome: dict[str, Any] = response.json()
    assert outcome["resourceType"] == "OperationOutcome", outcome
    assert outcome["issue"], outcome
    issue = outcome["issue"][0]
    assert issue["severity"] in ("error", "fatal"), outcome
    assert issue["code"], outcome
    diagnostics = " ".join(i.get("diagnostics", "") for i in outcome["issue"])
    assert diagnostics, outcome
    for fragment in fragments:
        assert fragment in diagnostics, f"{fragment!r} not in {diagnostics!r}"
    if code is not None:
        assert issue["code"] == code, outcome
    return outcome


def identifier(value: str) -> list[dict[str, str]]:
    return [{"system": SYSTEM, "value": value}]


def patient(value: str | None = None, **fields: Any) -> dict[str, Any]:
    """A Patient; with ``value`` it carries the identifier ``SYSTEM|value`` (to find it by search)."""
    resource: dict[str, Any] = {"resourceType": "Patient", **fields}
    if value is not None:
        resource["identifier"] = identifier(value)
    return resource


def observation(subject: str | None = None, **fields: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}], "text": "Heart rate"},
        **fields,
    }
    if subject is not None:
        resource["subject"] = {"reference": subject}
    return resource


def create(fhir: httpx.Client, resource: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """POST ``resource``; it must be created (201). Returns the stored resource."""
    response = fhir.post(resource["resourceType"], json=resource, **kwargs)
    assert response.status_code == 201, response.text
    stored: dict[str, Any] = response.json()
    return stored


def read(fhir: httpx.Client, reference: str) -> dict[str, Any]:
    response = fhir.get(reference)
    assert response.status_code == 200, response.text
    resource: dict[str, Any] = response.json()
    return resource


def search_ids(fhir: httpx.Client, resource_type: str, **params: str) -> list[str]:
    """Ids of the matches of one search page."""
    response = fhir.get(resource_type, params=params)
    assert response.status_code == 200, response.text
    bundle = response.json()
    assert bundle["type"] == "searchset"
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


def count(fhir: httpx.Client, resource_type: str, value: str) -> int:
    """How many ``resource_type`` carry the identifier ``SYSTEM|value``."""
    return len(search_ids(fhir, resource_type, identifier=f"{SYSTEM}|{value}"))


def history(fhir: httpx.Client, path: str, **params: str) -> dict[str, Any]:
    response = fhir.get(f"{path}/_history".lstrip("/"), params=params)
    assert response.status_code == 200, response.text
    bundle: dict[str, Any] = response.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "history"
    return bundle


def post_bundle(fhir: httpx.Client, kind: str, entries: list[dict[str, Any]], **kwargs: Any) -> httpx.Response:
    """POST a batch or transaction Bundle to the base."""
    return fhir.post("", json={"resourceType": "Bundle", "type": kind, "entry": entries}, **kwargs)


def json_patch_binary(operations: list[dict[str, Any]]) -> dict[str, Any]:
    """A JSON Patch as a Bundle entry carries it: a Binary with base64 data."""
    data = base64.b64encode(json.dumps(operations).encode()).decode()
    return {"resourceType": "Binary", "contentType": JSON_PATCH, "data": data}


def http_date_matches(header: str, instant: str) -> bool:
    """A Last-Modified header names the same second as a FHIR instant."""
    moment = datetime.fromisoformat(instant.replace("Z", "+00:00"))
    return parsedate_to_datetime(header) == moment.replace(microsecond=0)
