"""Shared fixtures: a real uvicorn server over a real SQLite file, and FHIR clients bound to sessions."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from fhir_sandbox.fhir_server.app import create_app
from fhir_sandbox.fhir_server.settings import ServerSettings

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
EXAMPLES = SHARED / "external" / "fhir-r4-examples"
SYNTHEA = SHARED / "external" / "synthea-r4"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """A uvicorn server in a background thread; ``url`` is its origin (http://127.0.0.1:PORT)."""

    def __init__(self, settings: ServerSettings):
        self.port = _free_port()
        self.app = create_app(settings)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    @property
    def repository(self):  # type: ignore[no-untyped-def]
        return self.app.state.repository


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One live server per test process (each xdist worker has its own)."""
    database = tmp_path_factory.mktemp("db") / "fhir.db"
    with LiveServer(ServerSettings(database=str(database))) as server:
        yield server


@pytest.fixture
def session_base(live_server: LiveServer) -> Iterator[str]:
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
