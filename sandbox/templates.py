"""One prepared session per scenario, copied for each of its trials.

Preparing an episode (open a session, write the setup, find the patient, compute the values) is most of what
the harness costs per episode on our server. A scenario's trials would all prepare the same thing, so the first
one prepares a template session that no agent acts in, and every trial starts from a copy of it
(``POST /sessions`` with ``copy_of``: the template's rows copied in SQL, its write log left behind). The trials
then also see the same ids for resources the setup created, and the values are computed once.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import replace
from datetime import datetime
from typing import Protocol, runtime_checkable

import httpx

from .fhir_server.client import FhirClient
from .grading import PreparedEpisode, prepare_episode
from .scenarios.model import Scenario
from .targets import SessionHandle, Target, TargetError

__all__ = ["CopyingTarget", "Templates"]


@runtime_checkable
class CopyingTarget(Target, Protocol):
    def copy(self, handle: SessionHandle, now: datetime, label: str) -> SessionHandle: ...


class Templates:
    """Templates on ``target``, made on first use, shared by the episode threads; ``close()`` deletes them."""

    def __init__(self, target: CopyingTarget, http: httpx.Client):
        self.target = target
        self.http = http
        self._lock = threading.Lock()
        self._scenario_locks: dict[str, threading.Lock] = {}
        self._prepared: dict[str, PreparedEpisode] = {}

    def prepare(self, scenario: Scenario) -> PreparedEpisode:
        """A session of ``scenario`` ready for the agent: a copy of its template.

        Raises:
            what ``prepare_episode`` raises (a template that failed to prepare is not kept), TargetError.
        """
        with self._lock:
            scenario_lock = self._scenario_locks.setdefault(scenario.id, threading.Lock())
        with scenario_lock:  # one template per scenario, even when its trials start together
            template = self._prepared.get(scenario.id)
            if template is None:
                template = prepare_episode(scenario, self.target, self.http)
                self._prepared[scenario.id] = template
        handle = self.target.copy(template.handle, scenario.now, scenario.id)
        # the copy's write log is empty: everything in it is the agent's
        return replace(template, handle=handle, client=FhirClient(handle.fhir_base_url, self.http), mark=0)

    def close(self) -> None:
        with self._lock:
            prepared, self._prepared = list(self._prepared.values()), {}
        for template in prepared:
            with contextlib.suppress(TargetError, httpx.HTTPError):
                self.target.close(template.handle)
