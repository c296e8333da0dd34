"""Working with an external (staging) FHIR endpoint: ``doctor`` before a run, ``cleanup`` after one."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

if TYPE_CHECKING:
    pass


from . import app, console, fail
from .options import Alg, AuthMode, ClientId, KeyPath, Kid, Scope, SecretEnv, TokenEnv, TokenUrl, auth_options


@app.command()
def cleanup(
    run_folder: Annotated[Path, typer.Argument(help="The folder of a run on an external endpoint")],
    auth: Annotated[str | None, typer.Option(help="As for run (default: the run's auth mode)")] = None,
    token_env: TokenEnv = "FHIR_TOKEN",
    client_id: ClientId = None,
    key: KeyPath = None,
    alg: Alg = None,
    kid: Kid = None,
    scope: Scope = None,
    client_secret_env: SecretEnv = "FHIR_CLIENT_SECRET",
    token_url: TokenUrl = None,
) -> None:
    """Delete what a run left on its external endpoint (after --keep-writes or a crash): the resources its
    episodes created and did not remove, and those carrying its run tag."""
    from ..auth import AuthError
    from ..runs import RunFolder
    from ..scenarios.loader import load_scenarios
    from ..staging import EndpointOptions, cleanup_run, connect

    folder = RunFolder(run_folder)
    if not folder.exists():
        raise fail(f"{run_folder} is not a run folder (no manifest.json)")
    manifest = folder.manifest()
    stored = manifest.config.get("endpoint")
    if not isinstance(stored, dict):
        raise fail(f"{run_folder} ran on our own server: its writes stayed in its sessions, nothing to clean up")
    mode = auth or str(stored.get("auth", "none"))
    options = auth_options(mode, token_env, client_id, key, alg, kid, scope, client_secret_env, token_url)
    loaded = load_scenarios(manifest.config.get("suites") or [])  # their setup types are searched for the tag
    scenarios = [s for s in loaded.scenarios if s.id in manifest.scenarios]
    endpoint = EndpointOptions(fhir_base_url=stored["fhir_base_url"], auth=options, allow_writes=True)
    try:
        with connect(endpoint) as http:
            done = cleanup_run(folder, http, scenarios)
    except (AuthError, ValueError) as exc:
        raise fail(str(exc)) from None
    console.print(
        f"run {done.run_id} on {done.fhir_base_url}: deleted {len(done.deleted)}, already gone "
        f"{len(done.already_gone)}, failed {len(done.failed)}, left {len(done.left)} (updated, not created by the run)",
        highlight=False,
        soft_wrap=True,
    )
    for problem in done.failed:
        console.print(f"[red]failed:[/red] {escape(problem)}", highlight=False, soft_wrap=True)
    for ref in done.left:
        console.print(f"left in place (the run updated it): {ref}", highlight=False)
    if done.failed:
        raise typer.Exit(code=1)


@app.command()
def doctor(
    fhir_base_url: Annotated[
        str, typer.Option(help="The FHIR endpoint to examine, e.g. https://staging.example.org/fhir")
    ],
    suite: Annotated[list[str], typer.Option(help="Suite name (core, extended) or scenario path; repeatable")] = [  # noqa: B006
        "core"
    ],
    allow_writes: Annotated[
        bool,
        typer.Option(help="The run will allow writes: scenarios that write count as runnable (doctor never writes)"),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
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
    """Check a FHIR endpoint for a suite: its CapabilityStatement, the credentials, the scenarios' patients and
    searches, probes of sorting, paging and date prefixes; then which scenarios can run there, and why not.
    Exits 0 when the endpoint could be examined, 2 when it could not be reached or refused the credentials."""
    from ..doctor import examine, report_tables
    from ..scenarios.loader import ScenarioError
    from ..staging import EndpointOptions

    options = auth_options(auth, token_env, client_id, key, alg, kid, scope, client_secret_env, token_url)
    endpoint = EndpointOptions(fhir_base_url=fhir_base_url, auth=options, allow_writes=allow_writes)
    try:
        with console.status(f"examining {fhir_base_url}..."):
            report = examine(endpoint, suite)
    except ScenarioError as exc:
        for problem in exc.problems:
            console.print(f"[red]{escape(str(problem))}[/red]", highlight=False, soft_wrap=True)
        raise fail(f"{len(exc.problems)} problem(s) in the scenario files") from None
    if as_json:
        print(report.model_dump_json(indent=2))
    elif report.connected:
        for table in report_tables(report):
            console.print(table)
        runnable = sum(v.runnable for v in report.scenarios)
        console.print(
            f"{runnable} of {len(report.scenarios)} scenario(s) can run on {report.base_url}", highlight=False
        )
    if report.error is not None:
        if not as_json:
            console.print(f"[red]error:[/red] {escape(report.error)}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=report.exit_code)
