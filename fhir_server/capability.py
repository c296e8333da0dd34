"""The CapabilityStatement (http.html#capabilities), built from what the server really does."""

from __future__ import annotations

from functools import cache, lru_cache
from typing import Any

from . import jsonio
from .searchparams import SearchParamRegistry

__all__ = ["SOFTWARE_NAME", "capability_statement"]

SOFTWARE_NAME = "FHIR Agent Sandbox"
_INTERACTIONS = [
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
]
_RESULT_PARAMS = [
    ("_count", "number", "Page size (default and maximum are server settings)"),
    ("_offset", "number", "Paging offset used in next/previous links"),
    ("_sort", "string", "Sort keys, comma separated; '-' for descending"),
    ("_include", "special", "Referenced resources to include"),
    ("_revinclude", "special", "Referencing resources to include"),
    ("_summary", "token", "true | text | data | count | false"),
    ("_elements", "string", "Elements to return"),
    ("_total", "token", "none | estimate | accurate"),
]


def capability_statement(registry: SearchParamRegistry, base_url: str) -> bytes:
    """The statement for a server reached at ``base_url``, serialised (it is large and never changes)."""
    return _serialised(registry, base_url)


@lru_cache(maxsize=64)  # one per base URL: the default session's and each live session's
def _serialised(registry: SearchParamRegistry, base_url: str) -> bytes:
    statement = dict(_statement(registry))
    statement["implementation"] = {"description": f"{SOFTWARE_NAME} FHIR R4 server", "url": base_url}
    return jsonio.dumps(statement)


@cache
def _statement(registry: SearchParamRegistry) -> dict[str, Any]:
    from . import __version__

    rest_resources = []
    for resource_type in registry.resource_types:
        params = registry.for_type(resource_type)
        references = sorted(code for code, p in params.items() if p.type == "reference")
        revincludes = sorted(
            f"{source}:{code}"
            for source in registry.resource_types
            for code, p in registry.for_type(source).items()
            if p.type == "reference" and (not p.targets or resource_type in p.targets)
        )
        search_params = [
            {"name": code, "definition": p.url, "type": p.type, "documentation": p.description}
            for code, p in sorted(params.items())
        ]
        search_params += [{"name": n, "type": t, "documentation": d} for n, t, d in _RESULT_PARAMS]
        rest_resources.append(
            {
                "type": resource_type,
                "interaction": [{"code": code} for code in _INTERACTIONS],
                "versioning": "versioned-update",
                "readHistory": True,
                "updateCreate": True,
                "conditionalCreate": True,
                "conditionalRead": "not-supported",
                "conditionalUpdate": True,
                "conditionalDelete": "single",
                "searchInclude": ["*", *(f"{resource_type}:{code}" for code in references)],
                "searchRevInclude": revincludes,
                "searchParam": search_params,
            }
        )
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-25",
        "publisher": SOFTWARE_NAME,
        "kind": "instance",
        "software": {"name": SOFTWARE_NAME, "version": __version__},
        "fhirVersion": "4.0.1",
        "format": ["json", "application/fhir+json"],
        "patchFormat": ["application/json-patch+json", "application/merge-patch+json"],
        "rest": [
            {
                "mode": "server",
                "documentation": "Sessions: every episode has its own copy-on-write view at /sessions/{id}/fhir.",
                "resource": rest_resources,
                "interaction": [{"code": "transaction"}, {"code": "batch"}, {"code": "history-system"}],
                "compartment": ["http://hl7.org/fhir/CompartmentDefinition/patient"],
            }
        ],
    }
