"""/docs describes the FHIR interactions too, while the plain routes before them still serve every request."""

from __future__ import annotations

import httpx
from fhir_sandbox.server import LocalServer

INTERACTIONS = {
    ("get", "/metadata"),
    ("post", ""),
    ("get", "/{type}"),
    ("post", "/{type}/_search"),
    ("post", "/{type}"),
    ("get", "/{type}/{id}"),
    ("put", "/{type}/{id}"),
    ("patch", "/{type}/{id}"),
    ("delete", "/{type}/{id}"),
    ("get", "/{type}/{id}/_history"),
    ("get", "/{type}/{id}/_history/{vid}"),
}


def test_the_openapi_document_lists_each_interaction_with_its_path_parameters(live_server: LocalServer) -> None:
    document = httpx.get(f"{live_server.url}/openapi.json").json()
    for base in ("/fhir", "/sessions/{session_id}/fhir"):
        for method, path in INTERACTIONS:
            operation = document["paths"][base + path][method]
            named = {p["name"] for p in operation.get("parameters", [])}
            assert named == {part[1:-1] for part in (base + path).split("/") if part.startswith("{")}
    assert "application/json-patch+json" in document["paths"]["/fhir/{type}/{id}"]["patch"]["requestBody"]["content"]
    assert httpx.get(f"{live_server.url}/docs").status_code == 200


def test_fhir_requests_are_still_served_by_the_fhir_routes(fhir: httpx.Client) -> None:
    created = fhir.post("Patient", json={"resourceType": "Patient", "gender": "female"})
    assert created.status_code == 201
    read = fhir.get(f"Patient/{created.json()['id']}")
    assert read.status_code == 200 and read.headers["content-type"].startswith("application/fhir+json")
    missing = fhir.get("Patient/nobody")  # an OperationOutcome from the FHIR service, not FastAPI's {"detail"}
    assert missing.status_code == 404 and missing.json()["resourceType"] == "OperationOutcome"
