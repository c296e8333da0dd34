"""The FHIR interactions in the OpenAPI document (``/docs``), which the plain routes that serve them leave out.

The FHIR paths are served by plain Starlette routes (FastAPI's per-request parameter solving would cost more
than a read does), which have no schema. The routes added here come after those and describe each interaction
with its parameters; a request matches the plain route first, so they serve nothing the plain routes do not.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response

__all__ = ["document_fhir_routes"]

# (method, path under a FHIR base, summary), R4 http.html
_INTERACTIONS = [
    ("GET", "/metadata", "capabilities: the server's CapabilityStatement"),
    ("POST", "", "batch or transaction: a Bundle of type batch or transaction"),
    ("GET", "/{type}", "search a type (search parameters in the query; _count, _sort, _include, ...)"),
    ("POST", "/{type}/_search", "search a type, the parameters in a form body"),
    ("POST", "/{type}", "create (conditional with If-None-Exist)"),
    ("GET", "/{type}/{id}", "read the current version"),
    ("PUT", "/{type}/{id}", "update, or create with this id (If-Match for a version-aware update)"),
    ("PATCH", "/{type}/{id}", "patch: a JSON Patch (RFC 6902) or a JSON merge patch (RFC 7386)"),
    ("DELETE", "/{type}/{id}", "delete"),
    ("GET", "/{type}/{id}/_history", "history of a resource, newest first"),
    ("GET", "/{type}/{id}/_history/{vid}", "vread: one version"),
    ("GET", "/{type}/_history", "history of a type"),
    ("GET", "/_history", "history of the whole server"),
]
_DESCRIPTIONS = {
    "type": "a resource type, e.g. Patient or Observation",
    "id": "the resource's logical id",
    "vid": "a version id",
    "session_id": "an episode's session (POST /sessions): its own writes over the shared population",
}
_FHIR_JSON = {"application/fhir+json": {"schema": {"type": "object"}}}
_BODIES = {  # what each kind of request sends
    "_search": {"application/x-www-form-urlencoded": {"schema": {"type": "object"}}},
    "PATCH": {
        "application/json-patch+json": {"schema": {"type": "array", "items": {"type": "object"}}},
        "application/merge-patch+json": {"schema": {"type": "object"}},
    },
}


def document_fhir_routes(app: FastAPI, serve: Callable[[Request], Awaitable[Response]]) -> None:
    """Add a schema-only route per FHIR interaction, for the default base and a session's, after the plain routes
    that ``serve`` them (a request that ever reached one is served the same way)."""
    for base, tag in (("/fhir", "FHIR"), ("/sessions/{session_id}/fhir", "FHIR in a session")):
        for method, path, summary in _INTERACTIONS:
            full = base + path
            names = [part[1:-1] for part in full.split("/") if part.startswith("{")]
            extra: dict[str, Any] = {
                "parameters": [
                    {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                    | {"description": _DESCRIPTIONS[name]}
                    for name in names
                ],
                "responses": {"200": {"description": "OK", "content": _FHIR_JSON}},
            }
            if method not in ("GET", "DELETE"):
                body = _BODIES["_search"] if path.endswith("_search") else _BODIES.get(method, _FHIR_JSON)
                extra["requestBody"] = {"required": not path.endswith("_search"), "content": body}
            app.add_api_route(
                full,
                serve,
                methods=[method],
                summary=summary,
                tags=[tag],
                operation_id=f"{method.lower()}{full.replace('/', '_').replace('{', '').replace('}', '')}",
                openapi_extra=extra,
                response_class=Response,
            )
