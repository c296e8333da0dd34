"""Running agents on scenarios, and reading runs: ``run``, ``report``, ``regrade``, ``compare``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..population import SUITES_POPULATION

if TYPE_CHECKING:
    from ..runs import RunFolder


from . import app, console, fail
from .options import Alg, AuthMode, ClientId, KeyPath, Kid, Scope, SecretEnv, TokenEnv, TokenUrl, auth_options


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
    fhir_base_url: Annotated[
        str | None, typer.Option(help="Run on this external FHIR endpoint (e.g. a staging server) instead of ours")
    ] = None,
    auth: AuthMode = "none",
    token_env: TokenEnv = "FHIR_TOKEN",
    client_id: ClientId = None,
    key: KeyPath = None,
    alg: Alg = None,
    kid: Kid = None,
    scope: Scope = None,
    client_secret_env: SecretEnv = "FHIR_CLIENT_SECRET",
    token_url: TokenUrl = None,
    allow_writes: Annotated[
        bool, typer.Option(help="Let agents and scenario setups write to the endpoint (always so on our server)")
    ] = False,
    keep_writes: Annotated[
        bool, typer.Option(help="Leave what episodes created on the endpoint (remove it with `cleanup RUN`)")
    ] = False,
) -> None:
    """Run agents on scenarios, each episode in its own session (or on an external endpoint with
    --fhir-base-url); store and report the results."""
    from datetime import UTC, datetime

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from ..agent_choice import AgentChoice, AgentChoiceError
    from ..agents.models import ModelSpecError
    from ..api import RunRequest
    from ..api import run as run_episodes
    from ..auth import AuthError
    from ..episode import EpisodeLimits, EpisodeResult, Termination
    from ..report import stats_summary, stats_table
    from ..runner import ScenarioFilter
    from ..runs import RunMismatch
    from ..scenarios.loader import ScenarioError

    chosen = agent or ("llm" if model else "reference")
    options = auth_options(auth, token_env, client_id, key, alg, kid, scope, client_secret_env, token_url)
    endpoint = None
    if fhir_base_url:
        from ..staging import EndpointOptions

        endpoint = EndpointOptions(
            fhir_base_url=fhir_base_url,
            auth=options,
            allow_writes=allow_writes,
            keep_writes=keep_writes,
        )
    elif auth != "none":
        raise fail(f"--auth {auth} needs --fhir-base-url (our own server needs no auth)")
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
        endpoint=endpoint,
        out=out,
        resume=resume,
    )
    tally = {"passed": 0, "scored": 0, "errors": 0, "not_runnable": 0}
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
                if result.termination == Termination.NOT_RUNNABLE:
                    tally["not_runnable"] += 1
                elif result.score is None:
                    tally["errors"] += 1
                else:
                    tally["scored"] += 1
                    tally["passed"] += result.score == 1.0
                rate = tally["passed"] / tally["scored"] if tally["scored"] else 0.0
                status = f"pass {rate:.1%}  infra errors {tally['errors']}"
                if tally["not_runnable"]:
                    status += f"  not runnable {tally['not_runnable']}"
                progress.update(task, completed=done, total=total, status=status)

            folder, stats = run_episodes(request, console, on_result)
    except (
        ScenarioError,
        RunMismatch,
        FileExistsError,
        AgentChoiceError,
        ModelSpecError,
        ValueError,
        AuthError,
    ) as exc:
        raise fail(str(exc)) from None
    _write_html(folder)
    console.print(stats_table(stats, title=f"{chosen}{' ' + model if model else ''} on {', '.join(suite)}"))
    console.print(stats_summary(stats), highlight=False)
    if endpoint is not None:
        _endpoint_summary(folder, endpoint.fhir_base_url)
    console.print(f"run folder: {folder.path}  (report: {folder.path / 'report.html'})", highlight=False)


def _endpoint_summary(folder: RunFolder, fhir_base_url: str) -> None:
    from ..runs import latest

    results = latest(folder.episodes())
    created = sum(len(r.created) for r in results)
    left = sum(len(set(r.created) - set(r.removed)) for r in results)
    skipped = sum(r.termination == "not_runnable" for r in results)
    line = f"on {fhir_base_url}: episodes created {created} resource(s), {created - left} removed"
    if left:
        line += f", {left} left (`fhir-sandbox cleanup {folder.path}` removes them)"
    if skipped:
        line += f"; {skipped} episode(s) not runnable here (they need writes: --allow-writes)"
    console.print(line, highlight=False, soft_wrap=True)


@app.command()
def report(run_folder: Annotated[Path, typer.Argument(help="A run folder")]) -> None:
    """Print a run's results and (re)write its report.html."""
    from ..report import stats_summary, stats_table
    from ..runs import RunFolder, latest
    from ..stats import run_stats

    folder = RunFolder(run_folder)
    if not folder.exists():
        raise fail(f"{run_folder} is not a run folder (no manifest.json)")
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
    from ..api import regrade as regrade_run
    from ..report import stats_summary, stats_table
    from ..runs import RunFolder

    if not RunFolder(run_folder).exists():
        raise fail(f"{run_folder} is not a run folder (no manifest.json)")
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
    from ..api import compare as compare_runs
    from ..report import comparison_table
    from ..runs import RunFolder

    for path in (run_a, run_b):
        if not RunFolder(path).exists():
            raise fail(f"{path} is not a run folder (no manifest.json)")
    console.print(comparison_table(compare_runs(run_a, run_b), run_a.name, run_b.name))


def _write_html(folder: object) -> None:
    from ..report_html import write_report

    write_report(folder)  # type: ignore[arg-type]
