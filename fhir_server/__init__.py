"""A FHIR R4 server with copy-on-write sessions, for agent evaluation.

The public API: ``create_app`` builds the FastAPI app; ``Repository`` is the storage (sessions, resources,
search, write logs) behind it; ``ServerSettings`` configures both.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .app import create_app
from .errors import FhirError
from .searchparams import SearchParam, SearchParamRegistry, registry
from .settings import ServerSettings
from .storage.engine import make_engine
from .storage.records import SessionInfo, Stored, WriteLogEntry
from .storage.repository import BASE_SESSION, DEFAULT_SESSION, Repository

__all__ = [
    "BASE_SESSION",
    "DEFAULT_SESSION",
    "FhirError",
    "Repository",
    "SearchParam",
    "SearchParamRegistry",
    "ServerSettings",
    "SessionInfo",
    "Stored",
    "WriteLogEntry",
    "__version__",
    "create_app",
    "make_engine",
    "registry",
]
