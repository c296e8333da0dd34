"""The targets (2-core machine) and the table's rows: what was measured, set against what it should be."""

from __future__ import annotations

from .ingest import BulkIngest, HttpIngest
from .report import Metric, RunConfig
from .stats import Latency
from .workload import BASELINE, QUERY_KINDS

__all__ = ["BULK_RATE", "SEARCH_P50_MS", "SEARCH_P99_MS", "SESSION_OP_MS", "SESSION_SIZE_DIFFERENCE_MS", "metrics"]

SEARCH_P50_MS = 5.0
SEARCH_P99_MS = 20.0
SESSION_OP_MS = 5.0
# "independent of population size", read as: at p50, full population minus small population within 1 ms
SESSION_SIZE_DIFFERENCE_MS = 1.0
BULK_RATE = 5000.0


def metrics(
    config: RunConfig,
    bulk: BulkIngest | None,
    http_ingest: HttpIngest | None,
    loaded_session_delete_ms: float | None,
    single: dict[str, Latency],
    concurrent: dict[str, Latency],
    throughput: float | None,
    sessions: dict[str, dict[str, Latency]],
    failed_requests: int,
    failed_stages: int,
    sizes: tuple[int, int],
) -> list[Metric]:
    """The table's rows, in display order."""
    baseline = single[BASELINE].p50_ms if BASELINE in single else None

    def ratio(value: float) -> float | None:
        return value / baseline if baseline else None

    out: list[Metric] = []
    group = "ingest"
    if bulk is not None:
        out += [
            Metric(
                group=group,
                name=f"bulk_load + ANALYZE (trusted, {bulk.workers} worker processes)",
                value=bulk.rate,
                unit="/s",
                target=BULK_RATE,
                better="higher",
            ),
            Metric(group=group, name=f"bulk_load time ({bulk.resources:,} resources)", value=bulk.load_s, unit="s"),
            Metric(group=group, name="ANALYZE time", value=bulk.analyze_s, unit="s"),
        ]
    if http_ingest is not None:
        out += [
            Metric(
                group=group,
                name=f"HTTP transaction Bundles (validated, {http_ingest.resources:,} resources)",
                value=http_ingest.rate,
                unit="/s",
                better="higher",
            ),
            Metric(
                group=group,
                name=f"one Bundle of {config.bundle_size} entries p50",
                value=http_ingest.per_bundle.p50_ms,
                unit="ms",
            ),
        ]

    group = "one client, sequential"
    for kind, stats in single.items():
        if kind not in QUERY_KINDS:  # a baseline: no target
            out.append(
                Metric(group=group, name=f"{kind} p50", value=stats.p50_ms, unit="ms", vs_baseline=ratio(stats.p50_ms))
            )
            continue
        out += [
            Metric(
                group=group,
                name=f"{kind} p50",
                value=stats.p50_ms,
                unit="ms",
                target=SEARCH_P50_MS,
                vs_baseline=ratio(stats.p50_ms),
            ),
            Metric(
                group=group,
                name=f"{kind} p99",
                value=stats.p99_ms,
                unit="ms",
                target=SEARCH_P99_MS,
                vs_baseline=ratio(stats.p99_ms),
            ),
        ]

    group = f"{config.concurrency} concurrent clients, same mix"
    for kind, stats in concurrent.items():
        for label, value in (("p50", stats.p50_ms), ("p99", stats.p99_ms)):
            out.append(Metric(group=group, name=f"{kind} {label}", value=value, unit="ms", vs_baseline=ratio(value)))
    if throughput is not None:
        out.append(Metric(group=group, name="throughput", value=throughput, unit="/s", better="higher"))

    full_size, small_size = sizes
    group = f"sessions, p50 (full = {full_size:,} resources, small = {small_size:,})"
    for name, phases in sessions.items():
        out += [
            Metric(group=group, name=f"{name}: create", value=phases["create"].p50_ms, unit="ms", target=SESSION_OP_MS),
            Metric(group=group, name=f"{name}: delete", value=phases["delete"].p50_ms, unit="ms", target=SESSION_OP_MS),
            Metric(group=group, name=f"{name}: create + 10 writes + delete", value=phases["whole"].p50_ms, unit="ms"),
        ]
    for path in ("HTTP", "API"):
        full, small = sessions.get(f"{path} full"), sessions.get(f"{path} small")
        if full is None or small is None:
            continue
        for phase in ("create", "delete"):
            out.append(
                Metric(
                    group=group,
                    name=f"{path}: {phase}, full minus small",
                    value=full[phase].p50_ms - small[phase].p50_ms,
                    unit="ms",
                    target=SESSION_SIZE_DIFFERENCE_MS,
                )
            )
    if loaded_session_delete_ms is not None and http_ingest is not None:
        out.append(
            Metric(
                group=group,
                name=f"HTTP: delete a session holding {http_ingest.resources:,} writes",
                value=loaded_session_delete_ms,
                unit="ms",
            )
        )

    group = "errors"
    out += [
        Metric(group=group, name="failed requests (latency runs)", value=failed_requests, unit="count", target=0),
        Metric(group=group, name="stages that did not finish", value=failed_stages, unit="count", target=0),
    ]
    return out
