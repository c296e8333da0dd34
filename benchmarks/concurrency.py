"""Many episodes at once: what the harness costs around a slow model.

64 episodes (8 scenarios x 8 trials) run at once through ``run_batch`` (threads), each driven by LLMAgent with
a scripted model that sleeps ``--delay`` (200 ms) per turn for 3 turns (find the patient by MRN, search its
latest potassium with the id it read, finish with the value): the ideal wall time is 3 x 0.2 s = 0.6 s. Then
the same with no delay, at once and one at a time: the per-episode harness cost (session create, setup,
values, tool calls on the server, write collection, grading, session delete) without the model's sleep.

    python -m benchmarks.concurrency [--episodes 64] [--scenarios 8] [--delay 0.2] [--concurrency N]
                                     [--server thread|process]

Offline: a local server on an empty SQLite file; each scenario brings its patient in its setup.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from fhir_sandbox import episode as episode_module
from fhir_sandbox.agents.fake import ScriptedChatModel, tool_call
from fhir_sandbox.agents.llm import LLMAgent
from fhir_sandbox.connections import episode_client
from fhir_sandbox.episode import EpisodeLimits, EpisodeResult, Termination
from fhir_sandbox.fhir_server import ServerSettings, make_engine
from fhir_sandbox.runner import run_batch
from fhir_sandbox.runs import RunFolder
from fhir_sandbox.scenarios.model import Scenario
from fhir_sandbox.server import LocalServer, ServerProcesses
from fhir_sandbox.targets import LocalTarget, SessionHandle
from fhir_sandbox.templates import Templates
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from rich.console import Console
from rich.table import Table

TURNS = 3
MRN_SYSTEM = "http://hospital.example.org/fhir/sid/mrn"
NOW = "2023-11-13T10:15:00+00:00"


def scenario(index: int) -> Scenario:
    mrn, patient_id = f"B{index:07d}", f"bench-{index}"
    value = round(3.0 + index * 0.1, 1)
    return Scenario.model_validate(
        {
            "id": f"bench.k-latest.{index:02d}",
            "category": f"bench-{index % 4}",
            "title": "Latest potassium",
            "instruction": f"What is the most recent potassium of patient {mrn}, in mmol/L? Answer with the number.",
            "now": NOW,
            "patient": {"mrn": mrn},
            "setup": [
                {
                    "resourceType": "Patient",
                    "id": patient_id,
                    "identifier": [{"system": MRN_SYSTEM, "value": mrn}],
                    "birthDate": "1960-05-01",
                },
                {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "2823-3"}, {"code": "K"}]},
                    "subject": {"reference": f"Patient/{patient_id}"},
                    "effectiveDateTime": "2023-11-13T08:00:00+00:00",
                    "valueQuantity": {"value": value, "unit": "mmol/L"},
                },
            ],
            "expectations": {
                "values": {"k": {"kind": "latest", "code": "K"}},
                "checks": [
                    {"name": "answer", "type": "answer_number", "expected": {"expr": "%k.value"}},
                    {"name": "nothing_written", "type": "no_writes"},
                ],
            },
            "reward_basis": ["answer", "nothing_written"],
            "reference": {"steps": [{"tool": "finish", "args": {"answer": value}}]},
        }
    )


def script(messages: list[BaseMessage]) -> AIMessage:
    """Three turns; the second uses the patient id read from the first turn's result."""
    last = messages[-1]
    if isinstance(last, HumanMessage):
        mrn = str(last.content).split("patient ", 1)[1].split(",", 1)[0]
        return tool_call("search", resource_type="Patient", params={"identifier": mrn})
    assert isinstance(last, ToolMessage)
    found = orjson.loads(str(last.content))["entry"][0]["resource"]
    if found["resourceType"] == "Patient":
        params = {"patient": found["id"], "code": "K", "_sort": "-date", "_count": "1"}
        return tool_call("search", resource_type="Observation", params=params)
    return tool_call("finish", answer=found["valueQuantity"]["value"])


def factory(delay: float) -> Callable[[Scenario, Mapping[str, str]], LLMAgent]:
    def make(_scenario: Scenario, _variables: Mapping[str, str]) -> LLMAgent:
        return LLMAgent(ScriptedChatModel(script=script, delay=delay), "fake:sleepy")

    return make


class Phases:
    """Thread-safe totals of the harness's phases (seconds), by name."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seconds: dict[str, float] = defaultdict(float)

    def add(self, name: str, seconds: float) -> None:
        with self.lock:
            self.seconds[name] += seconds

    def timed(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.add(name, time.perf_counter() - started)

        return wrapper


class TimedTarget(LocalTarget):
    def __init__(self, origin: list[str], http: httpx.Client, phases: Phases):
        super().__init__(origin, http)
        self.phases = phases

    def open(self, now: datetime, label: str) -> SessionHandle:
        return self.phases.timed("session create", super().open)(now, label)  # type: ignore[no-any-return]

    def copy(self, handle: SessionHandle, now: datetime, label: str) -> SessionHandle:
        return self.phases.timed("session create", super().copy)(handle, now, label)  # type: ignore[no-any-return]

    def write_log(self, handle: SessionHandle) -> list[dict[str, Any]]:
        return self.phases.timed("write log", super().write_log)(handle)  # type: ignore[no-any-return]

    def close(self, handle: SessionHandle) -> None:
        self.phases.timed("session delete", super().close)(handle)


@contextmanager
def timing_episode_phases(phases: Phases) -> Iterator[None]:
    """Time the two halves of run_episode around the agent: preparing (a new session, or a copy of the
    scenario's template) and grading."""
    patched = [
        (episode_module, "prepare_episode", "prepare"),
        (episode_module, "grade_episode", "grade"),
        (Templates, "prepare", "prepare"),
    ]
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in patched]
    try:
        for owner, name, phase in patched:
            setattr(owner, name, phases.timed(phase, getattr(owner, name)))
        yield
    finally:
        for owner, name, function in originals:
            setattr(owner, name, function)


def run(
    server: Any, workdir: Path, label: str, scenarios: list[Scenario], trials: int, delay: float, at_once: int
) -> tuple[float, list[EpisodeResult], Phases]:
    phases = Phases()
    with episode_client() as http, timing_episode_phases(phases):
        folder = RunFolder(workdir / label)
        folder.path.mkdir()  # episodes.jsonl only: no manifest needed to run a batch
        cpu_before = own_cpu(), servers_cpu(server)
        started = time.perf_counter()
        results = run_batch(
            scenarios,
            factory(delay),
            TimedTarget(server.urls, http, phases),
            http,
            folder,
            trials=trials,
            concurrency=at_once,
            limits=EpisodeLimits(),
            infra_retries=0,
        )
        wall = time.perf_counter() - started
        phases.add("CPU: this process (runner)", own_cpu() - cpu_before[0])
        phases.add("CPU: server processes", servers_cpu(server) - cpu_before[1])
    return wall, results, phases


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def servers_cpu(server: LocalServer | ServerProcesses) -> float:
    """CPU seconds the server processes have used (Linux /proc; 0 for a server thread, counted as ours)."""
    total = 0.0
    for process in server.servers if isinstance(server, ServerProcesses) else ():
        assert process.process is not None
        stat = Path(f"/proc/{process.process.pid}/stat")
        if stat.exists():
            fields = stat.read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def serving(database: str, how: str, count: int) -> LocalServer | ServerProcesses:
    """LocalServer (a thread here, sharing this process's GIL with the episodes) or ``count`` server processes."""
    return LocalServer(ServerSettings(database=database)) if how == "thread" else ServerProcesses(database, count)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=64)
    parser.add_argument("--scenarios", type=int, default=8, help="distinct scenarios (episodes / scenarios trials)")
    parser.add_argument("--delay", type=float, default=0.2, help="seconds the fake model sleeps per turn")
    parser.add_argument("--concurrency", type=int, default=None, help="episodes at once (default: all)")
    parser.add_argument(
        "--server",
        choices=("thread", "process"),
        default="thread",
        help="the FHIR server in a thread of this process (what `fhir-sandbox run` does) or in its own process",
    )
    parser.add_argument("--processes", type=int, default=1, help="server processes (with --server process)")
    args = parser.parse_args(argv)
    trials = max(1, args.episodes // args.scenarios)
    at_once = args.concurrency or args.scenarios * trials
    scenarios = [scenario(i) for i in range(args.scenarios)]
    console = Console()
    if not console.is_terminal:
        console.width = max(console.width, 130)
    command = (
        f"python -m benchmarks.concurrency --episodes {args.scenarios * trials} --scenarios {args.scenarios} "
        f"--delay {args.delay:g}"
        + (f" --concurrency {args.concurrency}" if args.concurrency else "")
        + (f" --server {args.server}" if args.server != "thread" else "")
        + (f" --processes {args.processes}" if args.processes != 1 else "")
    )
    with tempfile.TemporaryDirectory(prefix="fhir-sandbox-concurrency-") as temporary:
        workdir = Path(temporary)
        database = workdir / "empty.db"
        make_engine(database).dispose()
        with serving(str(database), args.server, args.processes) as server:
            run(server, workdir, "warm-up", scenarios[:2], 1, 0.0, 2)  # connections, caches, imports
            cases = [
                (f"delay {args.delay:g} s, {at_once} at once", args.delay, at_once),
                (f"delay 0, {at_once} at once", 0.0, at_once),
                ("delay 0, 1 at a time", 0.0, 1),
            ]
            measured = [(name, delay, n, *run(server, workdir, f"case-{i}", scenarios, trials, delay, n))
                        for i, (name, delay, n) in enumerate(cases)]  # fmt: skip

    table = Table(title=f"{args.scenarios * trials} episodes ({args.scenarios} scenarios x {trials} trials), "
                  f"{TURNS} model turns each", title_justify="left")  # fmt: skip
    for column in ("case", "wall s", "ideal s", "x ideal", "passed", "errors", "episode p50 s", "p99 s",
                   "harness p50 ms", "p99 ms"):  # fmt: skip
        table.add_column(column, justify="left" if column == "case" else "right")
    failures = 0
    for name, delay, _n, wall, results, _phases in measured:
        sleeping = TURNS * delay
        ideal = sleeping * (len(results) / at_once if _n == at_once else len(results))
        overhead = [(r.seconds - sleeping) * 1000 for r in results]
        seconds = [r.seconds for r in results]
        errors = sum(r.termination != Termination.FINISHED for r in results)
        failures += errors
        table.add_row(
            name,
            f"{wall:.2f}",
            f"{ideal:.2f}" if ideal else "-",
            f"{wall / ideal:.2f}" if ideal else "-",
            f"{sum(r.score == 1.0 for r in results)}/{len(results)}",
            str(errors),
            f"{statistics.median(seconds):.3f}",
            f"{percentile(seconds, 0.99):.3f}",
            f"{statistics.median(overhead):.1f}",
            f"{percentile(overhead, 0.99):.1f}",
        )
    console.print(table)

    phases_table = Table(
        title="harness time per episode by phase (mean ms; the CPU rows: CPU ms per episode)", title_justify="left"
    )
    phases_table.add_column("phase")
    for name, *_ in measured:
        phases_table.add_column(name, justify="right")
    rows: dict[str, list[str]] = defaultdict(list)
    for _name, delay, _n, _wall, results, phases in measured:
        count = len(results)
        spent = phases.seconds
        tool_calls = sum(c.seconds for r in results for c in r.tool_calls)
        total = sum(r.seconds for r in results) - TURNS * delay * count
        known = {
            "session create": spent["session create"],
            "setup, patient, values": spent["prepare"] - spent["session create"] if "prepare" in spent else None,
            "tool calls (FHIR requests)": tool_calls,
            "write log, collect writes, grade": spent.get("grade"),
            "session delete": spent["session delete"],
        }
        rest = total - sum(v for v in known.values() if v is not None)
        cpu = [(name, spent[name]) for name in ("CPU: this process (runner)", "CPU: server processes")]
        for phase, seconds in [*known.items(), ("agent + model framework, rest", rest), ("total", total), *cpu]:
            rows[phase].append("-" if seconds is None else f"{1000 * seconds / count:.1f}")
    for phase, cells in rows.items():
        phases_table.add_row(phase, *cells)
    console.print(phases_table)
    console.print(f"errors (episodes not finished): {failures}   reproduce: {command}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
