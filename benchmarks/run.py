"""Run the benchmark suite: ``python -m benchmarks [--quick]`` from the repository root.

Generates a synthetic population, bulk-loads it into a fresh SQLite file, starts the real server on it in a
subprocess, measures latency, throughput and session costs over HTTP (and sessions through the Python API),
prints a table against the targets and writes ``benchmarks/results/latest.json``.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from .dataset import DATASET_NOW, generate, transaction_bundles
from .ingest import BulkIngest, HttpIngest, bulk_ingest, http_transactions
from .latency import Timed, run_concurrent, run_sequential
from .report import CodeVersion, Machine, Report, RunConfig, print_table
from .server import ServerFailed, running_server
from .sessions import PHASES, CycleTimes, http_cycles, repository_cycles
from .stats import summarize
from .targets import metrics
from .workload import QUERY_KINDS, Workload

__all__ = ["main"]

RESULTS = Path(__file__).resolve().parent / "results"

_WARMUP_PER_KIND = 20
_METADATA_REQUESTS = 30  # the CapabilityStatement is large; a few samples are enough for a baseline


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=100, help="patients in the population (default 100)")
    parser.add_argument(
        "--observations-per-patient", type=int, default=1000, help="Observations per patient (default 1000)"
    )
    parser.add_argument("--seed", type=int, default=20250601, help="seed of the data and of the request mix")
    parser.add_argument("--requests", type=int, default=300, help="timed requests per query kind, one client")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent clients (default 16)")
    parser.add_argument("--requests-per-client", type=int, default=40, help="requests per concurrent client")
    parser.add_argument("--session-cycles", type=int, default=40, help="timed session life cycles per setting")
    parser.add_argument(
        "--transaction-resources", type=int, default=2000, help="resources POSTed in transaction Bundles"
    )
    parser.add_argument("--bundle-size", type=int, default=100, help="entries per transaction Bundle")
    parser.add_argument(
        "--quick", action="store_true", help="a small smoke run (about 20 s); overrides the size and count options"
    )
    parser.add_argument("--output", type=Path, default=RESULTS / "latest.json", help="where the JSON goes")
    parser.add_argument(
        "--keep-databases", action="store_true", help="keep the SQLite files (for profiling) and print where"
    )
    return parser


def _config(args: argparse.Namespace) -> RunConfig:
    if args.quick:
        return RunConfig(
            patients=10,
            observations_per_patient=100,
            seed=args.seed,
            requests_per_kind=50,
            concurrency=4,
            requests_per_client=12,
            session_cycles=10,
            transaction_resources=200,
            bundle_size=50,
            small_patients=2,
            small_observations_per_patient=20,
            quick=True,
        )
    return RunConfig(
        patients=args.patients,
        observations_per_patient=args.observations_per_patient,
        seed=args.seed,
        requests_per_kind=args.requests,
        concurrency=args.concurrency,
        requests_per_client=args.requests_per_client,
        session_cycles=args.session_cycles,
        transaction_resources=args.transaction_resources,
        bundle_size=args.bundle_size,
        small_patients=2,
        small_observations_per_patient=20,
        quick=False,
    )


def _check_config(config: RunConfig) -> str | None:
    """A message naming the first option that is out of range, or None."""
    for name in (
        "patients",
        "observations_per_patient",
        "requests_per_kind",
        "concurrency",
        "requests_per_client",
        "session_cycles",
        "transaction_resources",
        "bundle_size",
    ):
        if getattr(config, name) < 1:
            option = "--requests" if name == "requests_per_kind" else f"--{name.replace('_', '-')}"
            return f"{option} must be at least 1, not {getattr(config, name)}"
    return None


@dataclass
class _Collected:
    """What the stages measured so far; a stage that fails leaves its part empty and says why."""

    bulk: BulkIngest | None = None
    http_ingest: HttpIngest | None = None
    loaded_session_delete_ms: float | None = None
    single: dict[str, Timed] = field(default_factory=dict)
    concurrent: dict[str, Timed] = field(default_factory=dict)
    concurrent_wall_s: float | None = None
    sessions: dict[str, CycleTimes] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


class _Steps:
    """Progress lines on stderr (the table alone goes to stdout); a failing step is recorded, not fatal."""

    def __init__(self, console: Console, total: int, collected: _Collected):
        self.console = console
        self.total = total
        self.done = 0
        self.collected = collected

    @contextmanager
    def step(self, what: str, fatal: bool = False) -> Iterator[None]:
        self.done += 1
        self.console.print(f"[{self.done}/{self.total}] {what} …")
        start = time.perf_counter()
        try:
            yield
        except Exception as exc:  # the server is work in progress: report the failure, measure the rest
            if fatal:
                raise
            self.collected.failures.append(f"{what}: {type(exc).__name__}: {exc}")
            self.console.print(f"[red]      failed:[/red] {type(exc).__name__}: {exc}")
            return
        self.console.print(f"      done in {time.perf_counter() - start:.1f} s")


def run(config: RunConfig, workdir: Path, progress: Console) -> Report:
    started_at = datetime.now(UTC)
    load_average = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    started = time.perf_counter()
    got = _Collected()
    steps = _Steps(progress, 7, got)

    with steps.step(
        f"generating {config.patients} patients x {config.observations_per_patient} Observations (seed {config.seed})",
        fatal=True,
    ):
        full = generate(config.patients, config.observations_per_patient, config.seed)
        small = generate(config.small_patients, config.small_observations_per_patient, config.seed)
        population, small_population = full.counts(), small.counts()
        tx_bundles = list(transaction_bundles(config.transaction_resources, config.bundle_size, config.seed))

    full_db, small_db = workdir / "full.db", workdir / "small.db"
    with steps.step(f"bulk-loading {len(full.resources):,} resources into a fresh SQLite file", fatal=True):
        got.bulk = bulk_ingest(full_db, full.resources, workers=os.cpu_count() or 1)
        bulk_ingest(small_db, small.resources)
        full.resources.clear()  # the summaries are all the rest of the run needs
        progress.print(f"      {got.bulk.rate:,.0f} resources/s; database {got.bulk.database_bytes / 2**20:,.0f} MiB")

    workload = Workload(full.patients, random.Random(f"{config.seed}:workload"))
    patients = {"full": full.patients, "small": small.patients}
    try:
        with (
            running_server(full_db, workdir / "server-full.log") as origin,
            running_server(small_db, workdir / "server-small.log") as small_origin,
        ):
            fhir = f"{origin}/fhir"
            with steps.step(f"single client: {config.requests_per_kind} requests per query kind"):
                _single_client(origin, fhir, workload, config, got.single)
            with steps.step(f"{config.concurrency} concurrent clients x {config.requests_per_client} requests"):
                per_client = [workload.mixed(config.requests_per_client) for _ in range(config.concurrency)]
                got.concurrent, got.concurrent_wall_s = run_concurrent(fhir, per_client)
            with steps.step(f"sessions over HTTP: {config.session_cycles} cycles, full and small populations"):
                origins = {"full": origin, "small": small_origin}
                cycles = http_cycles(origins, patients, config.session_cycles, config.seed)
                got.sessions.update({f"HTTP {setting}": times for setting, times in cycles.items()})
            with steps.step(f"{config.transaction_resources:,} resources in transaction Bundles, in a session"):
                got.http_ingest, got.loaded_session_delete_ms = _transactions(origin, tx_bundles)
    except ServerFailed as exc:
        got.failures.append(f"a server did not start: {exc}")
        progress.print(f"[red]a server did not start:[/red] {exc}")

    with steps.step(f"sessions through the Python API: {config.session_cycles} cycles, full and small populations"):
        databases = {"full": full_db, "small": small_db}
        cycles = repository_cycles(databases, patients, config.session_cycles, config.seed)
        got.sessions.update({f"API {setting}": times for setting, times in cycles.items()})

    return _report(config, got, population, small_population, started_at, load_average, started, progress)


def _report(
    config: RunConfig,
    got: _Collected,
    population: dict[str, int],
    small_population: dict[str, int],
    started_at: datetime,
    load_average: float | None,
    started: float,
    progress: Console,
) -> Report:
    single = {kind: summarize(t.samples_ns) for kind, t in got.single.items() if t.samples_ns}
    concurrent = {
        kind: summarize(got.concurrent[kind].samples_ns)
        for kind in QUERY_KINDS
        if kind in got.concurrent and got.concurrent[kind].samples_ns
    }
    all_concurrent = [s for t in got.concurrent.values() for s in t.samples_ns]
    if all_concurrent:
        concurrent["all kinds"] = summarize(all_concurrent)
    throughput = len(all_concurrent) / got.concurrent_wall_s if got.concurrent_wall_s else None
    sessions = {
        name: {phase: summarize(cycles.samples_ns[phase]) for phase in PHASES}
        for name, cycles in got.sessions.items()
        if cycles.samples_ns["whole"]
    }
    timed = [*got.single.values(), *got.concurrent.values()]
    for t in timed:
        if t.first_error:
            progress.print(f"[red]a request failed:[/red] {t.first_error}")
    return Report(
        started_at=started_at.isoformat(timespec="seconds"),
        duration_s=time.perf_counter() - started,
        machine=Machine(
            platform=platform.platform(),
            python=platform.python_version(),
            sqlite=sqlite3.sqlite_version,
            cpus=os.cpu_count(),
            load_average_1m=load_average,
        ),
        code=_code_version(),
        config=config,
        population=population,
        small_population=small_population,
        metrics=metrics(
            config,
            got.bulk,
            got.http_ingest,
            got.loaded_session_delete_ms,
            single,
            concurrent,
            throughput,
            sessions,
            sum(t.errors for t in timed),
            len(got.failures),
            (sum(population.values()), sum(small_population.values())),
        ),
        failures=got.failures,
        bulk_ingest=got.bulk,
        http_ingest=got.http_ingest,
        latency_single_client=single,
        latency_concurrent=concurrent,
        concurrent_wall_s=got.concurrent_wall_s,
        empty_searchsets={kind: t.empty for kind, t in got.single.items()},
        sessions=sessions,
    )


def _code_version() -> CodeVersion:
    """The commit and the server's uncommitted changes, read with git (read-only) when it is there."""
    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--", "fhir_server") or ""
    modified = [line[3:] for line in status.splitlines() if line.strip()]
    return CodeVersion(commit=commit.strip() if commit else None, modified_server_files=modified)


def _single_client(origin: str, fhir: str, workload: Workload, config: RunConfig, out: dict[str, Timed]) -> None:
    """Fills ``out`` kind by kind, so that a failure part-way keeps what was measured."""
    n = config.requests_per_kind
    out["HTTP floor (GET /sessions/default)"] = run_sequential(
        origin, ["sessions/default"] * n, ["sessions/default"] * 5
    )
    out["GET /fhir/metadata"] = run_sequential(fhir, ["metadata"] * _METADATA_REQUESTS, ["metadata"] * 3)
    for kind in QUERY_KINDS:
        out[kind] = run_sequential(fhir, workload.urls(kind, n), workload.urls(kind, _WARMUP_PER_KIND))


def _transactions(origin: str, bundles: list[list[dict[str, Any]]]) -> tuple[HttpIngest, float]:
    """POST the Bundles into a session of their own, then delete it; returns the ingest and that delete's ms."""
    session_id = f"bench-transactions-{random.getrandbits(32):08x}"
    created = httpx.post(f"{origin}/sessions", json={"id": session_id, "now": DATASET_NOW.isoformat()}, timeout=60)
    if created.status_code != 201:
        raise RuntimeError(f"POST /sessions answered {created.status_code}: {created.text[:300]}")
    try:
        result = http_transactions(created.json()["fhir_base_url"], bundles)
    finally:
        start = time.perf_counter_ns()
        deleted = httpx.delete(f"{origin}/sessions/{session_id}", timeout=120)
        elapsed_ms = (time.perf_counter_ns() - start) / 1e6
    if deleted.status_code != 204:
        raise RuntimeError(f"DELETE /sessions/{session_id} answered {deleted.status_code}: {deleted.text[:300]}")
    return result, elapsed_ms


def _exit_on_sigterm(_signum: int, _frame: object) -> None:
    sys.exit(143)  # unwinds through the finally blocks: the server subprocesses are terminated


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    args = _parser().parse_args(argv)
    config = _config(args)
    progress = Console(stderr=True)
    problem = _check_config(config)
    if problem:
        progress.print(f"[red]error:[/red] {problem}")
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="fhir-bench-"))
    try:
        report = run(config, workdir, progress)
    except Exception as exc:  # generation or the bulk load failed: nothing else can be measured
        progress.print(f"[red]the benchmark could not finish:[/red] {type(exc).__name__}: {exc}")
        return 1
    finally:
        if args.keep_databases:
            progress.print(f"databases and server logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    console = Console()
    if not console.is_terminal:
        console = Console(width=110)  # a file or a pipe: wide enough that rows do not wrap
    print_table(report, console)
    report.write(args.output)
    progress.print(f"results written to {args.output}")
    return 0
