"""A run is a folder: ``manifest.json`` (what was run, on what, by which code), ``episodes.jsonl`` (one line per
finished episode, appended and flushed as each ends, so a killed run loses at most the episodes in flight) and
``report.html``. Resuming skips the (scenario, trial) pairs already stored and refuses if the scenarios or the
population changed since the run began."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, Field

from .episode import EpisodeResult, Termination
from .scenarios.model import Scenario

__all__ = ["Manifest", "RunFolder", "RunMismatch", "git_commit", "latest", "now_text", "scenario_hash"]

MANIFEST = "manifest.json"
EPISODES = "episodes.jsonl"


class RunMismatch(RuntimeError):
    """A resume whose scenarios, population or settings differ from the run's."""


class Manifest(BaseModel):
    created: str
    package_version: str
    git_commit: str | None = None
    config: dict[str, Any] = Field(description="The run's settings: agent, model, trials, limits, filters.")
    population: dict[str, Any] = Field(description="Which population, and a fingerprint of its content.")
    scenarios: dict[str, str] = Field(description="scenario id -> hash of its canonical JSON")


def scenario_hash(scenario: Scenario) -> str:
    canonical = orjson.dumps(scenario.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()[:16]


class RunFolder:
    def __init__(self, path: Path):
        self.path = path

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    @property
    def episodes_path(self) -> Path:
        return self.path / EPISODES

    def exists(self) -> bool:
        return self.manifest_path.exists()

    def start(self, manifest: Manifest) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        _write_atomic(self.manifest_path, orjson.dumps(manifest.model_dump(mode="json"), option=orjson.OPT_INDENT_2))
        self.episodes_path.touch()

    def manifest(self) -> Manifest:
        return Manifest.model_validate(orjson.loads(self.manifest_path.read_bytes()))

    def check_resumable(self, manifest: Manifest) -> None:
        """Raises RunMismatch naming what differs between the stored run and ``manifest``."""
        stored = self.manifest()
        problems = []
        changed = sorted(i for i, h in manifest.scenarios.items() if stored.scenarios.get(i) not in (None, h))
        if changed:
            problems.append(f"scenarios changed since the run began: {', '.join(changed[:5])}")
        added = sorted(set(manifest.scenarios) - set(stored.scenarios))
        if added:
            problems.append(f"scenarios not in the run: {', '.join(added[:5])}")
        if stored.population != manifest.population:
            problems.append("the population differs from the run's")
        if stored.config != manifest.config:
            keys = sorted(
                k for k in set(stored.config) | set(manifest.config) if stored.config.get(k) != manifest.config.get(k)
            )
            problems.append(f"settings differ: {', '.join(keys)}")
        if problems:
            raise RunMismatch("cannot resume " + str(self.path) + ": " + "; ".join(problems))

    def episodes(self) -> list[EpisodeResult]:
        """The stored episodes; a last line cut short by a crash is ignored (its episode runs again)."""
        if not self.episodes_path.exists():
            return []
        results = []
        for line in self.episodes_path.read_bytes().splitlines():
            if not line.strip():
                continue
            try:
                results.append(EpisodeResult.model_validate(orjson.loads(line)))
            except (orjson.JSONDecodeError, ValueError):
                continue  # a torn write at the end of a killed run
        return results

    def done(self) -> set[tuple[str, int]]:
        """(scenario, trial) pairs with a stored, scored result (infrastructure errors run again on resume)."""
        return {(r.scenario_id, r.trial) for r in self.episodes() if r.termination != Termination.INFRASTRUCTURE_ERROR}

    def append(self, result: EpisodeResult) -> None:
        line = result.model_dump_json().encode() + b"\n"  # pydantic serialises in Rust: faster than model_dump
        with open(self.episodes_path, "ab") as handle:
            _repair_tail(handle, self.episodes_path)
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def rewrite(self, results: Iterable[EpisodeResult]) -> None:
        """Replace the stored episodes (after a regrade), atomically."""
        data = b"".join(r.model_dump_json().encode() + b"\n" for r in results)
        _write_atomic(self.episodes_path, data)


def latest(results: Iterable[EpisodeResult]) -> list[EpisodeResult]:
    """One result per (scenario, trial): the last stored one (a resumed infrastructure error is superseded)."""
    by_key: dict[tuple[str, int], EpisodeResult] = {}
    for result in results:
        by_key[(result.scenario_id, result.trial)] = result
    return list(by_key.values())


def git_commit(start: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=start, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _repair_tail(handle: Any, path: Path) -> None:
    """If the file does not end with a newline (a killed writer), end the torn line so the next one is whole."""
    size = path.stat().st_size
    if size:
        with open(path, "rb") as reader:
            reader.seek(size - 1)
            if reader.read(1) != b"\n":
                handle.write(b"\n")


def _write_atomic(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)
