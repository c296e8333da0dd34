"""Populations as the CLI sees them: names, the default one (built on first use), and summaries."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import Engine, func, select

from .fhir_server import BASE_SESSION, make_engine
from .fhir_server.jsonio import loads_stored
from .fhir_server.storage.schema import resources
from .fixtures import (
    COVERAGE_TYPES,
    GENERATOR_VERSION,
    PatientCount,
    PopulationOptions,
    build_population,
    coverage,
    population_path,
)

__all__ = [
    "DEFAULT_POPULATION",
    "SUITES_PATIENTS",
    "SUITES_POPULATION",
    "build_generated",
    "coverage_table",
    "generated_name",
    "open_population",
    "resolve_population",
    "stored_coverage",
    "type_counts",
]

DEFAULT_POPULATION = "default"
# The bundled suites use the first 30 patients of the default population (patients are generated independently,
# so a smaller population is a prefix of a larger one): enough to validate and test them quickly.
SUITES_POPULATION = "suites"
SUITES_PATIENTS = 30


def generated_name(options: PopulationOptions) -> str:
    """The cache name of a generated population: keyed by generator version and every option."""
    now = options.now.strftime("%Y%m%dT%H%M%SZ")
    return f"generated-v{GENERATOR_VERSION}-p{options.patients}-s{options.seed}-y{options.years}-{now}"


def build_generated(patients: int, seed: int, name: str | None, force: bool, console: Console) -> Path:
    """Build (unless cached) the generated population of these options; returns its file. Processes that ask
    for the same population at once (test workers, two servers) wait for one build instead of each building."""
    options = PopulationOptions(patients=patients, seed=seed)
    path = population_path(name or generated_name(options))
    if path.exists() and not force:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(path.with_name(path.name + ".lock")):
        if path.exists() and not force:
            return path  # another process built it while we waited
        _build(options, path, console)
    return path


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """A cross-process lock (POSIX flock; elsewhere no lock, and a concurrent build only costs time: each build
    writes a temporary file and renames it into place)."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build(options: PopulationOptions, path: Path, console: Console) -> None:
    columns = (TextColumn("building population"), BarColumn(), MofNCompleteColumn(), TextColumn("patients"),
               TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("build", total=options.patients)
        report = build_population(options, path, progress=lambda done, total: progress.update(task, completed=done))
    console.print(f"built {report.resources:,} resources for {report.patients} patients into {path}")


def resolve_population(name: str, console: Console) -> Path:
    """The file of population ``name``; ``default`` is built on first use.

    Raises:
        FileNotFoundError: a named population that was never built or imported.
    """
    if name == DEFAULT_POPULATION:
        return build_generated(PopulationOptions().patients, PopulationOptions().seed, None, False, console)
    if name == SUITES_POPULATION:
        return build_generated(SUITES_PATIENTS, PopulationOptions().seed, None, False, console)
    path = population_path(name)
    if not path.exists():
        raise FileNotFoundError(f"no population {name!r}; build or import it first (fhir-sandbox population list)")
    return path


def open_population(name: str, console: Console) -> Engine:
    return make_engine(resolve_population(name, console))


def type_counts(engine: Engine) -> dict[str, int]:
    """Resources per type in the base population."""
    query = (
        select(resources.c.type, func.count())
        .where(resources.c.session == BASE_SESSION, resources.c.deleted.is_(False))
        .group_by(resources.c.type)
    )
    with engine.connect() as conn:
        return {row[0]: row[1] for row in conn.execute(query)}


def stored_coverage(engine: Engine) -> list[PatientCount]:
    """The coverage rows (``fixtures.coverage``) of the population stored in ``engine``, at the reference now."""
    return coverage(_stored(engine, COVERAGE_TYPES), PopulationOptions().now)


def coverage_table(engine: Engine) -> Table | None:
    """The key-lab coverage table of the population (what scenarios can rely on)."""
    now = PopulationOptions().now
    rows = stored_coverage(engine)
    if not rows:
        return None
    table = Table(title=f"Coverage at {now.isoformat()} (patients per criterion)")
    for column in ("topic", "criterion", "patients", "examples"):
        table.add_column(column, justify="right" if column == "patients" else "left")
    for row in rows:
        table.add_row(row.topic, row.criterion, str(row.patients), ", ".join(row.examples))
    return table


def _stored(engine: Engine, types: tuple[str, ...]) -> Any:
    query = select(resources.c.content).where(
        resources.c.session == BASE_SESSION, resources.c.deleted.is_(False), resources.c.type.in_(types)
    )
    with engine.connect() as conn:
        for row in conn.execute(query):
            yield loads_stored(row.content)
