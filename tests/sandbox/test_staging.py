"""Runs on an external endpoint (sandbox/staging.py): our server in a child process plays a protected staging
server (``serve --auth smart``). Writes are refused without --allow-writes (nothing reaches the server) and such
scenarios are not_runnable; with it, what episodes create is tagged and removed after grading, or kept and removed
by ``cleanup``; a rejected token is an infrastructure error; a full CLI run scores as the local run does; and no
token, secret or key appears in what a run writes or prints."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fhir_sandbox import api
from fhir_sandbox.agent_choice import AgentChoice, agent_factory
from fhir_sandbox.agents.base import Agent, AgentTask
from fhir_sandbox.agents.tools import WRITES_DISABLED, FhirTools
from fhir_sandbox.auth import AuthOptions, BearerTokenAuth
from fhir_sandbox.cli import app
from fhir_sandbox.episode import Termination, run_episode
from fhir_sandbox.runs import RunFolder, latest
from fhir_sandbox.scenarios.model import Scenario
from fhir_sandbox.server import ServerProcess
from fhir_sandbox.staging import EPISODE_TAG_SYSTEM, RUN_TAG_SYSTEM, EndpointOptions, StagingTarget
from run_kit import blood_pressure, empty_population, standard_suite, write_suite
from staging_kit import (
    RSA_CLIENT,
    SECRET,
    SECRET_CLIENT,
    SEEDED_MRN,
    STATIC,
    Keys,
    bearer,
    default_writes,
    protected_server,
    read_only_potassium,
    tagged,
)
from typer.testing import CliRunner


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("staging")


@pytest.fixture(scope="module")
def keys(workdir: Path) -> Keys:
    return Keys(workdir / "keys")


@pytest.fixture(scope="module")
def server(workdir: Path, keys: Keys) -> Iterator[ServerProcess]:
    with protected_server(workdir / "server", keys) as running:
        yield running


@pytest.fixture(scope="module")
def suite(workdir: Path) -> Path:
    """The run kit's four scenarios (each brings its patient in setup) and the seeded read-only one."""
    folder = standard_suite(workdir / "suite")
    write_suite(folder, [read_only_potassium()])
    return folder


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30, headers=bearer()) as client:
        yield client


def smart_args(server: ServerProcess, keys: Keys) -> list[str]:
    return ["--fhir-base-url", f"{server.url}/fhir", "--auth", "smart-backend", "--client-id", RSA_CLIENT]


def run_cli(args: list[str], env: Mapping[str, str] | None = None) -> str:
    result = CliRunner().invoke(app, args, env=dict(env or {}))
    assert result.exit_code == 0, result.output
    return result.output


def assert_no_secrets(keys: Keys, *texts: str) -> None:
    for text in texts:
        for secret in keys.secrets():
            assert secret not in text
        assert "Bearer " not in text and "eyJ" not in text  # no Authorization header, no JWT


def folder_texts(folder: Path) -> list[str]:
    return [(folder / name).read_text() for name in ("manifest.json", "episodes.jsonl", "report.html")]


class Scripted:
    def __init__(self, act: Any):
        self.act = act
        self.name = "scripted"

    def run(self, task: AgentTask, tools: FhirTools) -> None:
        self.act(tools)


def scripted(act: Any) -> Any:
    def make(_scenario: Scenario, _variables: Mapping[str, str]) -> Agent:
        return Scripted(act)

    return make


OBSERVATION = {
    "resourceType": "Observation",
    "status": "final",
    "code": {"text": "note"},
    "valueString": "an attempted write",
}


# -- a full run ---------------------------------------------------------------------------------------------------


def test_a_full_cli_run_on_the_protected_endpoint_scores_like_the_local_run(
    server: ServerProcess, keys: Keys, suite: Path, workdir: Path
) -> None:
    local, _ = api.run(
        api.RunRequest(
            suites=[str(suite)],
            agent=AgentChoice(agent="reference"),
            filter={"ids": ["t.k-latest", "t.k-rounded", "t.bp-record", "t.med-stop"]},  # type: ignore[arg-type]
            database=str(empty_population(workdir / "empty.db")),
            out=workdir / "local",
        )
    )
    out = workdir / "smart"
    args = ["run", "--suite", str(suite), "--agent", "reference", "--out", str(out), "--allow-writes"]
    output = run_cli([*args, *smart_args(server, keys), "--key", str(keys.rsa), "--concurrency", "4"])

    staged = {r.scenario_id: r for r in latest(RunFolder(out).episodes())}
    assert {k: r.score for k, r in staged.items() if k != "t.ro-k"} == {
        r.scenario_id: r.score for r in latest(local.episodes())
    }
    assert staged["t.ro-k"].score == 1.0 and staged["t.k-rounded"].score == 0.0
    assert all(r.termination == Termination.FINISHED for r in staged.values())
    # what the episodes created (setup and agent) was removed after grading, newest first
    bp = staged["t.bp-record"]
    [write] = bp.writes
    assert bp.created == ["Patient/pt-1", "Observation/k-0", "Observation/k-1", f"Observation/{write.id}"]
    assert bp.removed == bp.created[::-1]
    assert staged["t.med-stop"].writes[0].kind == "update"
    run_id = RunFolder(out).manifest().config["endpoint"]["run_id"]
    assert tagged(server, f"{RUN_TAG_SYSTEM}|{run_id}") == []
    assert "episodes created 14 resource(s), 14 removed" in output
    # the manifest names the endpoint and the auth mode, and nothing else of the auth
    manifest = orjson.loads((out / "manifest.json").read_bytes())
    assert manifest["config"]["endpoint"] == {
        "fhir_base_url": f"{server.url}/fhir",
        "auth": "smart-backend",
        "allow_writes": True,
        "run_id": run_id,
    }
    assert RSA_CLIENT not in str(manifest) and str(keys.rsa) not in str(manifest)
    assert_no_secrets(keys, output, *folder_texts(out))


@pytest.mark.parametrize("mode", ["bearer", "client-secret"])
def test_bearer_and_client_secret_runs(
    server: ServerProcess, keys: Keys, suite: Path, workdir: Path, mode: str
) -> None:
    out = workdir / f"run-{mode}"
    args = ["run", "--suite", str(suite), "--agent", "reference", "--out", str(out), "--scenario", "t.ro-k"]
    if mode == "bearer":
        args += ["--fhir-base-url", f"{server.url}/fhir", "--auth", "bearer", "--token-env", "STAGING_TOKEN"]
        env = {"STAGING_TOKEN": STATIC}
    else:
        args += ["--fhir-base-url", f"{server.url}/fhir", "--auth", "client-secret", "--client-id", SECRET_CLIENT]
        env = {"FHIR_CLIENT_SECRET": SECRET}
    output = run_cli(args, env)
    [result] = RunFolder(out).episodes()
    assert result.score == 1.0 and result.created == []
    assert_no_secrets(keys, output, *folder_texts(out))


# -- auth failures ------------------------------------------------------------------------------------------------


def test_a_rejected_token_is_an_infrastructure_error(server: ServerProcess, keys: Keys) -> None:
    scenario = Scenario.model_validate(read_only_potassium())
    with httpx.Client(timeout=30, auth=BearerTokenAuth("wrong-" + STATIC, "STAGING_TOKEN")) as http:
        target = StagingTarget(f"{server.url}/fhir", http, "run-x", scenarios=[scenario])
        result = run_episode(scenario, agent_factory(AgentChoice(agent="reference")), target, http)
    assert result.termination == Termination.INFRASTRUCTURE_ERROR and result.score is None
    assert result.error is not None
    assert "the bearer token from $STAGING_TOKEN was rejected (HTTP 401, invalid_token)" in result.error
    assert STATIC not in result.model_dump_json()


def test_a_refused_client_stops_the_run_before_it_starts(
    server: ServerProcess, keys: Keys, suite: Path, workdir: Path
) -> None:
    out = workdir / "refused"
    args = ["run", "--suite", str(suite), "--out", str(out), "--fhir-base-url", f"{server.url}/fhir"]
    args += ["--auth", "smart-backend", "--client-id", "unregistered", "--key", str(keys.rsa)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert f"the token request to {server.url}/auth/token was refused (HTTP 401 invalid_client" in result.output
    assert not out.exists()
    assert_no_secrets(keys, result.output)


# -- write safety -------------------------------------------------------------------------------------------------


def test_without_allow_writes_a_write_is_refused_before_any_request(server: ServerProcess, keys: Keys) -> None:
    scenario = Scenario.model_validate(read_only_potassium())
    methods: list[str] = []

    def attempt(tools: FhirTools) -> None:
        found = tools.call("search", {"resource_type": "Patient", "params": {"identifier": SEEDED_MRN}})
        patient_id = found.content["entry"][0]["resource"]["id"]
        refused = tools.call("create", {"resource": OBSERVATION | {"subject": {"reference": f"Patient/{patient_id}"}}})
        assert not refused.ok and refused.content == WRITES_DISABLED
        tools.call("finish", {"answer": 3.9})

    before = default_writes(server)
    hooks = {"request": [lambda request: methods.append(request.method)]}
    with httpx.Client(timeout=30, headers=bearer(), event_hooks=hooks) as http:
        target = StagingTarget(f"{server.url}/fhir", http, "run-ro", scenarios=[scenario])
        result = run_episode(scenario, scripted(attempt), target, http)
    assert set(methods) == {"GET"} and default_writes(server) == before  # nothing reached the server
    refused = result.tool_calls[1]
    assert refused.method is None and refused.status is None and not refused.ok
    # the attempt is graded as the write it would have been: the scenario wants no writes
    assert result.termination == Termination.FINISHED and result.score == 0.0
    [write] = result.writes
    assert (write.kind, write.type, write.status) == ("create", "Observation", 0)
    assert {c.name: c.passed for c in result.checks} == {"answer": True, "nothing_written": False}
    assert result.created == []


def test_without_allow_writes_scenarios_needing_writes_are_not_runnable(
    server: ServerProcess, keys: Keys, suite: Path, workdir: Path
) -> None:
    endpoint = EndpointOptions(fhir_base_url=f"{server.url}/fhir", auth=AuthOptions(mode="bearer", token_env="T"))
    request = api.RunRequest(
        suites=[str(suite)], agent=AgentChoice(agent="reference"), endpoint=endpoint, out=workdir / "read-only"
    )
    before = default_writes(server)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("T", STATIC)
        folder, stats = api.run(request)
    results = {r.scenario_id: r for r in folder.episodes()}
    assert results["t.ro-k"].score == 1.0
    for scenario_id in ("t.k-latest", "t.k-rounded", "t.bp-record", "t.med-stop"):  # each has setup
        result = results[scenario_id]
        assert result.termination == Termination.NOT_RUNNABLE and result.score is None and result.attempts == 1
        assert result.error and "--allow-writes" in result.error
    assert stats.scored == 1 and stats.infrastructure_errors == 0 and stats.terminations["not_runnable"] == 4
    assert default_writes(server) == before
    # a resume keeps the run id its resources are tagged with, and runs nothing again
    run_id = folder.manifest().config["endpoint"]["run_id"]
    with pytest.MonkeyPatch.context() as env:
        env.setenv("T", STATIC)
        api.run(request.model_copy(update={"resume": True}))
    assert folder.manifest().config["endpoint"]["run_id"] == run_id and len(folder.episodes()) == 5

    # a scenario without setup whose reference writes is not runnable either: it could only be failed
    no_setup = blood_pressure("t.bp-no-setup")
    del no_setup["setup"]
    scenario = Scenario.model_validate(no_setup)
    with httpx.Client(timeout=30, headers=bearer()) as http:
        target = StagingTarget(f"{server.url}/fhir", http, "run-ro", scenarios=[scenario])
        result = run_episode(scenario, agent_factory(AgentChoice(agent="reference")), target, http)
    assert result.termination == Termination.NOT_RUNNABLE and "reference solution" in (result.error or "")


def test_created_resources_are_tagged_and_removed_after_grading(
    server: ServerProcess, http: httpx.Client, suite: Path
) -> None:
    scenario = Scenario.model_validate(blood_pressure())
    target = StagingTarget(f"{server.url}/fhir", http, "run-tags", allow_writes=True, scenarios=[scenario])
    result = run_episode(scenario, agent_factory(AgentChoice(agent="reference")), target, http)
    assert result.score == 1.0
    [write] = result.writes
    tags = {(t["system"], t["code"]) for t in write.resource["meta"]["tag"]}  # type: ignore[index]
    assert (RUN_TAG_SYSTEM, "run-tags") in tags
    assert any(system == EPISODE_TAG_SYSTEM and code.startswith("t.bp-record.") for system, code in tags)
    assert "meta" not in result.tool_calls[1].args["resource"]  # the trajectory keeps what the agent sent
    assert result.removed == result.created[::-1] and len(result.created) == 4
    for ref in result.created:
        assert http.get(f"{server.url}/fhir/{ref}").status_code == 410
    assert tagged(server, f"{RUN_TAG_SYSTEM}|run-tags") == []


def test_keep_writes_then_cleanup(server: ServerProcess, keys: Keys, suite: Path, workdir: Path) -> None:
    out = workdir / "kept"
    args = ["run", "--suite", str(suite), "--agent", "reference", "--out", str(out), "--allow-writes"]
    args += ["--keep-writes", "--scenario", "t.bp-record", "--scenario", "t.med-stop"]
    output = run_cli([*args, *smart_args(server, keys), "--key", str(keys.rsa)])
    assert "left (`fhir-sandbox cleanup" in output
    results = latest(RunFolder(out).episodes())
    created = {ref for r in results for ref in r.created}
    assert all(r.removed == [] for r in results) and len(created) == 5  # pt-1, k-0, k-1 (twice), the BP, mr-1
    run_id = RunFolder(out).manifest().config["endpoint"]["run_id"]
    tag = {"system": RUN_TAG_SYSTEM, "code": run_id}
    assert set(tagged(server, f"{RUN_TAG_SYSTEM}|{run_id}")) == created

    # as if an episode had been cut short: a resource it created (tagged) that no stored episode lists, and a
    # resource that existed before it and was updated (tagged by the update, not created by the run)
    with httpx.Client(timeout=30, headers=bearer()) as http:
        orphan = http.post(f"{server.url}/fhir/Observation", json=OBSERVATION | {"meta": {"tag": [tag]}}).json()
        older = http.post(f"{server.url}/fhir/Observation", json=OBSERVATION).json()
        assert http.put(f"{server.url}/fhir/Observation/{older['id']}", json=older | {"meta": {"tag": [tag]}})

        output = run_cli(["cleanup", str(out), "--client-id", RSA_CLIENT, "--key", str(keys.rsa)])
        assert f"deleted {len(created) + 1}, already gone 0, failed 0, left 1" in output
        assert f"left in place (the run updated it): Observation/{older['id']}" in output
        assert http.get(f"{server.url}/fhir/Observation/{orphan['id']}").status_code == 410
        assert http.get(f"{server.url}/fhir/Observation/{older['id']}").status_code == 200
        http.delete(f"{server.url}/fhir/Observation/{older['id']}")
    assert set(tagged(server, f"{RUN_TAG_SYSTEM}|{run_id}")) == set()
    again = run_cli(["cleanup", str(out), "--client-id", RSA_CLIENT, "--key", str(keys.rsa)])
    assert f"deleted 0, already gone {len(created)}, failed 0" in again
    assert_no_secrets(keys, output, again, *folder_texts(out))


def test_cleanup_of_a_local_run_has_nothing_to_do(tmp_path: Path, suite: Path) -> None:
    folder, _ = api.run(
        api.RunRequest(
            suites=[str(suite)],
            filter={"ids": ["t.k-latest"]},  # type: ignore[arg-type]
            database=str(empty_population(tmp_path / "e.db")),
            out=tmp_path / "local",
        )
    )
    result = CliRunner().invoke(app, ["cleanup", str(folder.path)])
    assert result.exit_code == 2 and "ran on our own server" in result.output
    result = CliRunner().invoke(app, ["run", "--suite", str(suite), "--auth", "bearer", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "--auth bearer needs --fhir-base-url" in result.output
