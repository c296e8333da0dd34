"""The FastAPI application: the FHIR API at ``/fhir`` (the shared default session) and at
``/sessions/{id}/fhir`` (an episode's own view), plus the small session admin API. With ``settings.auth`` set,
auth.py protects both (and, for SMART, adds discovery and the token endpoint)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route

from . import jsonio
from .auth import install_auth
from .errors import BadRequest, FhirError, MethodNotAllowed, NotFound, operation_outcome
from .http import FHIR_JSON, build_request, error_response, render
from .openapi_docs import document_fhir_routes
from .searchparams import registry as default_registry
from .service import FhirService
from .settings import ServerSettings
from .storage.engine import make_engine
from .storage.records import SessionInfo
from .storage.repository import DEFAULT_SESSION, Repository

__all__ = ["create_app"]

_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
_FHIR_PATHS = ("/fhir", "/fhir/{path:path}", "/sessions/{session_id}/fhir", "/sessions/{session_id}/fhir/{path:path}")


class SessionCreate(BaseModel):
    """Body of ``POST /sessions``."""

    id: str | None = Field(None, description="Session id (default: generated)")
    now: datetime | None = Field(None, description="The session's clock, with an offset (default: wall clock)")
    label: str | None = Field(None, description="A free-text label, e.g. the scenario id")
    copy_of: str | None = Field(
        None, description="Start with a copy of this session's data (resources, versions; not its write log)"
    )


def create_app(settings: ServerSettings | None = None, repository: Repository | None = None) -> FastAPI:
    """Build the app over ``repository`` (or a new one on ``settings.database``)."""
    settings = settings or ServerSettings()
    if repository is None:
        repository = Repository(make_engine(settings.database), default_registry())
    service = FhirService(repository, settings)
    app = FastAPI(title="FHIR Agent Sandbox", version="0.1.0", docs_url="/docs", redoc_url=None)
    app.state.repository = repository
    app.state.service = service

    def origin(request: Request) -> str:
        return (settings.public_url or str(request.base_url)).rstrip("/")

    def fhir_base(request: Request, session: str) -> str:
        return f"{origin(request)}/fhir" if session == DEFAULT_SESSION else f"{origin(request)}/sessions/{session}/fhir"

    app.state.auth = install_auth(app, settings, service, origin)  # before the FHIR routes: it adds discovery

    async def fhir(request: Request, session: str, path: str) -> Response:
        req = await build_request(request, path, session, fhir_base(request, session), settings.max_body_bytes)
        response = await run_in_threadpool(service.handle, req)
        return render(response, req)

    async def fhir_endpoint(request: Request) -> Response:
        params = request.path_params
        return await fhir(request, params.get("session_id", DEFAULT_SESSION), params.get("path", ""))

    # plain Starlette routes: FastAPI's per-request parameter solving would cost more than serving a read does
    for path in _FHIR_PATHS:
        app.router.routes.append(Route(path, fhir_endpoint, methods=_METHODS, include_in_schema=False))
    document_fhir_routes(app, fhir_endpoint)  # after them: only their description in /docs

    @app.post("/sessions", status_code=201, summary="Create a session (an episode's copy-on-write view)")
    async def create_session(request: Request, body: SessionCreate | None = None) -> Response:
        body = body or SessionCreate()
        info = await run_in_threadpool(repository.create_session, body.id, body.now, body.label, body.copy_of)
        return _json(
            201,
            _session_json(info, fhir_base(request, info.id)),
            {"Location": f"{origin(request)}/sessions/{info.id}"},
        )

    @app.get("/sessions", summary="List sessions")
    async def list_sessions(request: Request) -> Response:
        infos = await run_in_threadpool(repository.list_sessions)
        return _json(200, [_session_json(i, fhir_base(request, i.id)) for i in infos])

    @app.get("/sessions/{session_id}", summary="Describe a session")
    async def get_session(request: Request, session_id: str) -> Response:
        info = await run_in_threadpool(repository.session, session_id)
        return _json(200, _session_json(info, fhir_base(request, info.id)))

    @app.delete("/sessions/{session_id}", status_code=204, summary="Delete a session and its writes")
    async def delete_session(session_id: str) -> Response:
        await run_in_threadpool(repository.delete_session, session_id)
        return Response(status_code=204)

    @app.get("/sessions/{session_id}/writes", summary="The session's write log, in order")
    async def session_writes(session_id: str) -> Response:
        entries = await run_in_threadpool(repository.write_log, session_id)
        return _json(
            200,
            [
                {
                    "seq": e.seq,
                    "at": e.at,
                    "method": e.method,
                    "url": e.url,
                    "type": e.type,
                    "id": e.id,
                    "version": e.version,
                    "status": e.status,
                    "request": e.request,
                }
                for e in entries
            ],
        )

    @app.exception_handler(FhirError)
    async def fhir_error(_request: Request, exc: FhirError) -> Response:
        return error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> Response:
        error: FhirError
        if exc.status_code == 404:
            error = NotFound(f"nothing here: {exc.detail}")
        elif exc.status_code == 405:
            error = MethodNotAllowed("method not allowed here")
        else:
            error = BadRequest(str(exc.detail))
            error.status = exc.status_code  # type: ignore[misc]
        return error_response(error)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return error_response(BadRequest(f"invalid request: {problems}"))

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> Response:
        outcome = operation_outcome("fatal", "exception", f"internal error: {type(exc).__name__}: {exc}")
        return Response(jsonio.dumps(outcome), status_code=500, media_type=FHIR_JSON)

    return app


def _session_json(info: SessionInfo, base_url: str) -> dict[str, Any]:
    return {
        "id": info.id,
        "now": info.now.isoformat() if info.now else None,
        "created": info.created.isoformat(),
        "label": info.label,
        "fhir_base_url": base_url,
    }


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(jsonio.dumps(body), status_code=status, media_type="application/json", headers=headers)
