"""``scenarios validate``: a scenario file is valid when it parses, its expressions and named functions exist,
its reference solution scores 1 on the population, and the do-nothing agent scores 0 where it expects an action."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from .baselines import do_nothing_agent, reference_agent
from .episode import EpisodeResult, run_episode
from .fhir_server import ServerSettings
from .graders.custom import GRADERS
from .graders.expressions import ExpressionError, evaluate
from .scenarios.loader import ScenarioProblem, load_scenarios
from .scenarios.model import PythonCheck, Scenario
from .scenarios.solutions import SOLUTIONS
from .server import LocalServer
from .targets import LocalTarget

__all__ = ["ValidationReport", "static_problems", "validate_paths"]


@dataclass
class ValidationReport:
    scenarios: list[Scenario] = field(default_factory=list)
    problems: list[ScenarioProblem] = field(default_factory=list)
    reference: list[EpisodeResult] = field(default_factory=list)
    do_nothing: list[EpisodeResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def validate_paths(
    paths: Iterable[Path | str],
    database: str | None,
    progress: Callable[[int, int], None] | None = None,
) -> ValidationReport:
    """Load and check the scenarios under ``paths``; with a ``database``, also run both baseline agents."""
    loaded = load_scenarios(paths)
    scenarios = loaded.scenarios
    report = ValidationReport(scenarios=scenarios, problems=loaded.problems)
    broken = set()  # scenarios with static problems are not run (a missing reference function would raise)
    for scenario in scenarios:
        found = static_problems(scenario, loaded.file(scenario))
        if found:
            broken.add(scenario.id)
        report.problems.extend(found)
    if database is None or not scenarios:
        return report
    with LocalServer(ServerSettings(database=database)) as server, httpx.Client(timeout=60) as http:
        target = LocalTarget(server.url, http)
        for done, scenario in enumerate(scenarios, start=1):
            if scenario.id not in broken:
                file = loaded.file(scenario)
                reference = run_episode(scenario, reference_agent, target, http)
                nothing = run_episode(scenario, do_nothing_agent, target, http)
                report.reference.append(reference)
                report.do_nothing.append(nothing)
                report.problems.extend(_run_problems(scenario, file, reference, nothing))
            if progress:
                progress(done, len(scenarios))
    return report


def static_problems(scenario: Scenario, file: str) -> list[ScenarioProblem]:
    """What parsing cannot see: FHIRPath that does not compile, names of functions that do not exist."""
    problems = []
    expressions: list[tuple[str, str]] = []
    for name, spec in scenario.expectations.values.items():
        for attribute in ("expression", "input"):
            if isinstance(getattr(spec, attribute, None), str):
                expressions.append((f"/expectations/values/{name}/{attribute}", getattr(spec, attribute)))
    for index, check in enumerate(scenario.expectations.checks):
        pointer = f"/expectations/checks/{index}"
        if check.when:
            expressions.append((f"{pointer}/when", check.when))
        for attribute in ("where", "except_where"):
            if isinstance(getattr(check, attribute, None), str):
                expressions.append((f"{pointer}/{attribute}", getattr(check, attribute)))
        for position, assertion in enumerate(getattr(check, "fields", ())):
            expressions.append((f"{pointer}/fields/{position}/path", assertion.path))
        if isinstance(check, PythonCheck) and check.function not in GRADERS:
            valid = ", ".join(sorted(GRADERS))
            problems.append(
                ScenarioProblem(file, f"{pointer}/function", f"no grader {check.function!r}; valid: {valid}")
            )
    for pointer, expression in expressions:
        try:
            evaluate(expression, {}, {})
        except ExpressionError as exc:
            if "invalid FHIRPath" in str(exc):
                problems.append(ScenarioProblem(file, pointer, str(exc)))
    function = scenario.reference.function
    if function is not None and function not in SOLUTIONS:
        valid = ", ".join(sorted(SOLUTIONS)) or "none are registered"
        problems.append(
            ScenarioProblem(file, "/reference/function", f"no reference solution {function!r}; valid: {valid}")
        )
    return problems


def _run_problems(
    scenario: Scenario, file: str, reference: EpisodeResult, nothing: EpisodeResult
) -> list[ScenarioProblem]:
    problems = []
    if reference.score != 1.0:
        failed = "; ".join(f"{c.name}: {c.reason}" for c in reference.checks if c.counted and not c.passed)
        why = reference.error or failed or reference.termination
        problems.append(ScenarioProblem(file, "/reference", f"the reference solution scores {reference.score}: {why}"))
    if scenario.expects_action and nothing.score != 0.0:
        problems.append(
            ScenarioProblem(
                file,
                "/expectations",
                f"the do-nothing agent scores {nothing.score} on a scenario that expects an action",
            )
        )
    return problems
