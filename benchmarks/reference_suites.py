"""The reference solution of every bundled scenario, run through the real tools, server and graders: the total
time (target: 30 s for both suites on 2 cores) and per-episode p50/p99, with the do-nothing agent as a baseline.

    python -m benchmarks.reference_suites [--population NAME | --database FILE] [SUITE...]

By default it runs on the suites' own population ("suites": the first 30 patients of the default one), built if
missing.
"""

from __future__ import annotations

import argparse
import statistics
import time

import httpx
from fhir_sandbox.baselines import BASELINE_AGENTS
from fhir_sandbox.episode import run_episode
from fhir_sandbox.fhir_server import ServerSettings
from fhir_sandbox.population import SUITES_POPULATION, resolve_population
from fhir_sandbox.scenarios import load_scenarios
from fhir_sandbox.server import LocalServer
from fhir_sandbox.targets import LocalTarget
from rich.console import Console


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("suites", nargs="*", default=["core", "extended"])
    parser.add_argument("--population", default=SUITES_POPULATION, help="a population name")
    parser.add_argument("--database", default=None, help="a population file")
    args = parser.parse_args()
    console = Console()
    loaded = load_scenarios(args.suites)
    if loaded.problems:
        raise SystemExit("\n".join(map(str, loaded.problems)))
    database = args.database or str(resolve_population(args.population, console))
    console.print(f"{len(loaded.scenarios)} scenarios on {database}")
    with LocalServer(ServerSettings(database=database)) as server, httpx.Client(timeout=60) as http:
        target = LocalTarget(server.url, http)
        for name in ("reference", "do-nothing"):
            make_agent = BASELINE_AGENTS[name]
            run_episode(loaded.scenarios[0], make_agent, target, http)  # warm up connections and caches
            started = time.perf_counter()
            results = [run_episode(s, make_agent, target, http) for s in loaded.scenarios]
            total = time.perf_counter() - started
            times = sorted(r.seconds * 1000 for r in results)
            p99 = times[max(0, int(len(times) * 0.99) - 1)]
            score = sum(r.score or 0 for r in results) / len(results)
            console.print(
                f"{name:10}  total {total:6.2f} s  episode p50 {statistics.median(times):6.1f} ms  "
                f"p99 {p99:6.1f} ms  score {score:.1%}  errors {sum(r.score is None for r in results)}"
            )


if __name__ == "__main__":
    main()
