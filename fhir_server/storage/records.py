"""Plain records the repository returns."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = ["SessionInfo", "Stored", "WriteLogEntry", "format_instant"]


def format_instant(moment: datetime) -> str:
    """An R4 instant with milliseconds and an explicit offset."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True, slots=True)
class Stored:
    """One version of a resource as stored: ``content`` is its JSON (None for a delete)."""

    type: str
    id: str
    version: int
    last_updated: str
    deleted: bool
    content: bytes | None
    method: str = "PUT"

    @property
    def etag(self) -> str:
        return f'W/"{self.version}"'


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """An episode's overlay: its id, the clock it carries, and when it was created (wall clock)."""

    id: str
    now: datetime | None
    created: datetime
    label: str | None = None

    def clock(self) -> datetime:
        """The session's current time: its ``now`` advanced by the wall time since creation."""
        wall = datetime.now(UTC)
        return wall if self.now is None else self.now + (wall - self.created)


@dataclass(frozen=True, slots=True)
class WriteLogEntry:
    """One create, update or delete, with the request that caused it."""

    seq: int
    at: str
    method: str
    url: str
    type: str
    id: str
    version: int
    status: int
    request: Any
