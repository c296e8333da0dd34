"""The ``fhir-sandbox`` command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .population import DEFAULT_POPULATION, SUITES_POPULATION, open_population, resolve_population

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
    # escaped: messages hold brackets ("pip install 'fhir-sandbox[openai]'") that rich would take for markup
    console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
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
    keep_sessions: Annotated[
        bool, typer.Option(help="Keep the sessions earlier runs left in the file (default: clear them)")
    ] = False,
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
    stale = 0 if keep_sessions else app_.state.repository.reset_sessions()
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
    population: Annotated[
        str, typer.Option(help="Population to run the baseline agents on ('suites': the suites' 30 patients)")
    ] = SUITES_POPULATION,
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


@app.command()
def run(
    suite: Annotated[list[str], typer.Option(help="Suite name (core, extended) or scenario path; repeatable")] = [  # noqa: B006
        "core"
    ],
    agent: Annotated[
        str | None, typer.Option(help="llm (default with --model), text-protocol, reference, do-nothing, module:Class")
    ] = None,
    model: Annotated[str | None, typer.Option(help="provider:model, e.g. openai:gpt-4o-mini, ollama:llama3.1")] = None,
    base_url: Annotated[str | None, typer.Option(help="An OpenAI-compatible server (vLLM...) for openai:NAME")] = None,
    temperature: Annotated[float, typer.Option(help="Sampling temperature")] = 0.0,
    seed: Annotated[int | None, typer.Option(help="Seed passed to providers that take one")] = None,
    price_in: Annotated[float | None, typer.Option(help="USD per million input tokens (default: list price)")] = None,
    price_out: Annotated[float | None, typer.Option(help="USD per million output tokens")] = None,
    trials: Annotated[int, typer.Option(min=1, help="Episodes per scenario (for pass^k, pass@k)")] = 1,
    concurrency: Annotated[int, typer.Option(min=1, help="Episodes at once")] = 4,
    out: Annotated[Path | None, typer.Option(help="Run folder (default runs/<agent>-<time>)")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out")] = False,
    category: Annotated[list[str] | None, typer.Option(help="Only this category; repeatable")] = None,
    scenario: Annotated[list[str] | None, typer.Option(help="Only this scenario id (or prefix*); repeatable")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="Only scenarios with this tag; repeatable")] = None,
    per_category: Annotated[int | None, typer.Option(min=1, help="At most this many scenarios per category")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many scenarios")] = None,
    max_tool_errors: Annotated[int, typer.Option(min=1, help="Failed tool calls before an episode ends")] = 10,
    max_seconds: Annotated[float, typer.Option(min=1, help="Wall-time limit of an episode")] = 600,
    max_tokens: Annotated[int | None, typer.Option(min=1, help="Token limit of an episode")] = None,
    population: Annotated[str, typer.Option(help="Population: 'suites' (the suites' 30 patients), 'default', NAME")] = (
        SUITES_POPULATION
    ),
    database: Annotated[str | None, typer.Option(help="A population file instead")] = None,
) -> None:
    """Run agents on scenarios, each episode in its own session; store and report the results."""
    from datetime import UTC, datetime

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from .agent_choice import AgentChoice, AgentChoiceError
    from .agents.models import ModelSpecError
    from .api import RunRequest
    from .api import run as run_episodes
    from .episode import EpisodeLimits, EpisodeResult
    from .report import stats_summary, stats_table
    from .runner import ScenarioFilter
    from .runs import RunMismatch
    from .scenarios.loader import ScenarioError

    chosen = agent or ("llm" if model else "reference")
    out = out or Path("runs") / f"{chosen.replace(':', '-')}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}"
    request = RunRequest(
        suites=suite,
        agent=AgentChoice(
            agent=chosen,
            model=model,
            base_url=base_url,
            temperature=temperature,
            seed=seed,
            prices=(price_in, price_out or 0.0) if price_in is not None else None,
        ),
        trials=trials,
        concurrency=concurrency,
        limits=EpisodeLimits(max_tool_errors=max_tool_errors, max_seconds=max_seconds, max_tokens=max_tokens),
        filter=ScenarioFilter(
            categories=category or [], ids=scenario or [], tags=tag or [], per_category=per_category, limit=limit
        ),
        population=population,
        database=database,
        out=out,
        resume=resume,
    )
    tally = {"passed": 0, "scored": 0, "errors": 0}
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeRemainingColumn(),
    )
    try:
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task(f"{chosen} episodes", total=None, status="")

            def on_result(result: EpisodeResult, done: int, total: int) -> None:
                if result.score is None:
                    tally["errors"] += 1
                else:
                    tally["scored"] += 1
                    tally["passed"] += result.score == 1.0
                rate = tally["passed"] / tally["scored"] if tally["scored"] else 0.0
                status = f"pass {rate:.1%}  infra errors {tally['errors']}"
                progress.update(task, completed=done, total=total, status=status)

            folder, stats = run_episodes(request, console, on_result)
    except (ScenarioError, RunMismatch, FileExistsError, AgentChoiceError, ModelSpecError, ValueError) as exc:
        raise _fail(str(exc)) from None
    _write_html(folder)
    console.print(stats_table(stats, title=f"{chosen}{' ' + model if model else ''} on {', '.join(suite)}"))
    console.print(stats_summary(stats), highlight=False)
    console.print(f"run folder: {folder.path}  (report: {folder.path / 'report.html'})", highlight=False)


@app.command()
def report(run_folder: Annotated[Path, typer.Argument(help="A run folder")]) -> None:
    """Print a run's results and (re)write its report.html."""
    from .report import stats_summary, stats_table
    from .runs import RunFolder, latest
    from .stats import run_stats

    folder = RunFolder(run_folder)
    if not folder.exists():
        raise _fail(f"{run_folder} is not a run folder (no manifest.json)")
    stats = run_stats(latest(folder.episodes()))
    console.print(stats_table(stats, title=str(run_folder)))
    console.print(stats_summary(stats), highlight=False)
    _write_html(folder)
    console.print(f"report: {folder.path / 'report.html'}")


@app.command()
def regrade(
    run_folder: Annotated[Path, typer.Argument(help="A run folder")],
    scenarios: Annotated[
        list[str] | None, typer.Option(help="Scenario files to grade with (default: the run's)")
    ] = None,
) -> None:
    """Grade a run's stored episodes again with the current graders and scenarios, without a model or server."""
    from .api import regrade as regrade_run
    from .report import stats_summary, stats_table
    from .runs import RunFolder

    if not RunFolder(run_folder).exists():
        raise _fail(f"{run_folder} is not a run folder (no manifest.json)")
    changed, stats = regrade_run(run_folder, scenarios)
    console.print(stats_table(stats, title=f"{run_folder} (regraded: {changed} score(s) changed)"))
    console.print(stats_summary(stats), highlight=False)
    _write_html(RunFolder(run_folder))


@app.command()
def compare(
    run_a: Annotated[Path, typer.Argument(help="The baseline run folder")],
    run_b: Annotated[Path, typer.Argument(help="The run to compare with it")],
) -> None:
    """Paired comparison of two runs on the scenarios both ran: the difference with a 95% interval."""
    from .api import compare as compare_runs
    from .report import comparison_table
    from .runs import RunFolder

    for path in (run_a, run_b):
        if not RunFolder(path).exists():
            raise _fail(f"{path} is not a run folder (no manifest.json)")
    console.print(comparison_table(compare_runs(run_a, run_b), run_a.name, run_b.name))


def _write_html(folder: object) -> None:
    from .report_html import write_report

    write_report(folder)  # type: ignore[arg-type]


_STATE_DIR_HELP = "Folder of MCP session states (default: the user cache dir's fhir-sandbox/mcp-sessions)"


@app.command("mcp")
def mcp_command(
    scenario: Annotated[str, typer.Option(help="The scenario id to open a session for")],
    suite: Annotated[list[str], typer.Option(help="Suite name (core, extended) or scenario path; repeatable")] = [  # noqa: B006
        "core"
    ],
    population: Annotated[str, typer.Option(help="Population: 'suites' (the suites' 30 patients), 'default', NAME")] = (
        SUITES_POPULATION
    ),
    database: Annotated[str | None, typer.Option(help="A population file instead")] = None,
    transport: Annotated[str, typer.Option(help="stdio, or http (streamable HTTP on 127.0.0.1)")] = "stdio",
    port: Annotated[int, typer.Option(help="TCP port of the http transport")] = 8000,
    state_dir: Annotated[Path | None, typer.Option(help=_STATE_DIR_HELP)] = None,
) -> None:
    """Serve the FHIR tools over MCP, bound to a new session of one scenario; then grade it with `grade`."""
    import httpx

    from .graders.values import ValuesUnavailable
    from .grading import SetupError
    from .mcp_server import SessionError, default_state_dir, serve_mcp
    from .targets import TargetError

    err = Console(stderr=True)  # on stdio, stdout is the protocol
    problems = (
        SessionError,
        ValueError,
        FileNotFoundError,
        TargetError,
        SetupError,
        ValuesUnavailable,
        httpx.HTTPError,
    )
    try:
        target = database or str(resolve_population(population, err))
        serve_mcp(scenario, suite, target, transport, port, state_dir or default_state_dir(), err)
    except problems as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)  # one line, however long
        raise typer.Exit(code=2) from None


@app.command("grade")
def grade_command(
    session: Annotated[str, typer.Argument(help="The session id `fhir-sandbox mcp` printed")],
    state_dir: Annotated[Path | None, typer.Option(help=_STATE_DIR_HELP)] = None,
    keep: Annotated[bool, typer.Option(help="Keep the session on the server after grading")] = False,
) -> None:
    """Grade what an agent did in an MCP session: each check and the score; then delete the session."""
    import httpx

    from .mcp_server import SessionError, default_state_dir, grade_session
    from .targets import TargetError

    try:
        result = grade_session(session, state_dir or default_state_dir(), keep=keep)
    except (SessionError, TargetError, httpx.HTTPError) as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None
    state = result.state
    table = Table(title=f"Session {state.session_id}: scenario {state.scenario_id}")
    for column in ("check", "counted", "result", "reason"):
        table.add_column(column)
    for check in result.grade.checks:
        verdict = "[green]pass[/green]" if check.passed else "[red]fail[/red]"
        table.add_row(
            check.name, "yes" if check.counted else "no", verdict if check.applicable else "n/a", check.reason
        )
    console.print(table)
    earlier = " (graded earlier; the session was deleted then)" if result.earlier else ""
    console.print(
        f"score [bold]{result.score:g}[/bold]: {state.termination}, {len(state.tool_calls)} tool call(s), "
        f"{len(result.writes)} write(s), answer {json.dumps(state.answer)}{earlier}",
        highlight=False,
    )
    if result.deleted and not result.earlier:
        console.print(f"deleted session {state.session_id} (its state stays in {state_dir or default_state_dir()})")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
