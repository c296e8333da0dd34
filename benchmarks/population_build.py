"""A cold build of the default population: wall time, CPU and peak memory of the whole process tree.

    python -m benchmarks.population_build [--patients 100] [--runs 1]

Runs ``fhir-sandbox population build`` (the console script of this environment) with an empty cache directory,
so that nothing is reused, and samples the memory of the builder and of its worker processes every 50 ms (Linux:
it reads /proc). The peak is the largest sum over the tree at one sample: pages that forked workers share with the
builder count twice, so it errs high. Targets (issue 4): ≤ 60 s and ≤ 2 GiB for the default 100 patients.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

_GIB = 1024**3
_WALL_TARGET_S = 60.0
_MEMORY_TARGET_BYTES = 2 * _GIB


@dataclass(frozen=True)
class Build:
    wall_s: float
    user_s: float
    system_s: float
    peak_tree_bytes: int
    peak_process_bytes: int


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:  # the process ended meanwhile
            continue
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])  # the name, in parentheses, may hold spaces
        tree.setdefault(parent, []).append(int(entry.name))
    return tree


def _rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _sample(root: int, done: threading.Event, peaks: list[int]) -> None:
    """Keep in ``peaks`` the largest [tree sum, single process] RSS seen until ``done``."""
    while not done.wait(0.05):
        tree, pending, sizes = _children(), [root], []
        while pending:
            pid = pending.pop()
            sizes.append(_rss_bytes(pid))
            pending.extend(tree.get(pid, ()))
        peaks[0], peaks[1] = max(peaks[0], sum(sizes)), max(peaks[1], max(sizes))


def build_once(patients: int) -> Build:
    cli = Path(sys.executable).parent / "fhir-sandbox"
    with tempfile.TemporaryDirectory(prefix="population-build-") as cache:
        env = os.environ | {"XDG_CACHE_HOME": cache}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        process = subprocess.Popen(
            [str(cli), "population", "build", "--patients", str(patients)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        peaks, done = [0, 0], threading.Event()
        sampler = threading.Thread(target=_sample, args=(process.pid, done, peaks), daemon=True)
        sampler.start()
        _, errors = process.communicate()
        wall = time.perf_counter() - started
        done.set()
        sampler.join()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the build and every worker it waited for
        if process.returncode != 0:
            raise SystemExit(f"the build failed ({process.returncode}):\n{errors.decode(errors='replace')}")
    return Build(wall, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime, peaks[0], peaks[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=100)
    parser.add_argument("--runs", type=int, default=1, help="cold builds, one after the other")
    args = parser.parse_args()
    print(f"cold build of {args.patients} patients on {os.cpu_count()} cores, {args.runs} run(s)")
    for run in range(1, args.runs + 1):
        build = build_once(args.patients)
        met = build.wall_s <= _WALL_TARGET_S and build.peak_tree_bytes <= _MEMORY_TARGET_BYTES
        print(
            f"run {run}: {build.wall_s:5.1f} s wall, {build.user_s:5.1f} s user + {build.system_s:4.1f} s system CPU, "
            f"peak memory {build.peak_tree_bytes / _GIB:.2f} GiB (all processes; largest one "
            f"{build.peak_process_bytes / _GIB:.2f} GiB)"
            + (
                f"  [targets ≤ {_WALL_TARGET_S:.0f} s, ≤ 2 GiB: {'met' if met else 'NOT met'}]"
                if args.patients == 100
                else ""
            )
        )


if __name__ == "__main__":
    main()
