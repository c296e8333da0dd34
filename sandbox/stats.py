"""Statistics of a run: pass@1 with Wilson 95% intervals (overall and per category), pass^k and pass@k with k
trials, and the paired comparison of two runs (per-scenario differences, bootstrap interval over scenarios).
Infrastructure errors are not scores and are left out (and counted)."""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

from pydantic import BaseModel, Field

from .episode import EpisodeResult, Termination

__all__ = ["Comparison", "Rate", "RunStats", "compare_runs", "pass_at_k", "pass_hat_k", "run_stats", "wilson"]

Z95 = 1.959964


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (good for small n and rates near 0 or 1)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Chance that at least one of k trials drawn from n (c correct) passes."""
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def pass_hat_k(n: int, c: int, k: int) -> float:
    """Chance that all k trials drawn from n (c correct) pass: reliability."""
    return math.comb(c, k) / math.comb(n, k) if n >= k else 0.0


class Rate(BaseModel):
    passed: int
    n: int
    rate: float
    low: float
    high: float

    @classmethod
    def of(cls, passed: int, n: int) -> Rate:
        low, high = wilson(passed, n)
        return cls(passed=passed, n=n, rate=passed / n if n else 0.0, low=low, high=high)


class RunStats(BaseModel):
    episodes: int
    scored: int
    infrastructure_errors: int
    overall: Rate
    categories: dict[str, Rate]
    trials: int
    pass_hat_k: dict[int, float] = Field(default_factory=dict, description="k -> mean over scenarios")
    pass_at_k: dict[int, float] = Field(default_factory=dict)
    terminations: dict[str, int]
    input_tokens: int
    output_tokens: int
    cost: float | None
    seconds_p50: float


def run_stats(results: Sequence[EpisodeResult]) -> RunStats:
    scored = [r for r in results if r.score is not None]
    passed = sum(r.score == 1.0 for r in scored)
    by_category: dict[str, list[EpisodeResult]] = defaultdict(list)
    by_scenario: dict[str, list[EpisodeResult]] = defaultdict(list)
    for result in scored:
        by_category[result.category].append(result)
        by_scenario[result.scenario_id].append(result)
    trials = min((len(v) for v in by_scenario.values()), default=0)
    hat, at = {}, {}
    for k in range(1, trials + 1):
        hat[k] = _mean(pass_hat_k(len(v), sum(r.score == 1.0 for r in v), k) for v in by_scenario.values())
        at[k] = _mean(pass_at_k(len(v), sum(r.score == 1.0 for r in v), k) for v in by_scenario.values())
    costs = [r.cost for r in results if r.cost is not None]
    seconds = sorted(r.seconds for r in results)
    return RunStats(
        episodes=len(results),
        scored=len(scored),
        infrastructure_errors=sum(r.termination == Termination.INFRASTRUCTURE_ERROR for r in results),
        overall=Rate.of(passed, len(scored)),
        categories={c: Rate.of(sum(r.score == 1.0 for r in v), len(v)) for c, v in sorted(by_category.items())},
        trials=trials,
        pass_hat_k=hat,
        pass_at_k=at,
        terminations=dict(Counter(str(r.termination) for r in results)),
        input_tokens=sum(r.input_tokens for r in results),
        output_tokens=sum(r.output_tokens for r in results),
        cost=sum(costs) if costs else None,
        seconds_p50=seconds[len(seconds) // 2] if seconds else 0.0,
    )


class Comparison(BaseModel):
    scenarios: int = Field(description="Scenarios scored in both runs.")
    mean_a: float
    mean_b: float
    difference: float = Field(description="mean(b) - mean(a) over the shared scenarios")
    low: float
    high: float
    b_better: int = Field(description="Scenarios where b scored higher")
    a_better: int


def compare_runs(a: Sequence[EpisodeResult], b: Sequence[EpisodeResult], resamples: int = 4000) -> Comparison:
    """Paired by scenario (each scenario's mean score over its trials); the 95% interval of the difference is a
    bootstrap over scenarios (seeded: the same runs always give the same interval)."""
    mean_a, mean_b = _per_scenario(a), _per_scenario(b)
    shared = sorted(set(mean_a) & set(mean_b))
    diffs = [mean_b[s] - mean_a[s] for s in shared]
    rng = random.Random(0)
    boot = sorted(_mean(rng.choice(diffs) for _ in diffs) for _ in range(resamples)) if diffs else [0.0]
    return Comparison(
        scenarios=len(shared),
        mean_a=_mean(mean_a[s] for s in shared),
        mean_b=_mean(mean_b[s] for s in shared),
        difference=_mean(diffs),
        low=boot[int(0.025 * (len(boot) - 1))],
        high=boot[int(0.975 * (len(boot) - 1))],
        b_better=sum(d > 0 for d in diffs),
        a_better=sum(d < 0 for d in diffs),
    )


def _per_scenario(results: Iterable[EpisodeResult]) -> dict[str, float]:
    scores: dict[str, list[float]] = defaultdict(list)
    for result in results:
        if result.score is not None:
            scores[result.scenario_id].append(result.score)
    return {s: sum(v) / len(v) for s, v in scores.items()}


def _mean(values: Iterable[float]) -> float:
    items = list(values)
    return sum(items) / len(items) if items else 0.0
