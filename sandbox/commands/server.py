"""Serving: the FHIR server, and the tools over MCP with grading of what an MCP client did."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from ..population import DEFAULT_POPULATION, SUITES_POPULATION, resolve_population

if TYPE_CHECKING:
    pass


from . import app, console, fail


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind (127.0.0.1 keeps it off the network)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8080,
    population: Annotated[
        str, typer.Option(help="Population to serve: 'default' (generated, built on first use) or a name")
    ] = DEFAULT_POPULATION,
    database: Annotated[str | None, typer.Option(help="Serve this SQLite file or SQLAlchemy URL instead")] = None,
    public_url: Annotated[str | None, typer.Option(help="Origin clients use, if not the request's")] = None,
    default_page_size: Annotated[
        int | None, typer.Option(help="_count when none is given (default 20, or the profile's)")
    ] = None,
    max_page_size: Annotated[int | None, typer.Option(help="Largest _count honoured (default 200)")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "warning",
    keep_sessions: Annotated[
        bool, typer.Option(help="Keep the sessions earlier runs left in the file (default: clear them)")
    ] = False,
    auth: Annotated[
        str, typer.Option(help="none; bearer (static tokens); smart (SMART Backend Services token endpoint)")
    ] = "none",
    auth_config: Annotated[
        Path | None, typer.Option(help="JSON file: bearer_tokens, clients (JWKS), secret_clients, token_lifetime")
    ] = None,
    profile: Annotated[
        str | None, typer.Option(help="Behave like a real server: hapi (pages 20/200, 1000 includes) or epic")
    ] = None,
    require_patient: Annotated[
        bool | None, typer.Option(help="Epic: clinical searches need patient (Observation also code or category)")
    ] = None,
    include_limit: Annotated[
        int | None, typer.Option(min=1, help="At most N _include/_revinclude resources per page (Microsoft: 100)")
    ] = None,
    stop_at_stdin_eof: Annotated[
        bool, typer.Option(hidden=True, help="Stop when stdin closes (a parent that dies closes it)")
    ] = False,
) -> None:
    """Serve the FHIR R4 API at http://HOST:PORT/fhir (sessions at /sessions/{id}/fhir)."""
    import uvicorn

    from ..fhir_server import ServerSettings, create_app
    from ..fhir_server.settings import AuthConfig

    try:
        target = database or str(resolve_population(population, console))
    except (ValueError, FileNotFoundError) as exc:
        raise fail(str(exc)) from None
    given = {
        "database": target,
        "public_url": public_url,
        "auth": auth,
        "default_page_size": default_page_size,
        "max_page_size": max_page_size,
        "profile": profile,
        "require_patient": require_patient,
        "include_limit": include_limit,
    }
    try:
        settings = ServerSettings.model_validate(
            {k: v for k, v in given.items() if v is not None}  # unset: the profile's, or the default
            | {"auth_config": AuthConfig.from_file(auth_config) if auth_config else AuthConfig()}
        )
        app_ = create_app(settings)
    except ValueError as exc:  # pydantic's ValidationError is one
        raise fail(f"bad server settings: {exc}") from None
    stale = 0 if keep_sessions else app_.state.repository.reset_sessions()
    console.print(f"FHIR R4 server on [bold]http://{host}:{port}/fhir[/bold]  (database: {target})", highlight=False)
    if settings.auth != "none":
        where = f"; token endpoint http://{host}:{port}/auth/token" if settings.auth == "smart" else ""
        console.print(f"auth: {settings.auth}{where}", highlight=False)
    if stale:
        console.print(f"cleared {stale} session(s) left by an earlier run")
    if stop_at_stdin_eof:
        _stop_at_stdin_eof()
    uvicorn.run(app_, host=host, port=port, log_level=log_level)


def _stop_at_stdin_eof() -> None:
    """Stop (as on Ctrl-C) once stdin reaches its end: a run's server processes then go with the run, even one
    killed with -9, whose end of the pipe the system closes."""

    def watch() -> None:
        sys.stdin.buffer.read()
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="stdin-watch", daemon=True).start()


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

    from ..graders.values import ValuesUnavailable
    from ..grading import SetupError
    from ..mcp_server import SessionError, default_state_dir, serve_mcp
    from ..targets import TargetError

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

    from ..mcp_server import SessionError, default_state_dir, grade_session
    from ..targets import TargetError

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
