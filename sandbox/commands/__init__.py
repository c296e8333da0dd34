"""The ``fhir-sandbox`` command line, one module per group of commands; ``fhir_sandbox.cli`` assembles them."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape

__all__ = ["app", "console", "fail", "population_app", "scenarios_app"]

app = typer.Typer(help="FHIR Agent Sandbox: a FHIR R4 EHR for evaluating LLM agents.", no_args_is_help=True)
population_app = typer.Typer(help="Build, import, export and inspect patient populations.", no_args_is_help=True)
app.add_typer(population_app, name="population")
scenarios_app = typer.Typer(help="Check and list scenario files and suites.", no_args_is_help=True)
app.add_typer(scenarios_app, name="scenarios")
console = Console()


@app.callback()
def _root() -> None:
    """FHIR Agent Sandbox: a FHIR R4 EHR for evaluating LLM agents."""


def fail(message: str) -> typer.Exit:
    """Print one error line and return the exit to raise (code 2)."""
    # escaped: messages hold brackets ("pip install 'fhir-sandbox[openai]'") that rich would take for markup
    console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code=2)
