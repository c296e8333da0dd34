"""Choosing scenarios for a run (filters), and the FHIR server in its own process for concurrent runs."""

from __future__ import annotations

from pathlib import Path

import httpx
from fhir_sandbox.fhir_server import ServerSettings
from fhir_sandbox.runner import ScenarioFilter, select_scenarios
from fhir_sandbox.scenarios import load_scenarios
from fhir_sandbox.server import LocalServer, ServerProcess

CORE = load_scenarios(["core"]).scenarios


def test_filters_pick_by_category_id_prefix_tag_and_count() -> None:
    per_category = select_scenarios(CORE, ScenarioFilter(per_category=2))
    assert len(per_category) == 20 and {s.category for s in per_category} == {s.category for s in CORE}
    prefix = select_scenarios(CORE, ScenarioFilter(ids=["core.k-replacement.1*"]))
    assert [s.id for s in prefix] == [f"core.k-replacement.{n}" for n in range(10, 20)]
    exact = select_scenarios(CORE, ScenarioFilter(ids=["core.record-bp.07"], categories=["record-bp"]))
    assert [s.id for s in exact] == ["core.record-bp.07"]
    tagged = select_scenarios(CORE, ScenarioFilter(tags=[CORE[0].tags[0]], limit=3))
    assert len(tagged) == 3 and all(CORE[0].tags[0] in s.tags for s in tagged)
    assert select_scenarios(CORE, ScenarioFilter(categories=["no-such-category"])) == []


def test_a_server_process_serves_the_file_and_keeps_the_sessions_others_have_there(tmp_path: Path) -> None:
    database = str(tmp_path / "shared.db")
    with LocalServer(ServerSettings(database=database)) as first, httpx.Client() as http:
        session = http.post(f"{first.url}/sessions", json={"label": "another run"}).json()["id"]
        with ServerProcess(database) as second:
            assert http.get(f"{second.url}/fhir/metadata").json()["fhirVersion"] == "4.0.1"
            assert http.get(f"{second.url}/sessions/{session}").status_code == 200
            assert second.url.startswith("http://127.0.0.1:")
    assert second.process is not None and second.process.poll() is not None  # stopped on exit
