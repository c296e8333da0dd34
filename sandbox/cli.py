"""The ``fhir-sandbox`` command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from platformdirs import user_data_dir

app = typer.Typer(help="FHIR Agent Sandbox: a FHIR R4 EHR for evaluating LLM agents.", no_args_is_help=True)

DEFAULT_DATABASE = Path(user_data_dir("fhir-sandbox")) / "server.db"


@app.callback()
def _root() -> None:
    """FHIR Agent Sandbox: a FHIR R4 EHR for evaluating LLM agents."""


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind (127.0.0.1 keeps it off the network)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8080,
    database: Annotated[str, typer.Option(help="SQLite file or SQLAlchemy URL")] = str(DEFAULT_DATABASE),
    public_url: Annotated[str | None, typer.Option(help="Origin clients use, if not the request's")] = None,
    default_page_size: Annotated[int, typer.Option(help="_count when none is given")] = 20,
    max_page_size: Annotated[int, typer.Option(help="Largest _count honoured")] = 200,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
) -> None:
    """Serve the FHIR R4 API at http://HOST:PORT/fhir (sessions at /sessions/{id}/fhir)."""
    import uvicorn

    from .fhir_server.app import create_app
    from .fhir_server.settings import ServerSettings

    settings = ServerSettings(
        database=database, public_url=public_url, default_page_size=default_page_size, max_page_size=max_page_size
    )
    typer.echo(f"FHIR R4 server on http://{host}:{port}/fhir (database: {database})")
    uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level)


def main() -> None:
    app()
