"""Write throughput: the trusted bulk load (no validation) and the validated path, transaction Bundles over HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
from fhir_sandbox.fhir_server.searchparams import registry
from fhir_sandbox.fhir_server.storage.engine import make_engine
from fhir_sandbox.fhir_server.storage.repository import Repository
from pydantic import BaseModel

from .stats import Latency, summarize

__all__ = ["BulkIngest", "HttpIngest", "bulk_ingest", "http_transactions"]


class BulkIngest(BaseModel):
    resources: int
    load_s: float
    analyze_s: float
    database_bytes: int
    workers: int = 1

    @property
    def rate(self) -> float:
        """Resources per second, ANALYZE included."""
        return self.resources / (self.load_s + self.analyze_s)


class HttpIngest(BaseModel):
    resources: int
    bundles: int
    seconds: float
    per_bundle: Latency

    @property
    def rate(self) -> float:
        return self.resources / self.seconds


def bulk_ingest(database: Path, resources: Iterable[dict[str, Any]], workers: int = 1) -> BulkIngest:
    """``Repository.bulk_load`` into ``database`` (a new file) as the base population, then ANALYZE; with
    ``workers`` > 1 the rows are prepared in that many processes while one stores them."""
    if database.exists():
        raise FileExistsError(f"{database} exists; the bulk load measures a fresh database")
    engine = make_engine(database)  # the schema is created here, outside the timing
    try:
        repository = Repository(engine, registry())
        start = time.perf_counter()
        count = repository.bulk_load(resources, workers=workers)
        loaded = time.perf_counter()
        repository.analyze()
        analyzed = time.perf_counter()
    finally:
        engine.dispose()
    size = sum(p.stat().st_size for p in database.parent.glob(database.name + "*"))
    return BulkIngest(
        resources=count, load_s=loaded - start, analyze_s=analyzed - loaded, database_bytes=size, workers=workers
    )


def http_transactions(fhir_base: str, bundles: list[list[dict[str, Any]]]) -> HttpIngest:
    """POST each list of entries as a transaction Bundle to ``fhir_base``, one after the other."""
    bodies = [json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": e}).encode() for e in bundles]
    headers = {"Accept": "application/fhir+json", "Content-Type": "application/fhir+json"}
    samples: list[int] = []
    with httpx.Client(timeout=120.0, headers=headers) as client:
        start = time.perf_counter()
        for body in bodies:
            sent = time.perf_counter_ns()
            response = client.post(fhir_base, content=body)
            samples.append(time.perf_counter_ns() - sent)
            if response.status_code != 200:
                raise RuntimeError(f"a transaction Bundle was refused ({response.status_code}): {response.text[:500]}")
        seconds = time.perf_counter() - start
    count = sum(len(entries) for entries in bundles)
    return HttpIngest(resources=count, bundles=len(bundles), seconds=seconds, per_bundle=summarize(samples))
