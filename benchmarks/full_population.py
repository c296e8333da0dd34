"""The agent query mix against the real default population (794k resources), one client, p50/p99.

    python -m benchmarks.full_population [--requests 200] [--population default]

Starts ``fhir-sandbox serve`` on 127.0.0.1 (building the population first if it is not cached), warms each
query kind, then times it. Complements the main benchmark, which uses its own smaller data set.
"""

from __future__ import annotations

import argparse
import random
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

Query = tuple[str, dict[str, str] | None]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _kinds(rng: random.Random, since: str) -> dict[str, Callable[[dict[str, Any]], Query]]:
    return {
        "read": lambda p: (f"Patient/{p['id']}", None),
        "obs-latest-code": lambda p: (
            "Observation",
            {
                "patient": p["id"],
                "code": rng.choice(["K", "MG", "GLU", "NA", "http://loinc.org|2823-3"]),
                "_sort": "-date",
                "_count": "1",
            },
        ),
        "obs-vitals-24h": lambda p: (
            "Observation",
            {"patient": p["id"], "category": "vital-signs", "date": f"ge{since}"},
        ),
        "patient-name-dob": lambda p: ("Patient", {"family": p["name"][0]["family"], "birthdate": p["birthDate"]}),
        "medrequest-active": lambda p: ("MedicationRequest", {"patient": p["id"], "status": "active"}),
        "condition-all": lambda p: ("Condition", {"patient": p["id"]}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200, help="timed requests per query kind")
    parser.add_argument("--population", default="default")
    args = parser.parse_args()
    port = _free_port()
    cli = Path(sys.executable).parent / "fhir-sandbox"  # the console script of the environment running this
    command = [str(cli), "serve", "--port", str(port), "--population", args.population]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/fhir/"
    try:
        deadline = time.monotonic() + 1800  # a first run builds the population
        with httpx.Client(base_url=base, timeout=60) as client:
            while True:
                try:
                    if client.get("metadata").status_code == 200:
                        break
                except httpx.TransportError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit("the server did not start") from None
                    time.sleep(0.2)
            patients = [e["resource"] for e in client.get("Patient", params={"_count": "200"}).json()["entry"]]
            rng = random.Random(0)
            print(f"{len(patients)} patients; {args.requests} timed requests per kind, one client")
            for name, make in _kinds(rng, "2023-11-12T10:15:00+00:00").items():
                for _ in range(20):
                    path, params = make(rng.choice(patients))
                    client.get(path, params=params)
                samples = []
                for _ in range(args.requests):
                    path, params = make(rng.choice(patients))
                    start = time.perf_counter()
                    response = client.get(path, params=params)
                    samples.append((time.perf_counter() - start) * 1000)
                    response.raise_for_status()
                samples.sort()
                p99 = samples[max(0, int(len(samples) * 0.99) - 1)]
                print(f"{name:18} p50 {statistics.median(samples):6.2f} ms   p99 {p99:6.2f} ms")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
