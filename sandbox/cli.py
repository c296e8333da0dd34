"""The ``fhir-sandbox`` command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from .population import DEFAULT_POPULATION, open_population, resolve_population

app = typer.Typer(help="FHIR Agent Sandbox: a FHIR R4 EHR for evaluating LLM agents.", no_args_is_help=True)
population_app = typer.Typer(help="Build, import, export and inspect patient populations.", no_args_is_help=True)
app.add_typer(population_app, name="population")
scenarios_app = typer.Typer(help="Check and list scenario files and suites.", no_args_is_help=True)
app.add_typer(scenarios_app, name="scenarios")
console = Console()


@app.callback()
def _root() -> None:
    """FHIR Agent Sandbox: a FHIR R4 EHR for evaluating LLM agents."""


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code=2)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind (127.0.0.1 keeps it off the network)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8080,
    population: Annotated[
        str, typer.Option(help="Population to serve: 'default' (generated, built on first use) or a name")
    ] = DEFAULT_POPULATION,
    database: Annotated[str | None, typer.Option(help="Serve this SQLite file or SQLAlchemy URL instead")] = None,
    public_url: Annotated[str | None, typer.Option(help="Origin clients use, if not the request's")] = None,
    default_page_size: Annotated[int, typer.Option(help="_count when none is given")] = 20,
    max_page_size: Annotated[int, typer.Option(help="Largest _count honoured")] = 200,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "warning",
) -> None:
    """Serve the FHIR R4 API at http://HOST:PORT/fhir (sessions at /sessions/{id}/fhir)."""
    import uvicorn

    from .fhir_server import ServerSettings, create_app

    try:
        target = database or str(resolve_population(population, console))
    except (ValueError, FileNotFoundError) as exc:
        raise _fail(str(exc)) from None
    settings = ServerSettings(
        database=target, public_url=public_url, default_page_size=default_page_size, max_page_size=max_page_size
    )
    app_ = create_app(settings)
    stale = app_.state.repository.reset_sessions()
    console.print(f"FHIR R4 server on [bold]http://{host}:{port}/fhir[/bold]  (database: {target})", highlight=False)
    if stale:
        console.print(f"cleared {stale} session(s) left by an earlier run")
    uvicorn.run(app_, host=host, port=port, log_level=log_level)


@population_app.command("build")
def population_build(
    patients: Annotated[int, typer.Option(help="Number of patients")] = 100,
    seed: Annotated[int, typer.Option(help="Random seed")] = 0,
    name: Annotated[str | None, typer.Option(help="Name to keep it under (default: derived from the options)")] = None,
    force: Annotated[bool, typer.Option(help="Rebuild even if it is already built")] = False,
) -> None:
    """Generate a synthetic population (deterministic: same options, same resources) and cache it."""
    from .population import build_generated

    path = build_generated(patients, seed, name, force, console)
    console.print(f"population ready: {path}")


@population_app.command("import")
def population_import(
    paths: Annotated[list[Path], typer.Argument(help="Folders or files of FHIR Bundles or Bulk Data NDJSON")],
    name: Annotated[str, typer.Option(help="Name of the population to create (replaced if it exists)")],
) -> None:
    """Load FHIR bundles (transaction, batch, collection) or NDJSON files as a named population."""
    from .fixtures import PopulationError, import_population, population_path

    try:
        target = population_path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        with console.status("importing...") as status:
            summary = import_population(paths, target, progress=lambda f: status.update(f"imported {f.name}"))
    except (PopulationError, ValueError) as exc:
        raise _fail(str(exc)) from None
    console.print(f"imported {summary.resources:,} resources from {summary.files} files into {name!r} ({target})")


@population_app.command("export")
def population_export(
    out: Annotated[Path, typer.Option(help="Folder to write ndjson/ and bundles/ into")],
    population: Annotated[str, typer.Option(help="Population to export")] = DEFAULT_POPULATION,
) -> None:
    """Write Bulk Data NDJSON (one file per type) and per-patient transaction Bundles."""
    from .fixtures import export_population

    try:
        engine = open_population(population, console)
    except (ValueError, FileNotFoundError) as exc:
        raise _fail(str(exc)) from None
    summary = export_population(engine, out)
    console.print(
        f"wrote {sum(summary.counts.values()):,} resources: {summary.ndjson_files} NDJSON files in {out / 'ndjson'}, "
        f"{summary.bundles} transaction bundles in {out / 'bundles'} (load 00-shared.json first)"
    )


@population_app.command("info")
def population_info(
    population: Annotated[str, typer.Option(help="Population to describe")] = DEFAULT_POPULATION,
) -> None:
    """Counts per resource type and the coverage of the key labs scenarios rely on."""
    from .population import coverage_table, type_counts

    try:
        engine = open_population(population, console)
    except (ValueError, FileNotFoundError) as exc:
        raise _fail(str(exc)) from None
    counts = type_counts(engine)
    table = Table(title=f"Population {population!r}: {sum(counts.values()):,} resources")
    table.add_column("resource type")
    table.add_column("count", justify="right")
    for resource_type, count in sorted(counts.items(), key=lambda item: -item[1]):
        table.add_row(resource_type, f"{count:,}")
    console.print(table)
    coverage = coverage_table(engine)
    if coverage is not None:
        console.print(coverage)


@population_app.command("list")
def population_list() -> None:
    """The populations built or imported on this machine."""
    from .fixtures import list_populations

    table = Table(title="Populations")
    for column in ("name", "size", "modified", "file"):
        table.add_column(column)
    for item in list_populations():
        table.add_row(
            item.name,
            f"{item.size_bytes / 2**20:,.0f} MiB",
            item.modified.isoformat(timespec="seconds"),
            str(item.path),
        )
    console.print(table)


_SUITES_HELP = "Scenario files or folders, or a bundled suite's name (core, extended); default: both suites"


@scenarios_app.command("validate")
def scenarios_validate(
    paths: Annotated[list[str] | None, typer.Argument(help=_SUITES_HELP)] = None,
    population: Annotated[str, typer.Option(help="Population to run the baseline agents on")] = DEFAULT_POPULATION,
    database: Annotated[str | None, typer.Option(help="Run on this population file instead")] = None,
    run: Annotated[bool, typer.Option(help="Run the reference and do-nothing agents (needs the population)")] = True,
) -> None:
    """Check scenario files: schema, expressions, names; then the reference solution must score 1 and the
    do-nothing agent 0 where an action is expected. Every problem is reported as file, JSON pointer, message."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from .validate import validate_paths

    target = None
    if run:
        try:
            target = database or str(resolve_population(population, console))
        except (ValueError, FileNotFoundError) as exc:
            raise _fail(str(exc)) from None
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
    ran = f"; reference {_mean(report.reference):.1%}, do-nothing {_mean(report.do_nothing):.1%}" if run else ""
    console.print(f"{len(report.scenarios)} scenario(s), {len(report.problems)} problem(s){ran}")
    if not report.ok:
        raise typer.Exit(code=1)


def _mean(results: list) -> float:  # type: ignore[type-arg]
    scores = [r.score for r in results if r.score is not None]
    return sum(scores) / len(scores) if scores else 0.0


@scenarios_app.command("list")
def scenarios_list(paths: Annotated[list[str] | None, typer.Argument(help=_SUITES_HELP)] = None) -> None:
    """Suites, categories and counts (and how many scenarios expect the agent to write)."""
    from collections import Counter

    from .scenarios.loader import load_scenarios

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


def main() -> None:
    app()
