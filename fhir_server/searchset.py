"""Searchset and history Bundles. Stored resources go in as raw JSON fragments: never re-parsed."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

import orjson

from . import jsonio
from .search.execute import Found, SearchResult
from .search.request import SearchRequest
from .storage.records import Stored
from .validation import summary_elements

__all__ = ["history_bundle", "resource_fragment", "searchset_bundle"]

_SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}
_MANDATORY = {"resourceType", "id", "meta"}


def resource_fragment(content: bytes, summary: str | None = None, elements: list[str] | None = None) -> Any:
    """A stored resource as it goes into a response: the stored bytes, or a subset for _summary/_elements."""
    if not elements and summary in (None, "false"):
        return orjson.Fragment(content)
    resource = jsonio.loads_stored(content)
    if elements:
        keep = set(elements) | _MANDATORY
    elif summary == "true":
        keep = set(summary_elements(resource["resourceType"])) | _MANDATORY
    elif summary == "text":
        keep = {"text"} | _MANDATORY
    elif summary == "data":
        keep = set(resource) - {"text"}
    else:
        return orjson.Fragment(content)
    subset = {k: v for k, v in resource.items() if k in keep}
    meta = dict(subset.get("meta") or {})
    meta["tag"] = [*meta.get("tag", []), _SUBSETTED]
    subset["meta"] = meta
    return subset


def _link(base_url: str, resource_type: str, params: list[tuple[str, str]]) -> str:
    query = urlencode(params)
    return f"{base_url}/{resource_type}" + (f"?{query}" if query else "")


def searchset_bundle(
    base_url: str,
    link_path: str,
    request: SearchRequest,
    result: SearchResult,
    warnings: list[str] | None = None,
) -> dict[str, Any]:
    """The searchset Bundle with absolute self/first/next/previous links that repeat the parameters used."""
    params = [(k, v) for k, v in request.used if k not in ("_offset", "_count")]
    page = [("_count", str(request.count))]
    links = [{"relation": "self", "url": _link(base_url, link_path, request.used)}]
    if request.summary != "count":
        links.append({"relation": "first", "url": _link(base_url, link_path, params + page)})
        if request.offset > 0:
            previous = max(0, request.offset - request.count)
            links.append(
                {
                    "relation": "previous",
                    "url": _link(base_url, link_path, [*params, *page, ("_offset", str(previous))]),
                }
            )
        if result.has_next:
            following = request.offset + request.count
            links.append(
                {"relation": "next", "url": _link(base_url, link_path, [*params, *page, ("_offset", str(following))])}
            )
    bundle: dict[str, Any] = {"resourceType": "Bundle", "id": uuid.uuid4().hex, "type": "searchset"}
    if result.total is not None:
        bundle["total"] = result.total
    bundle["link"] = links
    entries = [_entry(base_url, f, "match", request) for f in result.matches]
    entries += [_entry(base_url, f, "include", request) for f in result.included]
    if warnings:
        entries.append(
            {
                "resource": {
                    "resourceType": "OperationOutcome",
                    "issue": [{"severity": "warning", "code": "not-supported", "diagnostics": w} for w in warnings],
                },
                "search": {"mode": "outcome"},
            }
        )
    if entries:
        bundle["entry"] = entries
    return bundle


def _entry(base_url: str, found: Found, mode: str, request: SearchRequest) -> dict[str, Any]:
    return {
        "fullUrl": f"{base_url}/{found.type}/{found.id}",
        "resource": resource_fragment(found.content, request.summary, request.elements),
        "search": {"mode": mode},
    }


def history_bundle(base_url: str, self_url: str, versions: list[Stored], total: int | None) -> dict[str, Any]:
    """A history Bundle, newest first; deletions appear as entries with request.method DELETE. ``total`` is the
    number of versions in the whole history, or None when only a page of it is known (then it is left out)."""
    entries = []
    for stored in versions:
        entry: dict[str, Any] = {"fullUrl": f"{base_url}/{stored.type}/{stored.id}"}
        if stored.content is not None:
            entry["resource"] = orjson.Fragment(stored.content)
        method = stored.method
        entry["request"] = {
            "method": method,
            "url": stored.type if method == "POST" else f"{stored.type}/{stored.id}",
        }
        entry["response"] = {
            "status": "410 Gone" if stored.deleted else ("201 Created" if method == "POST" else "200 OK"),
            "etag": stored.etag,
            "lastModified": stored.last_updated,
        }
        entries.append(entry)
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": uuid.uuid4().hex,
        "type": "history",
    }
    if total is not None:
        bundle["total"] = total
    bundle["link"] = [{"relation": "self", "url": self_url}]
    if entries:
        bundle["entry"] = entries
    return bundle
