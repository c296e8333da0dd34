"""Pushing a population into a staging server (our own, in its own process, on an empty database): counts,
resuming after an interruption or a refused bundle without duplicates, conflicts, and the CLI."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from fhir_sandbox.cli import app
from fhir_sandbox.fixtures import PopulationOptions, build_population, populations_dir
from fhir_sandbox.push import (
    PushConflictError,
    PushError,
    PushState,
    default_state_file,
    push_population,
    server_counts,
)
from fhir_sandbox.server import ServerProcess
from typer.testing import CliRunner

# two small charts (about 550 resources): seed 120 gives two patients with a year of history each
TINY = PopulationOptions(patients=2, years=1, seed=120)
TOKEN = "push-static-token-5d2a-never-printed"


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("population") / "tiny.db"
    build_population(TINY, path, workers=1)
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server on a new, empty database; each test pushes into a session of its own (an empty view)."""
    with ServerProcess(str(tmp_path_factory.mktemp("staging") / "empty.db")) as process:
        yield process


@pytest.fixture
def target(server: ServerProcess) -> str:
    response = httpx.post(f"{server.url}/sessions", json={"id": f"push-{uuid.uuid4().hex[:8]}"})
    response.raise_for_status()
    return str(response.json()["fhir_base_url"])


def _patients(http: httpx.Client, target: str) -> list[dict[str, object]]:
    bundle = http.get(f"{target}/Patient", params={"_count": "50"}).json()
    return [entry["resource"] for entry in bundle.get("entry", ())]


def test_an_interrupted_push_resumes_without_duplicates_and_the_counts_match(
    population: Path, target: str, tmp_path: Path
) -> None:
    state = tmp_path / "state.json"
    seen: list[str] = []
    with httpx.Client(timeout=60) as http:
        first = push_population(
            population, "tiny", target, http, state_file=state, limit=2, progress=lambda p: seen.append(p.bundle)
        )
        assert first.pushed == ["00-shared.json", seen[1]] and len(first.remaining) == 1 and not first.complete
        assert seen[0] == "00-shared.json" and seen[1].startswith("Patient-")
        recorded = PushState.model_validate_json(state.read_bytes())
        assert sorted(recorded.bundles) == sorted(first.pushed) and recorded.target == target
        assert len(_patients(http, target)) == 1

        second = push_population(population, "tiny", target, http, state_file=state)
        assert second.skipped == first.pushed and second.pushed == first.remaining and second.complete
        assert second.resources == sum(second.counts.values()) - first.resources

        assert server_counts(target, http, sorted(second.counts)) == second.counts  # every type, no duplicates
        patients = _patients(http, target)
        assert len(patients) == TINY.patients
        assert {p["meta"]["versionId"] for p in patients} == {"1"}  # the first run's bundle was not sent again

        third = push_population(population, "tiny", target, http, state_file=state)
        assert third.pushed == [] and len(third.skipped) == 3 and third.complete


class _RefusingServer(httpx.BaseTransport):
    """The network to a server that refuses the Nth transaction (a remote server's failure, simulated)."""

    def __init__(self, refuse: int):
        self.inner = httpx.HTTPTransport()
        self.refuse = refuse
        self.posts = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            self.posts += 1
            if self.posts == self.refuse:
                outcome = {
                    "resourceType": "OperationOutcome",
                    "issue": [
                        {"severity": "error", "code": "processing", "diagnostics": "Observation.status: required"}
                    ],
                }
                return httpx.Response(
                    422, content=orjson.dumps(outcome), headers={"Content-Type": "application/fhir+json"}
                )
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def test_a_refused_bundle_is_named_with_the_outcome_and_a_rerun_resumes_after_it(
    population: Path, target: str, tmp_path: Path
) -> None:
    state = tmp_path / "state.json"
    with httpx.Client(timeout=60, transport=_RefusingServer(refuse=2)) as flaky, pytest.raises(PushError) as raised:
        push_population(population, "tiny", target, flaky, state_file=state)
    message = str(raised.value)
    assert "bundle Patient-" in message and "HTTP 422" in message and "Observation.status: required" in message
    assert list(PushState.model_validate_json(state.read_bytes()).bundles) == ["00-shared.json"]
    with httpx.Client(timeout=60) as http:
        resumed = push_population(population, "tiny", target, http, state_file=state, limit=1)
        assert resumed.skipped == ["00-shared.json"] and resumed.pushed == [raised_bundle(message)]
        assert len(_patients(http, target)) == 1


def raised_bundle(message: str) -> str:
    return message.split("bundle ", 1)[1].split(" ", 1)[0]


def test_different_resources_under_the_same_ids_or_mrns_stop_the_push_unless_overwriting(
    population: Path, target: str, tmp_path: Path
) -> None:
    with httpx.Client(timeout=60) as http:
        # the shared bundle and the first patient's (the second would only add time)
        push_population(population, "tiny", target, http, state_file=tmp_path / "first.json", limit=2)
        patient = _patients(http, target)[0]
        changed = {**patient, "birthDate": "1900-01-01"}
        assert http.put(f"{target}/Patient/{patient['id']}", json=changed).status_code == 200
        impostor = {"resourceType": "Patient", "identifier": patient["identifier"], "name": [{"family": "Else"}]}
        created = http.post(f"{target}/Patient", json=impostor)
        assert created.status_code == 201
        before = server_counts(target, http, ["Patient", "Observation"])

        with pytest.raises(PushConflictError) as raised:  # a fresh state: as if pushed by someone else
            push_population(population, "tiny", target, http, state_file=tmp_path / "second.json")
        found = {(c.resource, c.detail.split(" (")[0]) for c in raised.value.conflicts}
        mrn = patient["identifier"][0]["value"]  # type: ignore[index]
        assert found == {
            (f"Patient/{patient['id']}", "differs on the server"),
            (f"Patient/{created.json()['id']}", f"already has MRN {mrn}"),
        }
        assert "birthDate" in str(raised.value) and "nothing was written" in str(raised.value)
        assert server_counts(target, http, ["Patient", "Observation"]) == before
        assert not (tmp_path / "second.json").exists()

        forced = push_population(
            population, "tiny", target, http, state_file=tmp_path / "second.json", overwrite=True, limit=2
        )
        assert len(forced.pushed) == 2 and len(forced.conflicts) == 2
        restored = http.get(f"{target}/Patient/{patient['id']}").json()
        assert restored["birthDate"] == patient["birthDate"]


def test_a_state_file_of_another_target_is_refused(population: Path, target: str, tmp_path: Path) -> None:
    default = default_state_file("tiny", "http://a.example/fhir")
    assert default.parent == populations_dir() / "pushes" and default.name.startswith("tiny--")
    assert default == default_state_file("tiny", "http://a.example/fhir/") != default_state_file("tiny", target)
    state = tmp_path / "state.json"
    state.write_text(PushState(population="tiny", target="http://elsewhere.example/fhir").model_dump_json())
    with httpx.Client(timeout=60) as http, pytest.raises(PushError, match="records population 'tiny' pushed to"):
        push_population(population, "tiny", target, http, state_file=state)


def test_an_unreachable_server_is_one_clear_error(population: Path, tmp_path: Path) -> None:
    with (
        httpx.Client(timeout=5) as http,
        pytest.raises(PushError, match=r"^cannot connect to http://127\.0\.0\.1:9/fhir"),
    ):
        push_population(population, "tiny", "http://127.0.0.1:9/fhir", http, state_file=tmp_path / "s.json")


def push_cli(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["population", "push", *args], env={"COLUMNS": "200", **(env or {})})
    return result.exit_code, result.output


def test_the_cli_pushes_with_a_bearer_token_and_says_plainly_when_it_is_refused(
    population: Path, tmp_path: Path
) -> None:
    config = tmp_path / "auth.json"
    config.write_text(json.dumps({"bearer_tokens": [TOKEN]}))
    serve_args = ["--auth", "bearer", "--auth-config", str(config)]
    with ServerProcess(str(tmp_path / "protected.db"), serve_args=serve_args) as server:
        args = ["--to", f"{server.url}/fhir", "--database", str(population), "--state", str(tmp_path / "state.json")]
        code, output = push_cli([*args, "--auth", "bearer", "--limit", "2"], env={"FHIR_TOKEN": TOKEN})
        assert code == 0 and "pushed 2 bundle(s)" in output and "1 bundle(s) left" in output, output

        code, output = push_cli(args)  # no token
        assert code == 2 and "needs credentials (see --auth): HTTP 401" in output, output
        code, output = push_cli([*args, "--auth", "bearer"], env={"FHIR_TOKEN": "a-wrong-token"})
        assert code == 2 and "FHIR_TOKEN" in output and "401" in output and "a-wrong-token" not in output, output

        code, output = push_cli([*args, "--auth", "bearer"], env={"FHIR_TOKEN": TOKEN})
        assert code == 0 and "pushed 1 bundle(s)" in output and "2 pushed before" in output, output
        assert "Observation" in output and TOKEN not in output  # the per-type table: population vs server

    code, output = push_cli(["--to", "http://127.0.0.1:9/fhir", "--database", str(population)])
    assert (
        code == 2 and output.startswith("error: cannot connect to http://127.0.0.1:9/fhir") and output.count("\n") == 1
    )
