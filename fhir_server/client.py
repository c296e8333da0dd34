"""A small synchronous FHIR R4 REST client bound to one base URL.

Agents' tools, graders and the episode runner all talk to a FHIR server through it, ours or a staging one. It
refuses any URL outside its base (a paging link, a reference a model made up): an agent's tools reach only the
server and session they were given. Every call returns the status and parsed body, never raises on a FHIR error
status, so that an agent is told the truth (the OperationOutcome) and a grader can say what went wrong.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import orjson

__all__ = ["FhirClient", "FhirReply", "OutsideBaseError"]

FHIR_JSON = "application/fhir+json"
SearchParams = Mapping[str, str | int | float | Sequence[str]] | Sequence[tuple[str, str]]


class OutsideBaseError(ValueError):
    """A URL that is not under the client's FHIR base URL."""


@dataclass(frozen=True)
class FhirReply:
    """One HTTP exchange: what was asked and what came back (``body`` is parsed JSON, or None)."""

    method: str
    url: str
    status: int
    body: Any
    location: str | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class FhirClient:
    """Requests under ``base_url`` only; ``http`` may be shared (connection pooling) and is closed by its owner."""

    def __init__(self, base_url: str, http: httpx.Client | None = None, headers: Mapping[str, str] | None = None):
        self.base_url = base_url.rstrip("/")
        self._http = http or httpx.Client(timeout=60, verify=not base_url.startswith("http://"))
        self._owns_http = http is None
        self._headers = {"Accept": FHIR_JSON, **(headers or {})}

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> FhirClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the REST interactions ---------------------------------------------------------------------------------

    def read(self, resource_type: str, resource_id: str) -> FhirReply:
        return self.request("GET", f"{resource_type}/{resource_id}")

    def vread(self, resource_type: str, resource_id: str, version: int | str) -> FhirReply:
        return self.request("GET", f"{resource_type}/{resource_id}/_history/{version}")

    def search(self, resource_type: str, params: SearchParams | None = None) -> FhirReply:
        return self.request("GET", resource_type, params=params)

    def create(self, resource: Mapping[str, Any]) -> FhirReply:
        return self.request("POST", str(resource.get("resourceType", "")), json=resource)

    def update(self, resource: Mapping[str, Any]) -> FhirReply:
        return self.request("PUT", f"{resource.get('resourceType', '')}/{resource.get('id', '')}", json=resource)

    def delete(self, resource_type: str, resource_id: str) -> FhirReply:
        return self.request("DELETE", f"{resource_type}/{resource_id}")

    def transaction(self, bundle: Mapping[str, Any]) -> FhirReply:
        return self.request("POST", "", json=bundle)

    def search_all(self, resource_type: str, params: SearchParams | None = None, limit: int = 100_000) -> list[Any]:
        """Every resource a search matches (``search`` entries only), following ``next`` links.

        Raises:
            RuntimeError: the server answered a page with an error status.
        """
        return [entry["resource"] for entry in self._entries(resource_type, params, limit)]

    def _entries(self, resource_type: str, params: SearchParams | None, limit: int) -> Iterator[dict[str, Any]]:
        reply = self.search(resource_type, params)
        seen = 0
        while True:
            if not reply.ok:
                raise RuntimeError(f"search {reply.url} failed with HTTP {reply.status}: {_summary(reply.body)}")
            bundle = reply.body or {}
            for entry in bundle.get("entry", ()):
                if entry.get("search", {}).get("mode", "match") == "match" and "resource" in entry:
                    seen += 1
                    if seen > limit:
                        return
                    yield entry
            next_url = next((link["url"] for link in bundle.get("link", ()) if link.get("relation") == "next"), None)
            if not next_url:
                return
            reply = self.request("GET", next_url)

    # -- plumbing -----------------------------------------------------------------------------------------------

    def url(self, path: str) -> str:
        """The absolute URL of ``path`` (relative to the base, or absolute under it).

        Raises:
            OutsideBaseError: ``path`` is an absolute URL outside the base.
        """
        url = path if "://" in path else (f"{self.base_url}/{path.lstrip('/')}" if path else self.base_url)
        if not _under(url, self.base_url):  # relative paths too: "../../other-session/fhir/Patient"
            raise OutsideBaseError(f"{path} is outside the FHIR base URL {self.base_url}")
        return url

    def request(self, method: str, path: str, params: SearchParams | None = None, json: Any = None) -> FhirReply:
        url = self.url(path)
        headers = dict(self._headers)
        content = None
        if json is not None:
            headers["Content-Type"] = FHIR_JSON
            content = orjson.dumps(json)
        query: list[tuple[str, str | int | float | bool | None]] | None = list(_query_items(params)) if params else None
        response = self._http.request(method, url, params=query, content=content, headers=headers)
        return FhirReply(
            method=method,
            url=str(response.url),
            status=response.status_code,
            body=_parse(response),
            location=response.headers.get("Location") or response.headers.get("Content-Location"),
        )


def _query_items(params: SearchParams) -> Iterator[tuple[str, str]]:
    items = params.items() if isinstance(params, Mapping) else params
    for name, value in items:
        if isinstance(value, (list, tuple)):
            yield from ((name, str(v)) for v in value)
        else:
            yield name, str(value)


def _under(url: str, base: str) -> bool:
    target, root = urlsplit(url), urlsplit(base)
    if (target.scheme, target.netloc) != (root.scheme, root.netloc):
        return False
    if any(unquote(segment) in (".", "..") for segment in target.path.split("/")):
        return False  # httpx resolves dot segments: /fhir/../../x would leave the base
    path, prefix = target.path.rstrip("/"), root.path.rstrip("/")
    return path == prefix or path.startswith(prefix + "/")


def _parse(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return response.text


def _summary(body: Any) -> str:
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        return "; ".join(i.get("diagnostics", "") for i in body.get("issue", ()))
    return str(body)[:200]
