"""Request latency over HTTP: one client in sequence, or N clients at once (threads, one connection each)."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

import httpx

__all__ = ["Timed", "run_concurrent", "run_sequential"]

_TIMEOUT_S = 60.0
_ACCEPT = {"Accept": "application/fhir+json"}


@dataclass
class Timed:
    """Durations of the successful requests of one kind, and what went wrong with the others."""

    samples_ns: list[int] = field(default_factory=list)
    errors: int = 0
    first_error: str | None = None
    empty: int = 0  # searchsets without entries (a sanity check that the mix finds data)

    def record(self, response: httpx.Response, elapsed_ns: int, url: str) -> None:
        if response.status_code != 200:
            self.errors += 1
            if self.first_error is None:
                self.first_error = f"{response.status_code} on {url}: {response.text[:300]}"
            return
        self.samples_ns.append(elapsed_ns)
        if "?" in url and b'"entry"' not in response.content:
            self.empty += 1


def _client(base_url: str) -> httpx.Client:
    return httpx.Client(base_url=base_url.rstrip("/") + "/", headers=_ACCEPT, timeout=_TIMEOUT_S)


def run_sequential(base_url: str, urls: list[str], warmup: list[str]) -> Timed:
    """Send ``warmup`` (untimed) then ``urls`` one after the other on one keep-alive connection."""
    timed = Timed()
    with _client(base_url) as client:
        for url in warmup:
            client.get(url)
        for url in urls:
            start = time.perf_counter_ns()
            response = client.get(url)
            timed.record(response, time.perf_counter_ns() - start, url)
    return timed


def run_concurrent(base_url: str, per_client: list[list[tuple[str, str]]]) -> tuple[dict[str, Timed], float]:
    """One thread per list of (kind, url), all starting together; returns the timings by kind and the wall
    time from the common start to the last response."""
    barrier = threading.Barrier(len(per_client) + 1)
    results: list[list[tuple[str, str, httpx.Response | None, int, str | None]]] = [[] for _ in per_client]

    def client_loop(index: int, requests: list[tuple[str, str]]) -> None:
        out = results[index]
        with _client(base_url) as client:
            client.get(requests[0][1])  # open the connection before the clock starts
            barrier.wait()
            for kind, url in requests:
                start = time.perf_counter_ns()
                try:
                    response: httpx.Response | None = client.get(url)
                    failure = None
                except httpx.HTTPError as exc:
                    response, failure = None, f"{type(exc).__name__}: {exc}"
                out.append((kind, url, response, time.perf_counter_ns() - start, failure))

    threads = [threading.Thread(target=client_loop, args=(i, reqs), daemon=True) for i, reqs in enumerate(per_client)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    wall_s = time.perf_counter() - start
    by_kind: dict[str, Timed] = defaultdict(Timed)
    for client_results in results:
        for kind, url, response, elapsed_ns, failure in client_results:
            timed = by_kind[kind]
            if response is None:
                timed.errors += 1
                timed.first_error = timed.first_error or f"{failure} on {url}"
            else:
                timed.record(response, elapsed_ns, url)
    return dict(by_kind), wall_s
