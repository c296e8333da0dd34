"""The bundled suites against the population they were written for (the first 30 patients of the default
population): every reference solution scores 1, the do-nothing agent scores 0 wherever an action is expected
and at most 5% overall, and conditional categories are balanced between action and no action."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
from fhir_sandbox.baselines import do_nothing_agent, reference_agent
from fhir_sandbox.episode import EpisodeResult, run_episode
from fhir_sandbox.fhir_server import ServerSettings
from fhir_sandbox.population import SUITES_POPULATION, resolve_population
from fhir_sandbox.scenarios import Scenario, load_scenarios
from fhir_sandbox.server import LocalServer
from fhir_sandbox.targets import LocalTarget
from rich.console import Console

pytestmark = pytest.mark.integration

LOADED = load_scenarios(["core", "extended"])
SCENARIOS = LOADED.scenarios


@pytest.fixture(scope="module")
def episode_target() -> Iterator[tuple[LocalTarget, httpx.Client]]:
    path = resolve_population(SUITES_POPULATION, Console(quiet=True))
    with LocalServer(ServerSettings(database=str(path))) as server, httpx.Client(timeout=60) as http:
        yield LocalTarget(server.url, http), http


def test_the_suites_load_without_problems() -> None:
    assert [str(p) for p in LOADED.problems] == []
    per_suite = Counter(s.id.split(".")[0] for s in SCENARIOS)
    assert per_suite["core"] == 300
    assert per_suite["extended"] >= 100


def test_core_has_ten_categories_of_thirty_and_extended_ten_of_at_least_ten() -> None:
    core = Counter(s.category for s in SCENARIOS if s.id.startswith("core."))
    extended = Counter(s.category for s in SCENARIOS if s.id.startswith("extended."))
    assert len(core) == 10 and set(core.values()) == {30}
    assert len(extended) >= 10 and min(extended.values()) >= 10


def test_conditional_core_categories_are_balanced_one_to_one() -> None:
    by_category: dict[str, Counter[bool]] = {}
    for scenario in SCENARIOS:
        if scenario.id.startswith("core."):
            by_category.setdefault(scenario.category, Counter())[scenario.expects_action] += 1
    conditional = {c: n for c, n in by_category.items() if n[True] and n[False]}
    assert conditional, "core has conditional categories"
    assert {c: (n[True], n[False]) for c, n in conditional.items()} == {c: (15, 15) for c in conditional}


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_the_reference_solution_scores_one(
    scenario: Scenario, episode_target: tuple[LocalTarget, httpx.Client]
) -> None:
    result = run_episode(scenario, reference_agent, *episode_target)
    assert result.score == 1.0, _why(result)


def test_the_do_nothing_agent_scores_zero_on_actions_and_at_most_five_percent_overall(
    episode_target: tuple[LocalTarget, httpx.Client],
) -> None:
    results = [(s, run_episode(s, do_nothing_agent, *episode_target)) for s in SCENARIOS]
    assert [r.error for _, r in results if r.score is None] == []
    scored_on_action = [s.id for s, r in results if s.expects_action and r.score]
    assert scored_on_action == []
    overall = sum(r.score or 0 for _, r in results) / len(results)
    assert overall <= 0.05, f"do-nothing scores {overall:.1%}"


def _why(result: EpisodeResult) -> str:
    failed = [f"{c.name}: {c.reason}" for c in result.checks if c.counted and not c.passed]
    return f"{result.termination} {result.error or ''} {failed}"
