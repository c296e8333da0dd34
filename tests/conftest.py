"""Shared fixtures: a real uvicorn server over a real SQLite file, and FHIR clients bound to sessions."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fhir_sandbox.fhir_server.settings import ServerSettings
from fhir_sandbox.server import LocalServer

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
EXAMPLES = SHARED / "external" / "fhir-r4-examples"
SYNTHEA = SHARED / "external" / "synthea-r4"


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """One live server per test process (each xdist worker has its own)."""
    database = tmp_path_factory.mktemp("db") / "fhir.db"
    with LocalServer(ServerSettings(database=str(database))) as server:
        yield server


@pytest.fixture
def session_base(live_server: LocalServer) -> Iterator[str]:
    """The FHIR base URL of a fresh session, deleted after the test: tests never see each other's writes."""
    session_id = f"t-{uuid.uuid4().hex[:12]}"
    # verify=False: the test server speaks plain http, and loading the CA bundle costs ~60 ms per client
    response = httpx.post(f"{live_server.url}/sessions", json={"id": session_id}, verify=False)
    response.raise_for_status()
    yield response.json()["fhir_base_url"]
    httpx.delete(f"{live_server.url}/sessions/{session_id}", verify=False)


@pytest.fixture
def fhir(session_base: str) -> Iterator[httpx.Client]:
    """An HTTP client whose base URL is a fresh session's FHIR base (``fhir.get("Patient")``)."""
    headers = {"Accept": "application/fhir+json"}
    with httpx.Client(base_url=session_base + "/", headers=headers, timeout=30, verify=False) as client:
        yield client
