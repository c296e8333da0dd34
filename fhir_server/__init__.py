"""A FHIR R4 server with copy-on-write sessions, for agent evaluation."""

from __future__ import annotations

__version__ = "0.1.0"
