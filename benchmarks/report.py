"""The results: metrics with their targets, the rich table, and the JSON file."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, computed_field
from rich.console import Console
from rich.table import Table

from .ingest import BulkIngest, HttpIngest
from .stats import Latency

__all__ = ["CodeVersion", "Machine", "Metric", "Report", "RunConfig", "print_table"]

Unit = Literal["ms", "/s", "s", "count"]


class Metric(BaseModel):
    """One row of the table: a measured value, and the target it must meet if it has one."""

    group: str
    name: str
    value: float
    unit: Unit
    target: float | None = None
    better: Literal["lower", "higher"] = "lower"
    vs_baseline: float | None = Field(None, description="value / the baseline's (a read by id) p50, for latencies")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def passed(self) -> bool | None:
        if self.target is None:
            return None
        return self.value <= self.target if self.better == "lower" else self.value >= self.target


class Machine(BaseModel):
    platform: str
    python: str
    sqlite: str
    cpus: int | None
    load_average_1m: float | None = Field(description="At the start: other work on the machine skews the figures")


class CodeVersion(BaseModel):
    """What was measured: the commit, and the server files that differed from it (work in progress)."""

    commit: str | None
    modified_server_files: list[str]


class RunConfig(BaseModel):
    """The options of a run (the command line)."""

    patients: int
    observations_per_patient: int
    seed: int
    requests_per_kind: int
    concurrency: int
    requests_per_client: int
    session_cycles: int
    transaction_resources: int
    bundle_size: int
    small_patients: int
    small_observations_per_patient: int
    quick: bool


class Report(BaseModel):
    """Everything a run measured; ``benchmarks/results/latest.json`` holds one of these."""

    started_at: str
    duration_s: float
    machine: Machine
    code: CodeVersion
    config: RunConfig
    population: dict[str, int] = Field(description="Resources per type in the full population")
    small_population: dict[str, int]
    metrics: list[Metric]
    failures: list[str] = Field(description="Stages that did not finish, and why")
    bulk_ingest: BulkIngest | None
    http_ingest: HttpIngest | None
    latency_single_client: dict[str, Latency] = Field(description="By query kind (and the baselines)")
    latency_concurrent: dict[str, Latency]
    concurrent_wall_s: float | None
    empty_searchsets: dict[str, int] = Field(description="Searches that matched nothing, by kind (single client)")
    sessions: dict[str, dict[str, Latency]] = Field(description="'<path> <population>' -> phase -> latency")

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.model_dump_json(indent=2) + "\n")


def _format(value: float, unit: Unit) -> str:
    if unit == "ms":
        return f"{value:.2f} ms"
    if unit == "/s":
        return f"{value:,.0f} /s"
    if unit == "s":
        return f"{value:.2f} s"
    return f"{value:,.0f}"


def print_table(report: Report, console: Console) -> None:
    table = Table(
        title=f"FHIR server benchmarks: {sum(report.population.values()):,} resources, {report.machine.cpus} CPUs",
        title_justify="left",
    )
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    table.add_column("x read p50", justify="right")
    table.add_column("result", justify="center")
    group = None
    for metric in report.metrics:
        if metric.group != group:
            if group is not None:
                table.add_section()
            table.add_row(f"[bold]{metric.group}[/bold]", end_section=False)
            group = metric.group
        target = "—"
        if metric.target is not None:
            target = ("≤ " if metric.better == "lower" else "≥ ") + _format(metric.target, metric.unit)
        result = {True: "[green]pass[/green]", False: "[red]FAIL[/red]", None: "[dim]info[/dim]"}[metric.passed]
        ratio = f"{metric.vs_baseline:.1f}x" if metric.vs_baseline is not None else ""
        table.add_row(f"  {metric.name}", _format(metric.value, metric.unit), target, ratio, result)
    console.print(table)
    judged = [m for m in report.metrics if m.passed is not None]
    met = sum(1 for m in judged if m.passed)
    colour = "green" if met == len(judged) else "red"
    console.print(f"[{colour}]{met} of {len(judged)} targets met[/{colour}] in {report.duration_s:.0f} s")
    for failure in report.failures:
        console.print(f"[red]did not finish:[/red] {failure}")
