"""batch and transaction Bundles (http.html#transaction).

A transaction is one database unit: all of it is stored or none of it. Entries run in the spec's order
(DELETE, POST, PUT/PATCH, GET) whatever their order in the Bundle; ``urn:uuid:`` fullUrls and conditional
references (``Patient?identifier=...``) are resolved to real ids before anything is written; the response lists
the entries in request order. A batch runs each entry on its own and reports each entry's outcome.
"""

from __future__ import annotations

import uuid
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

from .errors import BadRequest, FhirError, PreconditionFailed
from .messages import FhirRequest, FhirResponse
from .storage.repository import Unit

__all__ = ["process_bundle"]

_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}


def process_bundle(service: Any, req: FhirRequest) -> FhirResponse:
    bundle = req.body
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise BadRequest("POST to the base takes a Bundle of type batch or transaction")
    kind = bundle.get("type")
    if kind not in ("batch", "transaction"):
        raise BadRequest(
            f"a Bundle posted to the base must be a batch or transaction, not {kind!r}", expression=["Bundle.type"]
        )
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise BadRequest("Bundle.entry must be a list", expression=["Bundle.entry"])
    for index, entry in enumerate(entries):
        _check_entry(index, entry)
    if kind == "batch":
        responses = [_batch_entry(service, req, index, entry) for index, entry in enumerate(entries)]
    else:
        with service.repository.unit(req.session, req.base_url) as unit:
            responses = _transaction(service, unit, req, entries)
    return FhirResponse(
        200,
        {
            "resourceType": "Bundle",
            "id": uuid.uuid4().hex,
            "type": f"{kind}-response",
            "entry": responses,
        },
    )


def _check_entry(index: int, entry: Any) -> None:
    where = f"Bundle.entry[{index}]"
    if not isinstance(entry, dict) or not isinstance(entry.get("request"), dict):
        raise BadRequest(f"{where} has no request", expression=[f"{where}.request"])
    request = entry["request"]
    method = str(request.get("method", "")).upper()
    if method not in _ORDER:
        raise BadRequest(
            f"{where}.request.method {request.get('method')!r} is not GET, HEAD, POST, PUT, PATCH or DELETE",
            expression=[f"{where}.request.method"],
        )
    if not isinstance(request.get("url"), str) or not request["url"]:
        raise BadRequest(f"{where}.request.url is missing", expression=[f"{where}.request.url"])
    if not isinstance(entry.get("fullUrl", ""), str):
        raise BadRequest(f"{where}.fullUrl must be a string (a URI)", expression=[f"{where}.fullUrl"])
    if method in ("POST", "PUT") and not isinstance(entry.get("resource"), dict):
        raise BadRequest(f"{where} is a {method} without a resource", expression=[f"{where}.resource"])


def _entry_request(req: FhirRequest, entry: dict[str, Any], body: Any = None) -> FhirRequest:
    request = entry["request"]
    url = request["url"]
    if "://" in url:
        url = urlsplit(url).path.split("/fhir/", 1)[-1] + ("?" + urlsplit(url).query if urlsplit(url).query else "")
    return FhirRequest.from_url(
        request["method"],
        url,
        session=req.session,
        base_url=req.base_url,
        body=body if body is not None else entry.get("resource"),
        content_type="application/json-patch+json" if _is_json_patch(entry) else "application/fhir+json",
        if_match=request.get("ifMatch"),
        if_none_exist=request.get("ifNoneExist"),
        if_none_match=request.get("ifNoneMatch"),
        prefer=req.prefer,
    )


def _is_json_patch(entry: dict[str, Any]) -> bool:
    resource = entry.get("resource")
    return (
        isinstance(resource, dict)
        and resource.get("resourceType") == "Binary"
        and entry["request"]["method"] == "PATCH"
    )


def _batch_entry(service: Any, req: FhirRequest, index: int, entry: dict[str, Any]) -> dict[str, Any]:
    try:
        body = _patch_body(entry)
        return _response_entry(service.handle(_entry_request(req, entry, body)), req)
    except FhirError as exc:
        return {"response": {"status": _status_line(exc.status), "outcome": exc.outcome()}}


def _patch_body(entry: dict[str, Any]) -> Any:
    """A PATCH entry carries its JSON Patch as a Binary (base64 data)."""
    if not _is_json_patch(entry):
        return None
    import base64
    import json

    try:
        return json.loads(base64.b64decode(entry["resource"].get("data", "")))
    except ValueError as exc:
        raise BadRequest(f"the PATCH entry's Binary does not hold a JSON Patch: {exc}") from None


def _transaction(service: Any, unit: Unit, req: FhirRequest, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ids: dict[str, str] = {}  # fullUrl -> Type/id
    existing: set[int] = set()  # POST entries whose If-None-Exist matched
    first_with: dict[str, int] = {}  # fullUrl -> the entry that carries it
    for index, entry in enumerate(entries):
        method = entry["request"]["method"].upper()
        resource: Any = entry.get("resource")  # a dict for POST and PUT (_check_entry made sure)
        full_url = entry.get("fullUrl")
        if full_url and isinstance(resource, dict):
            if full_url in first_with:  # bdl-7: references to it would be ambiguous
                raise BadRequest(
                    f"Bundle.entry[{index}] and Bundle.entry[{first_with[full_url]}] have the same fullUrl {full_url}",
                    expression=[f"Bundle.entry[{index}].fullUrl"],
                )
            first_with[full_url] = index
        if method == "POST":
            resource_type = resource.get("resourceType")
            if urlsplit(entry["request"]["url"]).path.rstrip("/").rsplit("/", 1)[-1] != resource_type:
                # e.g. the spec example's POST ValueSet/$lookup: an operation, not a create of its Parameters body
                raise BadRequest(
                    f"Bundle.entry[{index}]: POST {entry['request']['url']} does not create a {resource_type} "
                    "(only creates are supported in a transaction, not operations)",
                    expression=[f"Bundle.entry[{index}].request.url"],
                )
            target = None
            if entry["request"].get("ifNoneExist"):
                found = service.find(unit, req, resource_type, entry["request"]["ifNoneExist"])
                if len(found) > 1:
                    raise PreconditionFailed(
                        f"Bundle.entry[{index}]: ifNoneExist matches more than one {resource_type}"
                    )
                if found:
                    target = found[0]
                    existing.add(index)
            ids_value = f"{resource_type}/{target or str(uuid.uuid4())}"
            if full_url:
                ids[full_url] = ids_value
                if full_url.startswith(("http://", "https://")) and full_url.endswith(
                    f"/{resource_type}/{resource.get('id')}"
                ):
                    # a relative reference resolves against the fullUrl's base (bundle.html#references): the
                    # spec's XDS example refers to http://host/fhir/Patient/a2 as Patient/a2
                    ids[f"{resource_type}/{resource['id']}"] = ids_value
            entry["_assigned"] = ids_value
        elif method == "PUT" and full_url and isinstance(resource, dict) and "?" not in entry["request"]["url"]:
            ids[full_url] = entry["request"]["url"].split("?")[0].strip("/")
    _check_overlap(entries)
    conditional_cache: dict[str, str] = {}
    for index, entry in enumerate(entries):
        if isinstance(entry.get("resource"), dict):
            entry["resource"] = _rewrite(entry["resource"], ids, service, unit, req, index, conditional_cache)
    responses: list[dict[str, Any] | None] = [None] * len(entries)
    order = sorted(range(len(entries)), key=lambda i: _ORDER[entries[i]["request"]["method"].upper()])
    for index in order:
        entry = entries[index]
        method = entry["request"]["method"].upper()
        try:
            if method == "POST":
                resource_type, resource_id = entry["_assigned"].split("/", 1)
                if index in existing:
                    stored = unit.read(resource_type, resource_id)
                    response = FhirResponse(200, None, etag=stored.etag, last_modified=stored.last_updated)
                else:
                    stored = unit.create_with_id(
                        entry["resource"], resource_id, url=entry["request"]["url"], request=entry["resource"]
                    )
                    response = FhirResponse(
                        201,
                        None,
                        etag=stored.etag,
                        last_modified=stored.last_updated,
                        location=f"{req.base_url}/{resource_type}/{resource_id}/_history/{stored.version}",
                    )
                    response.body = stored.content
            else:
                response = service.handle_in(unit, _entry_request(req, entry, _patch_body(entry)))
        except FhirError as exc:
            exc.diagnostics = (
                f"transaction failed at Bundle.entry[{index}] ({method} {entry['request']['url']}): {exc.diagnostics}"
            )
            exc.args = (exc.diagnostics,)
            raise
        responses[index] = _response_entry(response, req)
    for entry in entries:
        entry.pop("_assigned", None)
    return [r for r in responses if r is not None]


def _check_overlap(entries: list[dict[str, Any]]) -> None:
    seen: dict[str, int] = {}
    for index, entry in enumerate(entries):
        method = entry["request"]["method"].upper()
        if method == "GET" or method == "HEAD":
            continue
        key = entry.get("_assigned") or entry["request"]["url"].split("?")[0].strip("/")
        if "/" not in key and "?" in entry["request"]["url"]:
            key = entry["request"]["url"]
        if key in seen:
            raise BadRequest(
                f"Bundle.entry[{index}] and Bundle.entry[{seen[key]}] both change {key}; "
                "a transaction may touch a resource once"
            )
        seen[key] = index


def _rewrite(
    value: Any, ids: dict[str, str], service: Any, unit: Unit, req: FhirRequest, index: int, cache: dict[str, str]
) -> Any:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key == "reference" and isinstance(item, str):
                out[key] = _resolve_reference(item, ids, service, unit, req, index, cache)
            elif key == "div" and isinstance(item, str):
                for full_url, target in ids.items():
                    if full_url in item:
                        item = item.replace(full_url, target)
                out[key] = item
            else:
                out[key] = _rewrite(item, ids, service, unit, req, index, cache)
        return out
    if isinstance(value, list):
        return [_rewrite(item, ids, service, unit, req, index, cache) for item in value]
    return value


def _resolve_reference(
    reference: str, ids: dict[str, str], service: Any, unit: Unit, req: FhirRequest, index: int, cache: dict[str, str]
) -> str:
    if reference in ids:
        return ids[reference]
    if "?" in reference and not reference.startswith(("http://", "https://", "urn:")):
        if reference not in cache:
            resource_type, _, query = reference.partition("?")
            if resource_type not in service.registry.resource_types:
                raise BadRequest(f"Bundle.entry[{index}]: conditional reference {reference!r} names an unknown type")
            found = service.find(unit, req, resource_type, query)
            if len(found) != 1:
                raise PreconditionFailed(
                    f"Bundle.entry[{index}]: conditional reference {reference!r} matches {len(found)} resources; "
                    "it must match exactly one"
                )
            cache[reference] = f"{resource_type}/{found[0]}"
        return cache[reference]
    return reference


def _response_entry(response: FhirResponse, req: FhirRequest) -> dict[str, Any]:
    result: dict[str, Any] = {"status": _status_line(response.status)}
    if response.location:
        result["location"] = response.location
    if response.etag:
        result["etag"] = response.etag
    if response.last_modified:
        result["lastModified"] = response.last_modified
    entry: dict[str, Any] = {"response": result}
    if response.body is not None and req.prefer.get("return") != "minimal":
        from .searchset import resource_fragment

        entry["resource"] = resource_fragment(response.body) if isinstance(response.body, bytes) else response.body
    return entry


def _status_line(status: int) -> str:
    return f"{status} {HTTPStatus(status).phrase}"
