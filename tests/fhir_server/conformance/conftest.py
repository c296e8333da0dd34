"""Seeded sessions for the search conformance tests (R4 search.html).

Each test module seeds its own session once, with one transaction Bundle of PUTs, so that the tests name
resources by the ids they were given (``Patient/eve``) and assert exact result sets.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .search_support import SearchSession, SessionFactory


@pytest.fixture(scope="module")
def new_session(live_server: Any) -> Iterator[SessionFactory]:
    """Create sessions seeded with resources (one transaction); all are deleted when the module ends."""
    made: list[SearchSession] = []

    def make(resources: list[dict[str, Any]] | None = None, now: str | None = None) -> SearchSession:
        session_id = f"c-{uuid.uuid4().hex[:12]}"
        body: dict[str, Any] = {"id": session_id}
        if now is not None:
            body["now"] = now
        response = httpx.post(f"{live_server.url}/sessions", json=body)
        assert response.status_code == 201, response.text
        session = SearchSession(live_server.url, session_id, response.json()["fhir_base_url"])
        made.append(session)
        if resources:
            session.put_all(resources)
        return session

    yield make
    for session in made:
        session.http.close()
        httpx.delete(f"{live_server.url}/sessions/{session.session_id}")
