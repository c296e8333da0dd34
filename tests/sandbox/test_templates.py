"""Session copies (``POST /sessions`` with ``copy_of``) and the per-scenario templates a run's trials start from."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fhir_sandbox.baselines import reference_agent
from fhir_sandbox.connections import episode_client
from fhir_sandbox.fhir_server import ServerSettings
from fhir_sandbox.runner import run_batch
from fhir_sandbox.runs import RunFolder
from fhir_sandbox.scenarios.model import Scenario
from fhir_sandbox.server import LocalServer, ServerProcesses
from fhir_sandbox.targets import LocalTarget
from fhir_sandbox.templates import Templates
from run_kit import NOW, PATIENT, PATIENT_ID, blood_pressure, empty_population, potassium

FHIR_JSON = {"Content-Type": "application/fhir+json"}
# setup that POSTs: the server picks the id, so only a copy gives every trial the same one
NOTE = {"resourceType": "Basic", "code": {"text": "setup note"}, "subject": {"reference": f"Patient/{PATIENT_ID}"}}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    database = empty_population(tmp_path_factory.mktemp("templates") / "empty.db")
    with LocalServer(ServerSettings(database=str(database))) as server:
        yield server


def _session(http: httpx.Client, origin: str, **body: object) -> dict:
    response = http.post(f"{origin}/sessions", json={"now": NOW, **body})
    assert response.status_code == 201, response.text
    return response.json()


def test_a_copy_has_the_sources_resources_versions_and_indexes_but_not_its_write_log(server) -> None:
    with httpx.Client(timeout=30) as http:
        source = _session(http, server.url, label="template")
        base = source["fhir_base_url"]
        assert http.put(f"{base}/Patient/{PATIENT_ID}", json=PATIENT, headers=FHIR_JSON).status_code == 201
        renamed = PATIENT | {"name": [{"family": "Renamed"}]}
        assert http.put(f"{base}/Patient/{PATIENT_ID}", json=renamed, headers=FHIR_JSON).status_code == 200
        note_id = http.post(f"{base}/Basic", json=NOTE, headers=FHIR_JSON).json()["id"]

        copy = _session(http, server.url, copy_of=source["id"], label="copy")
        copied = copy["fhir_base_url"]
        assert copy["id"] != source["id"]
        assert http.get(f"{copied}/Patient/{PATIENT_ID}").json()["meta"]["versionId"] == "2"
        assert http.get(f"{copied}/Patient/{PATIENT_ID}/_history/1").json()["name"] == PATIENT["name"]
        found = http.get(f"{copied}/Basic", params={"subject": f"Patient/{PATIENT_ID}"}).json()
        assert [e["resource"]["id"] for e in found["entry"]] == [note_id]  # the index rows came along
        assert http.get(f"{server.url}/sessions/{copy['id']}/writes").json() == []
        assert len(http.get(f"{server.url}/sessions/{source['id']}/writes").json()) == 3

        # the copy and its source are separate from then on, whichever is written or deleted
        assert http.delete(f"{copied}/Basic/{note_id}").status_code in (200, 204)
        assert http.get(f"{base}/Basic/{note_id}").status_code == 200
        assert http.delete(f"{server.url}/sessions/{source['id']}").status_code == 204
        assert http.get(f"{copied}/Patient/{PATIENT_ID}").status_code == 200
        assert http.get(f"{copied}/Basic/{note_id}").status_code == 410
        http.delete(f"{server.url}/sessions/{copy['id']}")


@pytest.mark.parametrize(
    ("copy_of", "status", "says"), [("no-such-session", 404, "no session"), ("default", 400, "copy_of")]
)
def test_copying_what_cannot_be_copied_is_refused_and_creates_nothing(server, copy_of, status, says) -> None:
    with httpx.Client(timeout=30) as http:
        before = len(http.get(f"{server.url}/sessions").json())
        response = http.post(f"{server.url}/sessions", json={"copy_of": copy_of})
        assert response.status_code == status
        assert response.json()["resourceType"] == "OperationOutcome"
        assert says in response.json()["issue"][0]["diagnostics"]
        assert len(http.get(f"{server.url}/sessions").json()) == before


def test_a_scenarios_trials_start_from_copies_of_one_prepared_session(server) -> None:
    scenario = Scenario.model_validate(potassium() | {"setup": [PATIENT, NOTE, *potassium()["setup"][1:]]})
    with httpx.Client(timeout=30) as http:
        templates = Templates(LocalTarget(server.url, http), http)
        first, second = templates.prepare(scenario), templates.prepare(scenario)
        assert first.handle.id != second.handle.id and first.mark == second.mark == 0
        assert first.values == second.values and first.patient == second.patient

        def note_ids(base: str) -> list[str]:
            return [e["resource"]["id"] for e in http.get(f"{base}/Basic").json()["entry"]]

        assert note_ids(first.handle.fhir_base_url) == note_ids(second.handle.fhir_base_url)
        sessions = {s["id"] for s in http.get(f"{server.url}/sessions").json()}
        templates.close()
        left = {s["id"] for s in http.get(f"{server.url}/sessions").json()}
        assert len(sessions - left) == 1  # the template went; the copies are their episodes' to close
        for prepared in (first, second):
            http.delete(f"{server.url}/sessions/{prepared.handle.id}")


def test_trials_from_templates_do_not_see_each_others_writes(tmp_path: Path) -> None:
    """Three trials of a write task over two server processes: each writes once and is graded on its own write;
    no session (template or copy) is left behind."""
    database = str(empty_population(tmp_path / "empty.db"))
    scenario = Scenario.model_validate(blood_pressure())
    with ServerProcesses(database, 2) as servers, episode_client(timeout=30) as http:
        folder = RunFolder(tmp_path / "run")
        folder.path.mkdir()
        target = LocalTarget(servers.urls, http)
        results = run_batch([scenario], reference_agent, target, http, folder, trials=3,
                            concurrency=3)  # fmt: skip
        assert sorted(r.trial for r in results) == [0, 1, 2]
        assert [r.score for r in results] == [1.0, 1.0, 1.0]
        assert all(len(r.writes) == 1 for r in results)
        assert len({r.writes[0].id for r in results}) == 3
        for url in servers.urls:
            assert [s["id"] for s in http.get(f"{url}/sessions").json()] == ["default"]
