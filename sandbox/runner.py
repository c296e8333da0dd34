"""Running many episodes: every scenario and trial in parallel (threads: episodes wait on the model and the server,
not on Python), each stored as soon as it ends; infrastructure errors are retried, then stored as such (never
scored). Resumable: pairs already stored are skipped."""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

import httpx
from pydantic import BaseModel, Field

from .episode import AgentFactory, EpisodeLimits, EpisodeResult, Termination, run_episode
from .runs import RunFolder
from .scenarios.model import Scenario
from .targets import Target
from .templates import CopyingTarget, Templates

__all__ = ["ScenarioFilter", "run_batch", "select_scenarios"]


class ScenarioFilter(BaseModel):
    categories: list[str] = Field(default_factory=list)
    ids: list[str] = Field(default_factory=list, description="Scenario ids, or id prefixes ending in '*'.")
    tags: list[str] = Field(default_factory=list)
    per_category: int | None = Field(None, ge=1, description="At most this many scenarios of each category.")
    limit: int | None = Field(None, ge=1, description="At most this many scenarios (after the other filters).")


def select_scenarios(scenarios: Iterable[Scenario], chosen: ScenarioFilter) -> list[Scenario]:
    picked = []
    for scenario in scenarios:
        if chosen.categories and scenario.category not in chosen.categories:
            continue
        if chosen.ids and not any(_id_matches(scenario.id, pattern) for pattern in chosen.ids):
            continue
        if chosen.tags and not set(chosen.tags) & set(scenario.tags):
            continue
        picked.append(scenario)
    if chosen.per_category:
        seen: Counter[str] = Counter()
        kept = []
        for scenario in picked:
            seen[scenario.category] += 1
            if seen[scenario.category] <= chosen.per_category:
                kept.append(scenario)
        picked = kept
    return picked[: chosen.limit] if chosen.limit else picked


def _id_matches(scenario_id: str, pattern: str) -> bool:
    return scenario_id.startswith(pattern[:-1]) if pattern.endswith("*") else scenario_id == pattern


def run_batch(
    scenarios: Sequence[Scenario],
    make_agent: AgentFactory,
    target: Target,
    http: httpx.Client,
    folder: RunFolder,
    trials: int = 1,
    concurrency: int = 4,
    limits: EpisodeLimits | None = None,
    infra_retries: int = 2,
    on_result: Callable[[EpisodeResult, int, int], None] | None = None,
) -> list[EpisodeResult]:
    """Run every (scenario, trial) not yet in ``folder``, ``concurrency`` at a time, appending each result.

    ``on_result(result, done, total)`` is called in the caller's thread as each episode is stored.
    """
    done = folder.done()
    pending = [(s, t) for t in range(trials) for s in scenarios if (s.id, t) not in done]
    total, finished = len(pending), 0
    results: list[EpisodeResult] = []

    # a scenario's trials start from copies of one prepared session, on a target that can copy sessions
    templates = Templates(target, http) if trials > 1 and isinstance(target, CopyingTarget) else None

    def one(scenario: Scenario, trial: int) -> EpisodeResult:
        for attempt in range(1, infra_retries + 2):
            result = run_episode(scenario, make_agent, target, http, trial=trial, limits=limits, templates=templates)
            result.attempts = attempt
            if result.termination != Termination.INFRASTRUCTURE_ERROR or attempt > infra_retries:
                return result
            time.sleep(min(10.0, 0.5 * 2**attempt))
        raise AssertionError("unreachable")

    with contextlib.ExitStack() as cleanup, ThreadPoolExecutor(max(1, concurrency), "episode") as pool:
        if templates is not None:
            cleanup.callback(templates.close)
        queue = iter(pending)
        running: set[Future[EpisodeResult]] = set()
        for scenario, trial in queue:  # keep at most `concurrency` in flight: results are stored as they end
            running.add(pool.submit(one, scenario, trial))
            if len(running) >= concurrency:
                break
        while running:
            completed, running = wait(running, return_when=FIRST_COMPLETED)
            for future in completed:
                result = future.result()
                folder.append(result)
                results.append(result)
                finished += 1
                if on_result:
                    on_result(result, finished, total)
                following = next(queue, None)
                if following is not None:
                    running.add(pool.submit(one, *following))
    return results
