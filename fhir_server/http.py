"""HTTP edges: reading a bounded body, content negotiation, and rendering a ``FhirResponse``."""

from __future__ import annotations

from datetime import datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qsl

from fastapi import Request, Response

from . import jsonio
from .errors import BadRequest, FhirError, NotAcceptable, PayloadTooLarge, UnsupportedMedia, operation_outcome
from .messages import FhirRequest, FhirResponse, parse_prefer

__all__ = ["FHIR_JSON", "build_request", "error_response", "render"]

FHIR_JSON = "application/fhir+json; charset=utf-8"
_JSON_TYPES = {"application/fhir+json", "application/json", "application/json+fhir", "text/json"}
_PATCH_TYPES = {"application/json-patch+json", "application/merge-patch+json"}
_FORM = "application/x-www-form-urlencoded"
_XML_FORMATS = {"xml", "text/xml", "application/xml", "application/fhir+xml", "application/xml+fhir"}


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) anything over ``limit`` bytes before reading it all."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the request body is {declared} bytes; the limit is {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _check_accept(request: Request, query: list[tuple[str, str]]) -> None:
    formats = [v for k, v in query if k == "_format"]
    if formats and formats[-1].split(";")[0].strip().lower() in _XML_FORMATS:
        raise NotAcceptable("this server speaks JSON only (_format=json or application/fhir+json)")
    if formats:  # _format overrides the Accept header (http.html#mime-type)
        return
    accept = request.headers.get("accept", "")
    if accept:
        kinds = [a.split(";")[0].strip().lower() for a in accept.split(",")]
        if kinds and all(k in _XML_FORMATS for k in kinds):
            raise NotAcceptable("this server speaks JSON only; ask for application/fhir+json")


async def build_request(request: Request, path: str, session: str, base_url: str, body_limit: int) -> FhirRequest:
    """Turn an HTTP request into a ``FhirRequest``: checks media types, size, and parses the JSON body."""
    query = parse_qsl(request.url.query, keep_blank_values=True)
    _check_accept(request, query)
    method = request.method.upper()
    segments = [s for s in path.strip("/").split("/") if s]
    content_type = request.headers.get("content-type")
    media = (content_type or "").split(";")[0].strip().lower()
    body: Any = None
    if method in ("POST", "PUT", "PATCH"):
        raw = await read_body(request, body_limit)
        if segments[-1:] == ["_search"] and method == "POST":
            if raw and media not in (_FORM, ""):
                raise UnsupportedMedia(f"POST _search takes {_FORM}, not {media}")
            query = query + parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)
        elif raw or method != "DELETE":
            allowed = _JSON_TYPES | (_PATCH_TYPES if method == "PATCH" else set())
            if media and media not in allowed:
                raise UnsupportedMedia(
                    f"content type {media!r} is not supported here; send application/fhir+json"
                    + (" or application/json-patch+json" if method == "PATCH" else "")
                )
            if not raw.strip():
                raise BadRequest(f"{method} needs a body")
            try:
                body = jsonio.loads(raw)
            except (ValueError, UnicodeDecodeError) as exc:
                raise BadRequest(f"the body is not valid JSON: {exc}") from None
    headers = request.headers
    return FhirRequest(
        method=method,
        path=segments,
        query=query,
        session=session,
        base_url=base_url,
        body=body,
        content_type=content_type,
        if_match=headers.get("if-match"),
        if_none_exist=headers.get("if-none-exist"),
        if_none_match=headers.get("if-none-match"),
        prefer=parse_prefer(headers.get("prefer")),
    )


def _http_date(instant: str) -> str:
    return format_datetime(datetime.fromisoformat(instant), usegmt=True)


def render(response: FhirResponse, req: FhirRequest) -> Response:
    """The HTTP response, honouring ``Prefer: return=minimal|representation|OperationOutcome``."""
    headers: dict[str, str] = {}
    if response.etag:
        headers["ETag"] = response.etag
    if response.last_modified:
        headers["Last-Modified"] = _http_date(response.last_modified)
    if response.location:
        headers["Location"] = response.location
        headers["Content-Location"] = response.location
    body: Any = response.body
    wants = req.prefer.get("return")
    # a batch/transaction (POST to the base) always answers with its response Bundle: Prefer applies to the
    # resources in its entries (bundles.py), not to the Bundle itself
    is_write = req.method in ("POST", "PUT", "PATCH") and req.path[-1:] != ["_search"] and bool(req.path)
    head = req.method == "HEAD"
    if wants == "minimal" and is_write:
        body = None
    elif wants == "operationoutcome" and is_write:
        body = operation_outcome("information", "informational", f"{response.status}: done")
    if response.status == 304 or head or body is None:
        return Response(status_code=response.status, headers=headers, media_type=FHIR_JSON if not head else None)
    content = jsonio.dumps(body) if not isinstance(body, bytes) else body
    return Response(content=content, status_code=response.status, headers=headers, media_type=FHIR_JSON)


def error_response(error: FhirError) -> Response:
    return Response(content=jsonio.dumps(error.outcome()), status_code=error.status, media_type=FHIR_JSON)
