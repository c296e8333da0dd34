"""``scenarios``: check and list scenario files and suites."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from ..population import SUITES_POPULATION, resolve_population

if TYPE_CHECKING:
    pass


from . import console, fail, scenarios_app
from .options import SUITES_HELP


@scenarios_app.command("validate")
def scenarios_validate(
    paths: Annotated[list[str] | None, typer.Argument(help=SUITES_HELP)] = None,
    population: Annotated[
        str, typer.Option(help="Population to run the baseline agents on ('suites': the suites' 30 patients)")
    ] = SUITES_POPULATION,
    database: Annotated[str | None, typer.Option(help="Run on this population file instead")] = None,
    run: Annotated[bool, typer.Option(help="Run the reference and do-nothing agents (needs the population)")] = True,
) -> None:
    """Check scenario files: schema, expressions, names; then the reference solution must score 1 and the
    do-nothing agent 0 where an action is expected. Every problem is reported as file, JSON pointer, message."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from ..stats import run_stats
    from ..validate import validate_paths

    target = None
    if run:
        try:
            target = database or str(resolve_population(population, console))
        except (ValueError, FileNotFoundError) as exc:
            raise fail(str(exc)) from None
    columns = (TextColumn("running baselines"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("run")
        report = validate_paths(
            paths or ["core", "extended"],
            target,
            progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    for problem in report.problems:
        console.print(
            f"[red]{problem.file}[/red]:{problem.pointer or '/'}: {problem.message}", highlight=False, soft_wrap=True
        )
    if run:
        reference, nothing = run_stats(report.reference).overall, run_stats(report.do_nothing).overall
        ran = f"; reference {reference.rate:.1%}, do-nothing {nothing.rate:.1%}"
    else:
        ran = ""
    console.print(f"{len(report.scenarios)} scenario(s), {len(report.problems)} problem(s){ran}")
    if not report.ok:
        raise typer.Exit(code=1)


@scenarios_app.command("list")
def scenarios_list(paths: Annotated[list[str] | None, typer.Argument(help=SUITES_HELP)] = None) -> None:
    """Suites, categories and counts (and how many scenarios expect the agent to write)."""
    from collections import Counter

    from ..scenarios.loader import load_scenarios

    loaded = load_scenarios(paths or ["core", "extended"])
    counts: Counter[tuple[str, str]] = Counter()
    actions: Counter[tuple[str, str]] = Counter()
    for scenario in loaded.scenarios:
        key = (scenario.id.split(".", 1)[0], scenario.category)
        counts[key] += 1
        actions[key] += scenario.expects_action
    table = Table(title=f"{len(loaded.scenarios)} scenarios")
    for column in ("suite", "category", "scenarios", "expect a write"):
        table.add_column(column, justify="right" if column in ("scenarios", "expect a write") else "left")
    for (suite, category), count in sorted(counts.items()):
        table.add_row(suite, category, str(count), str(actions[(suite, category)]))
    console.print(table)
    for problem in loaded.problems:
        console.print(
            f"[red]{problem.file}[/red]:{problem.pointer or '/'}: {problem.message}", highlight=False, soft_wrap=True
        )
    if loaded.problems:
        raise typer.Exit(code=1)
