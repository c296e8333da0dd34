"""Runs end to end, offline: ``fhir_sandbox.api.run`` over hand-written scenarios on a real server (a run folder
with its manifest and episodes), stats, resume after a killed run, refusals, regrade, compare, and the CLI."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from fhir_sandbox import api
from fhir_sandbox.agent_choice import AgentChoice
from fhir_sandbox.agents.models import PROVIDERS
from fhir_sandbox.api import RunRequest
from fhir_sandbox.cli import app
from fhir_sandbox.fixtures import PopulationOptions, build_population
from fhir_sandbox.runs import RunFolder, RunMismatch, latest
from fhir_sandbox.stats import wilson
from run_kit import PATIENT_ID, SlowAgent, blood_pressure, empty_population, potassium, standard_suite, write_suite
from typer.testing import CliRunner

TESTS = Path(__file__).resolve().parents[1]
ALL = {"t.k-latest", "t.k-rounded", "t.bp-record", "t.med-stop"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def database(workdir: Path) -> str:
    return str(empty_population(workdir / "empty.db"))


@pytest.fixture(scope="module")
def suite(workdir: Path) -> Path:
    return standard_suite(workdir / "suite")


@pytest.fixture(scope="module")
def reference_run(workdir: Path, suite: Path, database: str) -> RunFolder:
    """The reference agent, 4 scenarios x 2 trials (it fails t.k-rounded: it answers 3.5 for 3.4)."""
    request = RunRequest(
        suites=[str(suite)], agent=AgentChoice(agent="reference"), trials=2, database=database, out=workdir / "ref"
    )
    folder, _ = api.run(request)
    return folder


def request_for(suite: Path, database: str, out: Path, agent: str = "reference", **fields: object) -> RunRequest:
    return RunRequest(suites=[str(suite)], agent=AgentChoice(agent=agent), database=database, out=out, **fields)


def lines(folder: RunFolder) -> list[bytes]:
    return folder.episodes_path.read_bytes().splitlines()


# -- a run folder ---------------------------------------------------------------------------------------------------


def test_a_run_writes_its_manifest_and_one_line_per_episode(reference_run: RunFolder, suite: Path) -> None:
    manifest = reference_run.manifest()
    assert manifest.created and manifest.package_version
    assert manifest.config["agent"]["agent"] == "reference"
    assert manifest.config["trials"] == 2 and manifest.config["suites"] == [str(suite)]
    assert manifest.population["counts_hash"] and manifest.population["resources"] == 0
    assert set(manifest.scenarios) == ALL and all(len(h) == 16 for h in manifest.scenarios.values())

    stored = [orjson.loads(line) for line in lines(reference_run)]
    assert len(stored) == 8
    assert {(e["scenario_id"], e["trial"]) for e in stored} == {(s, t) for s in ALL for t in (0, 1)}
    for episode in stored:
        for field in ("category", "agent", "termination", "score", "answer", "checks", "tool_calls", "writes"):
            assert field in episode
        assert episode["agent"] == "reference" and episode["termination"] == "finished"
        assert episode["patient_id"] == PATIENT_ID and episode["patient"]["resourceType"] == "Patient"
        assert episode["started"] and episode["seconds"] > 0
        assert all(c["reason"] for c in episode["checks"])
        call = episode["tool_calls"][0]
        assert call["method"] and call["url"].startswith("http://127.0.0.1") and call["status"] == 200
        assert call["result"]["resourceType"] in ("Bundle", "MedicationRequest")

    by_id = {e["scenario_id"]: e for e in stored if e["trial"] == 0}
    assert by_id["t.k-latest"]["values"]["k"]["value"] == 3.4
    assert by_id["t.k-rounded"]["score"] == 0.0
    assert "3.5" in next(c["reason"] for c in by_id["t.k-rounded"]["checks"] if c["name"] == "answer")
    [created] = by_id["t.bp-record"]["writes"]
    assert created["kind"] == "create" and created["prior"] is None
    assert created["resource"]["valueString"] == "118/76 mmHg"
    [updated] = by_id["t.med-stop"]["writes"]
    assert updated["kind"] == "update" and updated["version"] == 2
    assert (updated["prior"]["status"], updated["resource"]["status"]) == ("active", "stopped")


def test_stats_of_a_run(reference_run: RunFolder) -> None:
    from fhir_sandbox.stats import run_stats

    stats = run_stats(latest(reference_run.episodes()))
    assert (stats.overall.passed, stats.overall.n) == (6, 8)
    assert (stats.overall.low, stats.overall.high) == wilson(6, 8)
    assert {c: (r.passed, r.n) for c, r in stats.categories.items()} == {
        "charting": (2, 2),
        "lookup": (2, 4),
        "orders": (2, 2),
    }
    assert stats.trials == 2
    assert stats.pass_hat_k == {1: 0.75, 2: 0.75} and stats.pass_at_k == {1: 0.75, 2: 0.75}
    assert stats.terminations == {"finished": 8} and stats.infrastructure_errors == 0


def test_many_episodes_at_once_run_on_server_processes_with_the_same_results(
    reference_run: RunFolder, suite: Path, database: str, tmp_path: Path
) -> None:
    """Above 4 at once the run serves from processes of its own (two for 40 at once, on a machine with two
    cores), and the trials start from copies of one prepared session: the scores are those of the threaded run."""
    from fhir_sandbox.stats import run_stats

    folder, stats = api.run(request_for(suite, database, tmp_path / "many", trials=2, concurrency=40))
    threaded = run_stats(latest(reference_run.episodes()))
    assert (stats.overall.passed, stats.overall.n) == (threaded.overall.passed, threaded.overall.n) == (6, 8)
    assert stats.terminations == {"finished": 8}
    scores = {(e.scenario_id, e.trial): e.score for e in latest(folder.episodes())}
    assert scores == {(e.scenario_id, e.trial): e.score for e in latest(reference_run.episodes())}


def test_an_existing_run_folder_needs_resume(reference_run: RunFolder, suite: Path, database: str) -> None:
    with pytest.raises(FileExistsError, match="--resume"):
        api.run(request_for(suite, database, reference_run.path, trials=2))


def test_resuming_a_complete_run_runs_nothing(reference_run: RunFolder, suite: Path, database: str) -> None:
    before = lines(reference_run)
    _, stats = api.run(request_for(suite, database, reference_run.path, trials=2, resume=True))
    assert lines(reference_run) == before
    assert stats.episodes == 8


# -- resume ---------------------------------------------------------------------------------------------------------


def test_resume_after_a_killed_run_neither_repeats_nor_loses_episodes(tmp_path: Path) -> None:
    database = str(empty_population(tmp_path / "killed.db"))  # its own: a killed server leaves its sessions in it
    suite = write_suite(tmp_path / "suite", [potassium(), potassium("t.k-rounded", answer=3.5), blood_pressure()])
    out = tmp_path / "run"
    script = Path(sys.executable).with_name("fhir-sandbox")
    command = [
        *([str(script)] if script.exists() else [sys.executable, "-c", "from fhir_sandbox.cli import main; main()"]),
        *("run", "--suite", str(suite), "--agent", "run_kit:SlowAgent", "--trials", "2", "--concurrency", "1"),
        *("--database", database, "--out", str(out)),
    ]
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    episodes = out / "episodes.jsonl"
    try:
        deadline = time.monotonic() + 60
        while not (episodes.exists() and b"\n" in episodes.read_bytes()):
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            assert time.monotonic() < deadline, "no episode was stored within 60 s"
            time.sleep(0.02)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        if process.stderr:
            process.stderr.close()
    folder = RunFolder(out)
    kept = lines(folder)
    stored = folder.episodes()
    assert 1 <= len(stored) < 6, "the run should have been killed part-way"

    SlowAgent.delay, delay = 0.0, SlowAgent.delay  # the same settings; only faster
    try:
        _, stats = api.run(request_for(suite, database, out, agent="run_kit:SlowAgent", trials=2, resume=True))
    finally:
        SlowAgent.delay = delay
    after = folder.episodes()
    pairs = [(r.scenario_id, r.trial) for r in after]
    assert sorted(pairs) == sorted({(s, t) for s in ("t.k-latest", "t.k-rounded", "t.bp-record") for t in (0, 1)})
    assert len(after) == 6 == stats.episodes  # exactly one result per (scenario, trial)
    assert lines(folder)[: len(stored)] == kept[: len(stored)]  # the stored ones were kept, not re-run


def test_a_torn_last_line_is_ignored_and_its_episode_runs_again(tmp_path: Path, database: str) -> None:
    suite = write_suite(tmp_path / "suite", [potassium(), blood_pressure()])
    out = tmp_path / "run"
    folder, _ = api.run(request_for(suite, database, out))
    whole = lines(folder)
    assert len(whole) == 2
    # as if the run was killed while writing its second line
    folder.episodes_path.write_bytes(whole[0] + b"\n" + whole[1][: len(whole[1]) // 2])
    assert [r.scenario_id for r in folder.episodes()] == [orjson.loads(whole[0])["scenario_id"]]
    _, stats = api.run(request_for(suite, database, out, resume=True))
    assert sorted(r.scenario_id for r in folder.episodes()) == ["t.bp-record", "t.k-latest"]
    assert stats.episodes == 2 and stats.overall.passed == 2
    assert len(lines(folder)) == 3  # the torn line stays, on its own line, and is ignored


def test_resume_refuses_a_changed_scenario(tmp_path: Path, database: str) -> None:
    suite = write_suite(tmp_path / "suite", [potassium(), blood_pressure()])
    out = tmp_path / "run"
    api.run(request_for(suite, database, out))
    write_suite(suite, [potassium(tolerance=0.1)])
    with pytest.raises(RunMismatch, match=r"scenarios changed since the run began: t\.k-latest"):
        api.run(request_for(suite, database, out, resume=True))


def test_resume_refuses_another_population(tmp_path: Path, database: str) -> None:
    suite = write_suite(tmp_path / "suite", [potassium()])
    out = tmp_path / "run"
    api.run(request_for(suite, database, out))
    other = tmp_path / "facility.db"
    build_population(PopulationOptions(patients=0), other)  # the facility's resources only: other content
    with pytest.raises(RunMismatch, match="the population differs"):
        api.run(request_for(suite, str(other), out, resume=True))


# -- regrade and compare --------------------------------------------------------------------------------------------


def test_regrade_uses_the_edited_scenario_without_model_or_server(
    tmp_path: Path, reference_run: RunFolder, suite: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = RunFolder(tmp_path / "run")
    shutil.copytree(reference_run.path, copy.path)
    edited = shutil.copytree(suite, tmp_path / "suite")

    def forbidden(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("regrade must not start a server or build an agent")

    monkeypatch.setattr(api, "LocalServer", forbidden)
    monkeypatch.setattr(api, "agent_factory", forbidden)
    changed, stats = api.regrade(copy.path, [str(edited)])
    assert changed == 0 and stats.overall.passed == 6

    write_suite(edited, [potassium("t.k-rounded", answer=3.5, tolerance=0.2)])  # 3.5 is now within 0.2 of 3.4
    changed, stats = api.regrade(copy.path, [str(edited)])
    assert changed == 2  # both trials
    assert (stats.overall.passed, stats.overall.n) == (8, 8)
    rounded = [r for r in copy.episodes() if r.scenario_id == "t.k-rounded"]
    assert [r.score for r in rounded] == [1.0, 1.0]
    assert all(c.passed for r in rounded for c in r.checks)
    assert reference_run.episodes()[0].score is not None  # the original run is untouched
    assert sum(r.score == 1.0 for r in reference_run.episodes()) == 6


def test_compare_two_runs_pairs_by_scenario(
    reference_run: RunFolder, suite: Path, database: str, tmp_path: Path
) -> None:
    nothing, _ = api.run(request_for(suite, database, tmp_path / "nothing", agent="do-nothing"))
    result = api.compare(reference_run.path, nothing.path)
    assert result.scenarios == 4
    assert (result.mean_a, result.mean_b) == (0.75, 0.0)
    assert result.difference == -0.75
    assert (result.a_better, result.b_better) == (3, 0)
    assert result.low <= result.difference <= result.high < 0
    assert result == api.compare(reference_run.path, nothing.path)  # the bootstrap is seeded


# -- the command line -----------------------------------------------------------------------------------------------


def test_cli_run_report_regrade_compare(tmp_path: Path, suite: Path, database: str, reference_run: RunFolder) -> None:
    runner = CliRunner()
    out = tmp_path / "cli-run"
    args = ["run", "--suite", str(suite), "--agent", "reference", "--database", database, "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "overall" in result.output and "pass@1" in result.output
    assert "3/4" in result.output  # one trial: t.k-rounded fails
    assert (out / "report.html").exists() and (out / "manifest.json").exists()

    result = runner.invoke(app, ["report", str(out)])
    assert result.exit_code == 0, result.output
    assert "overall" in result.output and "report:" in result.output

    result = runner.invoke(app, ["regrade", str(out)])
    assert result.exit_code == 0, result.output
    assert "0 score(s) changed" in " ".join(result.output.split())  # rich wraps at 80 columns here

    result = runner.invoke(app, ["compare", str(reference_run.path), str(out)])
    assert result.exit_code == 0, result.output
    assert "paired by scenario" in " ".join(result.output.split()) and "+0.0%" in result.output

    result = runner.invoke(app, args)  # the folder exists now
    assert result.exit_code == 2
    assert result.output.strip().startswith("error:") and "--resume" in result.output


@pytest.mark.parametrize(
    ("model", "says"),
    [
        ("nope:x", "expected provider:model"),
        ("openai:gpt-4o-mini", "OPENAI_API_KEY"),  # the provider's own error (no key), as one line
        ("acme:model", "pip install 'fhir-sandbox[acme]'"),  # brackets are not taken for markup
    ],
)
def test_cli_a_bad_model_is_one_clear_line(
    model: str, says: str, tmp_path: Path, suite: Path, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if model.startswith("openai"):
        pytest.importorskip("langchain_openai")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setitem(PROVIDERS, "acme", ("no_such_provider_package", "ChatAcme", "acme"))
    args = ["run", "--suite", str(suite), "--model", model, "--database", database, "--out", str(tmp_path / "x")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    output = result.output.strip()
    assert output.startswith("error:") and "\n" not in output, output
    assert says in output and "Traceback" not in output
    assert not (tmp_path / "x").exists()
