"""The terminal report of a run: pass@1 with its Wilson interval overall and per category, pass^k/pass@k with
several trials, how episodes ended, tokens and cost."""

from __future__ import annotations

from rich.table import Table

from .stats import Comparison, Rate, RunStats

__all__ = ["comparison_table", "stats_summary", "stats_table"]


def _rate(rate: Rate) -> str:
    return f"{rate.rate:6.1%}  [{rate.low:.1%}, {rate.high:.1%}]"


def stats_table(stats: RunStats, title: str = "Results") -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("category")
    table.add_column("passed", justify="right")
    table.add_column("pass@1  [95% CI]", justify="right")
    for category, rate in stats.categories.items():
        table.add_row(category, f"{rate.passed}/{rate.n}", _rate(rate))
    table.add_section()
    table.add_row(
        "[bold]overall[/bold]", f"{stats.overall.passed}/{stats.overall.n}", f"[bold]{_rate(stats.overall)}[/bold]"
    )
    if stats.trials > 1:
        for k in sorted(stats.pass_hat_k):
            table.add_row(f"pass^{k} / pass@{k}", "", f"{stats.pass_hat_k[k]:.1%} / {stats.pass_at_k[k]:.1%}")
    return table


def stats_summary(stats: RunStats) -> str:
    """One line under the table: how episodes ended, infrastructure errors (not scored), tokens and cost."""
    endings = ", ".join(f"{name} {count}" for name, count in sorted(stats.terminations.items()))
    line = f"{stats.episodes} episodes ({endings}); not scored (infrastructure errors): {stats.infrastructure_errors}"
    if stats.input_tokens or stats.output_tokens:
        line += f"; tokens {stats.input_tokens:,} in / {stats.output_tokens:,} out"
    if stats.cost is not None:
        line += f"; cost ${stats.cost:.2f}"
    return line


def comparison_table(result: Comparison, name_a: str, name_b: str) -> Table:
    table = Table(title=f"{name_b} vs {name_a}, paired by scenario", title_justify="left")
    for column in ("scenarios", name_a, name_b, "difference  [95% CI]", f"{name_b} better", f"{name_a} better"):
        table.add_column(column, justify="right")
    table.add_row(
        str(result.scenarios),
        f"{result.mean_a:.1%}",
        f"{result.mean_b:.1%}",
        f"{result.difference:+.1%}  [{result.low:+.1%}, {result.high:+.1%}]",
        str(result.b_better),
        str(result.a_better),
    )
    return table
