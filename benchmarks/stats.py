"""Latency samples and their summary (percentiles by linear interpolation, as numpy's default)."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, Field

__all__ = ["Latency", "percentile", "summarize"]


class Latency(BaseModel):
    """A summary of latency samples, in milliseconds."""

    count: int = Field(description="Number of timed samples")
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float


def percentile(ordered: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of already sorted ``ordered``."""
    if not ordered:
        raise ValueError("no samples")
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(samples_ns: Sequence[int]) -> Latency:
    """Summarize durations measured with ``time.perf_counter_ns``."""
    ordered = sorted(s / 1e6 for s in samples_ns)
    return Latency(
        count=len(ordered),
        p50_ms=percentile(ordered, 50),
        p90_ms=percentile(ordered, 90),
        p99_ms=percentile(ordered, 99),
        mean_ms=sum(ordered) / len(ordered),
        max_ms=ordered[-1],
    )
