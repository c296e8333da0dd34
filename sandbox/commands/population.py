"""``population``: build, import, export, push and inspect patient populations."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ..population import DEFAULT_POPULATION, SUITES_POPULATION, open_population, resolve_population

if TYPE_CHECKING:
    pass


from . import console, fail, population_app
from .options import Alg, AuthMode, ClientId, KeyPath, Kid, Scope, SecretEnv, TokenEnv, TokenUrl, auth_options


@population_app.command("build")
def population_build(
    patients: Annotated[int, typer.Option(help="Number of patients")] = 100,
    seed: Annotated[int, typer.Option(help="Random seed")] = 0,
    name: Annotated[str | None, typer.Option(help="Name to keep it under (default: derived from the options)")] = None,
    force: Annotated[bool, typer.Option(help="Rebuild even if it is already built")] = False,
) -> None:
    """Generate a synthetic population (deterministic: same options, same resources) and cache it."""
    from ..population import build_generated

    path = build_generated(patients, seed, name, force, console)
    console.print(f"population ready: {path}")


@population_app.command("import")
def population_import(
    paths: Annotated[list[Path], typer.Argument(help="Folders or files of FHIR Bundles or Bulk Data NDJSON")],
    name: Annotated[str, typer.Option(help="Name of the population to create (replaced if it exists)")],
) -> None:
    """Load FHIR bundles (transaction, batch, collection) or NDJSON files as a named population."""
    from ..fixtures import PopulationError, import_population, population_path

    try:
        target = population_path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        with console.status("importing...") as status:
            summary = import_population(paths, target, progress=lambda f: status.update(f"imported {f.name}"))
    except (PopulationError, ValueError) as exc:
        raise fail(str(exc)) from None
    console.print(f"imported {summary.resources:,} resources from {summary.files} files into {name!r} ({target})")


@population_app.command("export")
def population_export(
    out: Annotated[Path, typer.Option(help="Folder to write ndjson/ and bundles/ into")],
    population: Annotated[str, typer.Option(help="Population to export")] = DEFAULT_POPULATION,
) -> None:
    """Write Bulk Data NDJSON (one file per type) and per-patient transaction Bundles."""
    from ..fixtures import export_population

    try:
        engine = open_population(population, console)
    except (ValueError, FileNotFoundError) as exc:
        raise fail(str(exc)) from None
    summary = export_population(engine, out)
    console.print(
        f"wrote {sum(summary.counts.values()):,} resources: {summary.ndjson_files} NDJSON files in {out / 'ndjson'}, "
        f"{summary.bundles} transaction bundles in {out / 'bundles'} (load 00-shared.json first)"
    )


@population_app.command("push")
def population_push(
    to: Annotated[str, typer.Option("--to", help="The FHIR base URL to load, e.g. https://staging.example.org/fhir")],
    population: Annotated[str, typer.Option(help="Population: 'suites' (the suites' 30 patients), 'default', NAME")] = (
        SUITES_POPULATION
    ),
    database: Annotated[Path | None, typer.Option(help="A population file instead")] = None,
    state: Annotated[
        Path | None, typer.Option(help="Resume file (default: beside the population files, per population and URL)")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option(help="Push even where the server holds different resources under the same ids or MRNs")
    ] = False,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Push at most this many bundles now (rerun for more)")
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
) -> None:
    """Load a population into a FHIR server as transaction bundles (the shared resources, then one per patient,
    every id kept), so that the bundled suites run there unchanged. A rerun skips the bundles already pushed."""
    import httpx
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from ..auth import AuthError
    from ..push import PushConflictError, PushError, PushProgress, push_population, server_counts
    from ..staging import EndpointOptions, connect

    options = auth_options(auth, token_env, client_id, key, alg, kid, scope, client_secret_env, token_url)
    try:
        path = database or resolve_population(population, console)
    except (ValueError, FileNotFoundError) as exc:
        raise fail(str(exc)) from None
    name = database.stem if database else population
    columns = (
        TextColumn("pushing"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("resources  {task.fields[bundle]}"),
        TimeRemainingColumn(),
    )
    try:
        with connect(EndpointOptions(fhir_base_url=to, auth=options, allow_writes=True)) as http:
            http.timeout = httpx.Timeout(600, connect=15)  # a large patient's transaction takes a while
            with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as progress:
                task = progress.add_task("push", total=None, bundle="exporting the population")

                def on_bundle(event: PushProgress) -> None:
                    where = f"{event.bundle} ({event.done_bundles + 1}/{event.total_bundles})"
                    progress.update(task, completed=event.done_resources, total=event.total_resources, bundle=where)

                summary = push_population(
                    Path(path), name, to, http, state_file=state, overwrite=overwrite, limit=limit, progress=on_bundle
                )
            counts = server_counts(to, http, sorted(summary.counts)) if summary.complete else {}
    except PushConflictError as exc:
        for conflict in exc.conflicts[:20]:
            console.print(f"conflict: {escape(str(conflict))}", highlight=False, soft_wrap=True)
        raise fail(str(exc)) from None
    except (PushError, AuthError) as exc:
        raise fail(str(exc)) from None
    for conflict in summary.conflicts:
        console.print(f"[yellow]replaced:[/yellow] {escape(str(conflict))}", highlight=False, soft_wrap=True)
    done = f"{len(summary.skipped)} pushed before (state: {summary.state_file})"
    if summary.pushed:
        done = (
            f"pushed {len(summary.pushed)} bundle(s), {summary.resources:,} resources, in {summary.seconds:.0f} s; "
            + done
        )
    else:
        done = "nothing to push: all " + done
    console.print(done, highlight=False, soft_wrap=True)
    if not summary.complete:
        console.print(f"{len(summary.remaining)} bundle(s) left: run the same command again to continue")
        return
    table = Table(title=f"Population {name!r} on {summary.target}")
    for column in ("resource type", "population", "on the server"):
        table.add_column(column, justify="left" if column == "resource type" else "right")
    short = []
    for resource_type, count in sorted(summary.counts.items(), key=lambda item: -item[1]):
        held = counts.get(resource_type)
        if held is not None and held < count:
            short.append(resource_type)
        table.add_row(resource_type, f"{count:,}", "?" if held is None else f"{held:,}")
    console.print(table)
    if short:
        raise fail(f"the server holds fewer {', '.join(short)} resources than were pushed")


@population_app.command("info")
def population_info(
    population: Annotated[str, typer.Option(help="Population to describe")] = DEFAULT_POPULATION,
) -> None:
    """Counts per resource type and the coverage of the key labs scenarios rely on."""
    from ..population import coverage_table, type_counts

    try:
        engine = open_population(population, console)
    except (ValueError, FileNotFoundError) as exc:
        raise fail(str(exc)) from None
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
    from ..fixtures import list_populations

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
