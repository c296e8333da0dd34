"""The Python API: everything the CLI does (run, resume, regrade, compare), for notebooks and scripts.

from fhir_sandbox.api import RunRequest, run
folder, stats = run(RunRequest(suites=["core"], agent=AgentChoice(agent="reference"), out=Path("runs/ref")))
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import httpx
from pydantic import BaseModel, Field
from rich.console import Console

from .agent_choice import AgentChoice, agent_factory
from .connections import episode_client
from .episode import AgentFactory, EpisodeLimits, EpisodeResult
from .fhir_server import ServerSettings, __version__, make_engine
from .graders.grade import grade
from .graders.inputs import GradingInput
from .graders.values import instant_text
from .population import SUITES_POPULATION, resolve_population, type_counts
from .runner import ScenarioFilter, run_batch, select_scenarios
from .runs import Manifest, RunFolder, git_commit, latest, now_text, scenario_hash
from .scenarios.loader import ScenarioError, ScenarioProblem, load_scenarios
from .scenarios.model import Scenario
from .server import LocalServer, ServerProcesses
from .staging import EndpointOptions, StagingTarget, connect, new_run_id
from .stats import Comparison, RunStats, compare_runs, run_stats
from .targets import LocalTarget

__all__ = ["RunRequest", "compare", "regrade", "run"]


class RunRequest(BaseModel):
    suites: list[str] = Field(default_factory=lambda: ["core"], description="Suite names or scenario paths.")
    agent: AgentChoice = Field(default_factory=AgentChoice)
    trials: int = Field(1, ge=1)
    concurrency: int = Field(4, ge=1)
    limits: EpisodeLimits = Field(default_factory=EpisodeLimits)
    filter: ScenarioFilter = Field(default_factory=ScenarioFilter)
    population: str = SUITES_POPULATION
    database: str | None = Field(None, description="A population file instead of a named population.")
    server: Literal["auto", "thread", "process"] = Field(
        "auto",
        description="Where our FHIR server runs: a thread of this process, or processes of its own (their own "
        "GIL; one per 32 episodes at once, up to the CPU count; 'auto' takes processes when more than 4 episodes "
        "run at once).",
    )
    endpoint: EndpointOptions | None = Field(
        None, description="Run on this external FHIR endpoint instead of our server (no sessions; see staging)."
    )
    out: Path
    resume: bool = False


_NOT_CONFIG = {"out", "resume", "concurrency", "server", "endpoint"}  # left out of the manifest's config


def run(
    request: RunRequest,
    console: Console | None = None,
    on_result: Callable[[EpisodeResult, int, int], None] | None = None,
) -> tuple[RunFolder, RunStats]:
    """Run (or resume) the request's episodes into ``request.out``.

    Raises:
        ScenarioError: scenario files with problems. RunMismatch: a resume that does not match the run.
        FileExistsError: ``out`` holds a run and ``resume`` is false. AgentChoiceError, ModelSpecError.
        AuthError: the endpoint's authorisation failed.
    """
    console = console or Console(quiet=True)
    scenarios = _scenarios(request)
    make_agent = agent_factory(request.agent)
    folder = RunFolder(request.out)
    if request.endpoint is not None:
        _run_on_endpoint(request, request.endpoint, scenarios, make_agent, folder, on_result)
        return folder, run_stats(latest(folder.episodes()))
    database = request.database or str(resolve_population(request.population, console))
    manifest = Manifest(
        created=now_text(),
        package_version=__version__,
        git_commit=git_commit(Path(__file__).parent),
        config=request.model_dump(mode="json", exclude=_NOT_CONFIG),
        population=_fingerprint(request.population if not request.database else None, database),
        scenarios={s.id: scenario_hash(s) for s in scenarios},
    )
    _start(folder, manifest, request.resume)
    in_process = request.server == "thread" or (request.server == "auto" and request.concurrency <= 4)
    serving = (
        LocalServer(ServerSettings(database=database))
        if in_process
        else ServerProcesses(database, _server_processes(request.concurrency))
    )
    with serving as server, episode_client() as http:
        run_batch(
            scenarios,
            make_agent,
            LocalTarget(server.urls, http),
            http,
            folder,
            trials=request.trials,
            concurrency=request.concurrency,
            limits=request.limits,
            on_result=on_result,
        )
    return folder, run_stats(latest(folder.episodes()))


def _run_on_endpoint(
    request: RunRequest,
    endpoint: EndpointOptions,
    scenarios: list[Scenario],
    make_agent: AgentFactory,
    folder: RunFolder,
    on_result: Callable[[EpisodeResult, int, int], None] | None,
) -> None:
    """A run on an external endpoint: the manifest names the endpoint, its auth mode and the run id its
    resources are tagged with (kept on resume, so that cleanup finds all of them)."""
    stored = folder.manifest().config.get("endpoint") if request.resume and folder.exists() else None
    run_id = stored["run_id"] if isinstance(stored, dict) and stored.get("run_id") else new_run_id(folder.path.name)
    config = request.model_dump(mode="json", exclude=_NOT_CONFIG | {"population", "database"})
    manifest = Manifest(
        created=now_text(),
        package_version=__version__,
        git_commit=git_commit(Path(__file__).parent),
        config=config | {"endpoint": endpoint.manifest_view(run_id)},
        population={"endpoint": endpoint.fhir_base_url.rstrip("/")},
        scenarios={s.id: scenario_hash(s) for s in scenarios},
    )
    with connect(endpoint, _pool(request.concurrency)) as http:  # a broken auth fails before the folder is made
        _start(folder, manifest, request.resume)
        target = StagingTarget(
            endpoint.fhir_base_url, http, run_id, endpoint.allow_writes, endpoint.keep_writes, scenarios
        )
        run_batch(
            scenarios,
            make_agent,
            target,
            http,
            folder,
            trials=request.trials,
            concurrency=request.concurrency,
            limits=request.limits,
            on_result=on_result,
        )


def _start(folder: RunFolder, manifest: Manifest, resume: bool) -> None:
    if folder.exists():
        if not resume:
            raise FileExistsError(f"{folder.path} already holds a run: --resume to continue it, or another --out")
        folder.check_resumable(manifest)
    else:
        folder.start(manifest)


def regrade(path: Path, scenario_paths: list[str] | None = None) -> tuple[int, RunStats]:
    """Grade a run's stored episodes again with the current graders and scenario files (no model, no server):
    the stored answer, writes and values are re-checked. Returns how many scores changed, and the new stats."""
    folder = RunFolder(path)
    manifest = folder.manifest()
    loaded = load_scenarios(scenario_paths or manifest.config.get("suites") or ["core"])
    by_id = {s.id: s for s in loaded.scenarios}
    changed, results = 0, []
    for result in folder.episodes():
        scenario = by_id.get(result.scenario_id)
        if scenario is not None and result.score is not None:
            data = GradingInput(
                answer=result.answer,
                writes=result.writes,
                values=result.values,
                patient=result.patient,
                now=instant_text(scenario.now),
            )
            graded = grade(scenario, data)
            score = graded.score if result.termination == "finished" else 0.0
            changed += score != result.score
            result = result.model_copy(update={"checks": graded.checks, "score": score})
        results.append(result)
    folder.rewrite(results)
    return changed, run_stats(latest(results))


def compare(path_a: Path, path_b: Path) -> Comparison:
    return compare_runs(latest(RunFolder(path_a).episodes()), latest(RunFolder(path_b).episodes()))


def _server_processes(concurrency: int) -> int:
    """Server processes for ``concurrency`` episodes at once: one Python process serves about a core's worth of
    requests, which 32 episodes of a fast model keep busy (benchmarks.concurrency)."""
    return max(1, min(os.cpu_count() or 1, math.ceil(concurrency / 32)))


def _pool(concurrency: int) -> httpx.Limits:
    """Enough pooled connections for every episode in flight (httpx keeps 10 by default)."""
    return httpx.Limits(max_connections=concurrency + 8, max_keepalive_connections=concurrency + 8)


def _scenarios(request: RunRequest) -> list[Scenario]:
    loaded = load_scenarios(request.suites)
    if loaded.problems:
        raise ScenarioError(loaded.problems)
    chosen = select_scenarios(loaded.scenarios, request.filter)
    if not chosen:
        raise ScenarioError([ScenarioProblem(", ".join(request.suites), "", "no scenario matches the filters")])
    return chosen


def _fingerprint(name: str | None, database: str) -> dict[str, object]:
    """What identifies the population's content: resources per type, hashed (cheap, and any rebuild with other
    options or another generator version changes it)."""
    engine = make_engine(database)
    try:
        counts = type_counts(engine)
    finally:
        engine.dispose()
    digest = hashlib.sha256(repr(sorted(counts.items())).encode()).hexdigest()[:16]
    return {"name": name, "resources": sum(counts.values()), "counts_hash": digest}
