"""The FHIR interactions (R4 http.html), one small function each, and the dispatcher that maps a request's
method and path to one of them. HTTP routes and Bundle entries both come through ``FhirService.handle``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

import jsonpatch

from . import jsonio, realism
from .capability import capability_statement
from .errors import (
    BadRequest,
    MethodNotAllowed,
    NotFound,
    PreconditionFailed,
    UnsupportedMedia,
    operation_outcome,
)
from .messages import FhirRequest, FhirResponse
from .search.parse import PageLimits, parse_search
from .search.request import SearchRequest
from .search.types import SearchContext
from .searchset import history_bundle, resource_fragment, searchset_bundle
from .settings import ServerSettings
from .storage.records import Stored
from .storage.repository import Repository, Unit

__all__ = ["FhirService"]

_JSON_PATCH = "application/json-patch+json"
_MERGE_PATCH = ("application/merge-patch+json", "application/json", "application/fhir+json")


class FhirService:
    """Dispatches FHIR requests to the interactions, over one repository."""

    def __init__(self, repository: Repository, settings: ServerSettings):
        self.repository = repository
        self.registry = repository.registry
        self.settings = settings
        self.limits = PageLimits(settings.default_page_size, settings.max_page_size)
        # auth.py sets this to add rest.security to the CapabilityStatement of a protected server
        self.capability_hook: Callable[[bytes, FhirRequest], bytes] | None = None

    # -- dispatch -------------------------------------------------------------------------------------------

    def handle(self, req: FhirRequest) -> FhirResponse:
        """Run one request outside a transaction (writes get a unit of their own)."""
        self.repository.session(req.session)  # 404 for an unknown session, before anything else
        if req.method in ("GET", "HEAD") or (req.method == "POST" and req.path[-1:] == ["_search"]):
            return self._read_interaction(req, None)
        if req.method == "POST" and not req.path:
            from .bundles import process_bundle

            return process_bundle(self, req)
        with self.repository.unit(req.session, req.base_url) as unit:
            return self.handle_in(unit, req)

    def handle_in(self, unit: Unit, req: FhirRequest) -> FhirResponse:
        """Run one request inside ``unit`` (a transaction entry, or a single write)."""
        if req.method in ("GET", "HEAD") or (req.method == "POST" and req.path[-1:] == ["_search"]):
            return self._read_interaction(req, unit)
        path = req.path
        if path in (["metadata"], ["_history"]):  # these exist, for reading only: 405, not 404 "unknown type"
            raise MethodNotAllowed(f"{req.method} is not allowed on {path[0]}; only GET is")
        self._check_type(path)
        if req.method == "POST" and len(path) == 1:
            return self.create(unit, req)
        if req.method == "PUT" and len(path) == 2:
            return self.update(unit, req, path[0], path[1])
        if req.method == "PUT" and len(path) == 1:
            return self.conditional_update(unit, req)
        if req.method == "PATCH" and len(path) in (1, 2):
            return self.patch(unit, req)
        if req.method == "DELETE" and len(path) == 2:
            return self.delete(unit, req, path[0], path[1])
        if req.method == "DELETE" and len(path) == 1:
            return self.conditional_delete(unit, req)
        raise MethodNotAllowed(f"{req.method} is not allowed on {'/'.join(path) or 'the base'}")

    def _read_interaction(self, req: FhirRequest, unit: Unit | None) -> FhirResponse:
        path = req.path
        if path == ["metadata"] and req.method in ("GET", "HEAD"):
            statement = capability_statement(self.registry, req.base_url)
            if self.capability_hook is not None:
                statement = self.capability_hook(statement, req)
            return FhirResponse(200, statement)
        if path == ["_history"]:
            return self.history(req, None, None)
        if not path:
            raise MethodNotAllowed("GET on the base is not supported; name a resource type (e.g. Patient?name=...)")
        self._check_type(path)
        resource_type = path[0]
        if req.method == "POST":  # [type]/_search with form parameters
            if len(path) != 2:
                raise MethodNotAllowed(f"POST is not allowed on {'/'.join(path)}")
            return self.search(req, resource_type, unit, req.query)
        if len(path) == 1:
            return self.search(req, resource_type, unit, req.query)
        if len(path) == 2 and path[1] == "_history":
            return self.history(req, resource_type, None)
        if len(path) == 2:
            return self.read(req, resource_type, path[1], unit)
        if resource_type == "Patient" and len(path) == 3 and path[2] in self.registry.resource_types:
            return self.search(req, path[2], unit, req.query, compartment=path[1])
        if len(path) == 3 and path[2] == "_history":
            return self.history(req, resource_type, path[1])
        if len(path) == 4 and path[2] == "_history":
            return self.vread(req, resource_type, path[1], path[3])
        raise NotFound(f"no interaction at {'/'.join(path)}")

    def _check_type(self, path: list[str]) -> None:
        if path and path[0] not in self.registry.resource_types:
            raise NotFound(f"unknown resource type {path[0]!r}", code="not-supported")

    def context(self, req: FhirRequest) -> SearchContext:
        info = self.repository.session(req.session)
        now_ms = int(info.clock().timestamp() * 1000)
        return SearchContext(base_url=req.base_url, default_tz=self.settings.default_tz, now_ms=now_ms)

    # -- reads ----------------------------------------------------------------------------------------------

    def read(self, req: FhirRequest, resource_type: str, resource_id: str, unit: Unit | None) -> FhirResponse:
        """read (http.html#read)."""
        stored = (
            unit.read(resource_type, resource_id)
            if unit
            else self.repository.read(req.session, resource_type, resource_id)
        )
        if req.if_none_match and req.if_none_match.strip() == stored.etag:
            return FhirResponse(304, None, etag=stored.etag, last_modified=stored.last_updated)
        return _resource_response(200, stored, req)

    def vread(self, req: FhirRequest, resource_type: str, resource_id: str, version: str) -> FhirResponse:
        """vread (http.html#vread)."""
        if not version.isdigit():
            raise NotFound(f"{resource_type}/{resource_id} has no version {version!r}")
        stored = self.repository.vread(req.session, resource_type, resource_id, int(version))
        return _resource_response(200, stored, req)

    def history(self, req: FhirRequest, resource_type: str | None, resource_id: str | None) -> FhirResponse:
        """history (http.html#history): instance, type or system level; ``_since`` and ``_count``."""
        params = dict(req.query)
        since = None
        if "_since" in params:
            since = _instant_param("_since", params["_since"])
        count = self.settings.max_history
        if "_count" in params:
            if not params["_count"].isdigit():
                raise BadRequest(f"_count must be a whole number, not {params['_count']!r}")
            count = min(int(params["_count"]), self.settings.max_history)
        # one more than the page tells whether the page is all there is: Bundle.total counts every version
        versions = self.repository.history(req.session, resource_type, resource_id, since, count + 1)
        total = len(versions) if len(versions) <= count else None
        path = "/".join(req.path)
        return FhirResponse(200, history_bundle(req.base_url, f"{req.base_url}/{path}", versions[:count], total))

    def search(
        self,
        req: FhirRequest,
        resource_type: str,
        unit: Unit | None,
        items: list[tuple[str, str]],
        compartment: str | None = None,
    ) -> FhirResponse:
        """search (http.html#search, search.html): GET, POST _search, and Patient/[id]/[type] compartments."""
        ctx = self.context(req)
        strict = req.prefer.get("handling") == "strict"
        if self.settings.require_patient:
            realism.check_required(resource_type, items, self.registry, compartment)
        request = parse_search(resource_type, items, self.registry, ctx, limits=self.limits, strict=strict)
        request.compartment_patient = compartment
        result = unit.search(request, ctx) if unit else self.repository.search(req.session, request, ctx)
        link_path = f"Patient/{compartment}/{resource_type}" if compartment else resource_type
        warnings = [f"unknown search parameter {name!r} was ignored" for name in request.ignored]
        limit = self.settings.include_limit
        dropped = realism.limit_includes(result, limit)
        bundle = searchset_bundle(req.base_url, link_path, request, result, warnings)
        if dropped and limit is not None:
            realism.note_truncated_includes(bundle, dropped, limit)
        return FhirResponse(200, bundle)

    def find(self, unit: Unit, req: FhirRequest, resource_type: str, query: str) -> list[str]:
        """Ids of the resources a conditional interaction's criteria match (all of them, up to a bound)."""
        # criteria are often written as a search URL (Patient?identifier=...; the spec's XDS example does it)
        items = parse_qsl(query.removeprefix(f"{resource_type}?").lstrip("?"), keep_blank_values=True)
        if not items:
            raise BadRequest(f"the conditional criteria for {resource_type} are empty")
        ctx = self.context(req)
        request: SearchRequest = parse_search(resource_type, items, self.registry, ctx, limits=self.limits, strict=True)
        request.count, request.offset, request.total, request.includes = 2, 0, "none", []
        return [found.id for found in unit.search(request, ctx).matches]

    # -- writes ---------------------------------------------------------------------------------------------

    def create(self, unit: Unit, req: FhirRequest) -> FhirResponse:
        """create (http.html#create), conditional with If-None-Exist (http.html#ccreate)."""
        resource_type = req.path[0]
        resource = _resource_body(req, resource_type)
        # fhirpy's get_or_create() sends POST [type]?criteria instead of If-None-Exist: the same conditional create
        criteria = req.if_none_exist or _criteria(req.query)
        if criteria:
            ids = self.find(unit, req, resource_type, criteria)
            if len(ids) > 1:
                raise PreconditionFailed(f"the criteria {criteria!r} match more than one {resource_type}")
            if ids:
                return _resource_response(200, unit.read(resource_type, ids[0]), req)
        stored = unit.create(resource, url=req.url, request=resource)
        return _resource_response(201, stored, req, location=True)

    def update(self, unit: Unit, req: FhirRequest, resource_type: str, resource_id: str) -> FhirResponse:
        """update (http.html#update), version-aware with If-Match; creates when the id is new."""
        resource = _resource_body(req, resource_type)
        stored, created = unit.update(
            resource_type, resource_id, resource, url=req.url, if_match=req.if_match, request=resource
        )
        return _resource_response(201 if created else 200, stored, req, location=created)

    def conditional_update(self, unit: Unit, req: FhirRequest) -> FhirResponse:
        """conditional update (http.html#cond-update): 0 matches create, 1 updates, more is 412."""
        resource_type = req.path[0]
        resource = _resource_body(req, resource_type)
        query = _criteria(req.query)
        ids = self.find(unit, req, resource_type, query)
        if len(ids) > 1:
            raise PreconditionFailed(f"the criteria {query!r} match more than one {resource_type}")
        if ids:
            resource_id = ids[0]
            if resource.get("id") not in (None, resource_id):
                raise BadRequest(f"the body's id {resource['id']!r} is not the id the criteria matched ({resource_id})")
            resource["id"] = resource_id
            return self.update(unit, _with_body(req, resource), resource_type, resource_id)
        if resource.get("id"):
            return self.update(unit, _with_body(req, resource), resource_type, resource["id"])
        stored = unit.create(resource, url=req.url, request=resource)
        return _resource_response(201, stored, req, location=True)

    def patch(self, unit: Unit, req: FhirRequest) -> FhirResponse:
        """patch (http.html#patch): JSON Patch (RFC 6902), or a JSON merge patch (RFC 7386)."""
        resource_type = req.path[0]
        if len(req.path) == 1:
            query = _criteria(req.query)
            ids = self.find(unit, req, resource_type, query)
            if len(ids) != 1:
                raise (PreconditionFailed if ids else NotFound)(
                    f"the criteria {query!r} match {len(ids)} {resource_type}"
                )
            resource_id = ids[0]
        else:
            resource_id = req.path[1]
        current = jsonio.loads(unit.read(resource_type, resource_id).content or b"{}")
        if req.if_match and req.if_match.removeprefix("W/").strip('"') != str(current.get("meta", {}).get("versionId")):
            raise PreconditionFailed(f"If-Match {req.if_match} does not match the current version")
        patched = _apply_patch(current, req)
        if patched.get("resourceType") != resource_type or patched.get("id") != resource_id:
            raise BadRequest("a patch may not change resourceType or id")
        stored, _ = unit.update(resource_type, resource_id, patched, url=req.url, request=req.body, method="PATCH")
        return _resource_response(200, stored, req)

    def delete(self, unit: Unit, req: FhirRequest, resource_type: str, resource_id: str) -> FhirResponse:
        """delete (http.html#delete): 200 with an OperationOutcome; absent or already deleted also succeeds."""
        stored = unit.delete(resource_type, resource_id, url=req.url)
        message = f"deleted {resource_type}/{resource_id}" if stored else f"{resource_type}/{resource_id} was not there"
        outcome = operation_outcome("information", "informational", message)
        return FhirResponse(200, outcome, etag=stored.etag if stored else None)

    def conditional_delete(self, unit: Unit, req: FhirRequest) -> FhirResponse:
        """conditional delete (http.html#cdelete): one match is deleted; several is 412 (single mode)."""
        resource_type = req.path[0]
        query = _criteria(req.query)
        ids = self.find(unit, req, resource_type, query)
        if len(ids) > 1:
            raise PreconditionFailed(f"the criteria {query!r} match more than one {resource_type}")
        if not ids:
            return FhirResponse(
                200, operation_outcome("information", "informational", "nothing matched; nothing deleted")
            )
        return self.delete(unit, req, resource_type, ids[0])


def _criteria(query: list[tuple[str, str]]) -> str:
    """A conditional interaction's search criteria from its URL, encoded again: the decoded values may hold
    ``&``, ``+`` or ``%`` (``identifier=sys|a+b``), which a plain join would change when ``find`` parses them."""
    return urlencode([(k, v) for k, v in query if k not in ("_format", "_pretty")], safe=":/|,$")


def _with_body(req: FhirRequest, body: dict[str, Any]) -> FhirRequest:
    from dataclasses import replace

    return replace(req, body=body)


def _resource_body(req: FhirRequest, resource_type: str) -> dict[str, Any]:
    body = req.body
    if not isinstance(body, dict):
        raise BadRequest(f"the request body must be a {resource_type} resource (a JSON object)")
    if body.get("resourceType") != resource_type:
        raise BadRequest(
            f"the body's resourceType is {body.get('resourceType')!r}; this URL takes a {resource_type}",
            expression=["resourceType"],
        )
    return dict(body)


def _apply_patch(current: dict[str, Any], req: FhirRequest) -> dict[str, Any]:
    content_type = (req.content_type or "").split(";")[0].strip().lower()
    if content_type == _JSON_PATCH:
        if not isinstance(req.body, list):
            raise BadRequest("a JSON Patch document is a JSON array of operations")
        try:
            result: dict[str, Any] = jsonpatch.JsonPatch(req.body).apply(current)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError, KeyError) as exc:
            raise BadRequest(f"the JSON Patch could not be applied: {exc}") from None
        return result
    if content_type in _MERGE_PATCH:  # fhirpy's patch() sends a partial resource as application/json
        if not isinstance(req.body, dict):
            raise BadRequest("a merge patch is a JSON object")
        return _merge(current, req.body)
    raise UnsupportedMedia(
        f"PATCH takes {_JSON_PATCH} or application/merge-patch+json, not {content_type or 'no content type'}"
    )


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    merged = dict(target)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _instant_param(name: str, value: str) -> str:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"{name} must be an instant such as 2023-11-13T10:15:00Z, not {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def _resource_response(status: int, stored: Stored, req: FhirRequest, location: bool = False) -> FhirResponse:
    params = dict(req.query) if req.method == "GET" else {}
    body: Any = None
    if stored.content is not None:
        body = resource_fragment(stored.content, params.get("_summary"), _elements(params))
    return FhirResponse(
        status,
        body,
        etag=stored.etag,
        last_modified=stored.last_updated,
        location=f"{req.base_url}/{stored.type}/{stored.id}/_history/{stored.version}" if location else None,
    )


def _elements(params: dict[str, str]) -> list[str] | None:
    value = params.get("_elements")
    return [e.strip() for e in value.split(",") if e.strip()] if value else None
