"""Protecting the API, so that the server can play a protected staging endpoint (ServerSettings.auth).

- ``bearer``: every FHIR and admin request needs ``Authorization: Bearer <token>``, one of the configured tokens.
- ``smart``: SMART Backend Services (SMART App Launch 2.2, backend-services.html) as well. A client discovers
  ``{fhir base}/.well-known/smart-configuration`` (or the CapabilityStatement's oauth-uris extension) and posts
  ``grant_type=client_credentials`` to ``/auth/token``, authenticating with a JWT signed by a key of its registered
  JWKS (private_key_jwt: RS384 or ES384) or with HTTP Basic (client_secret_basic). It gets an opaque access token
  that is good until ``token_lifetime`` runs out. Configured static tokens are accepted too.

Without a valid token a request gets 401 with an OperationOutcome (code ``login``) and a ``WWW-Authenticate:
Bearer`` challenge (RFC 6750 §3). ``metadata`` and the discovery document stay public: a client needs them to
find the token endpoint. Tokens are kept as SHA-256 digests, and never logged nor echoed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote_plus

import jwt
from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from . import jsonio
from .errors import operation_outcome
from .http import FHIR_JSON, read_body
from .messages import FhirRequest
from .settings import AuthConfig, ServerSettings
from .storage.repository import DEFAULT_SESSION

if TYPE_CHECKING:
    from .service import FhirService

__all__ = ["ASSERTION_TYPE", "TOKEN_PATH", "Authority", "OAuthError", "install_auth"]

TOKEN_PATH = "/auth/token"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SIGNING_ALGS = ("RS384", "ES384")  # SMART backend services: the server SHALL support both
MAX_ASSERTION_LIFETIME = 300  # a client assertion's exp is at most five minutes ahead
CLOCK_SKEW = 10  # seconds of leeway either way when checking exp and nbf
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
REALM = "fhir-sandbox"
_FORM = "application/x-www-form-urlencoded"
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}  # RFC 6749 §5.1
_SCOPE = re.compile(r"^(system|user|patient)/([A-Za-z]+|\*)\.([a-z*]+)(\?.*)?$")
_V1_PERMISSIONS = {"read": "rs", "write": "cud", "*": "cruds"}


class OAuthError(Exception):
    """A token request that fails (RFC 6749 §5.2): ``error`` is the code, ``description`` says why."""

    def __init__(self, error: str, description: str):
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = 401 if error == "invalid_client" else 400


@dataclass
class _Issued:
    client_id: str
    scope: str
    expires_at: float


@dataclass
class _Client:
    client_id: str
    scope: str
    keys: dict[str, tuple[jwt.PyJWK, dict[str, Any]]] = field(default_factory=dict)  # kid -> (key, its JWK)
    secret: bytes | None = None


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


class Authority:
    """Checks the bearer token of each request and, in ``smart`` mode, issues tokens at the token endpoint.

    ``clock`` gives the time in seconds since the epoch (tests move it forward to expire tokens).
    """

    def __init__(self, mode: str, config: AuthConfig, clock: Callable[[], float] = time.time):
        self.mode = mode
        self.lifetime = config.token_lifetime
        self.clock = clock
        self._static = {_digest(t.get_secret_value()) for t in config.bearer_tokens}
        self._tokens: dict[bytes, _Issued] = {}
        self._seen_jti: dict[tuple[str, str], float] = {}  # (client_id, jti) -> when it may be forgotten
        self._lock = threading.Lock()
        self._jwt_clients = {c.client_id: _jwt_client(c.client_id, c.scope, c.jwks) for c in config.clients}
        self._secret_clients = {
            c.client_id: _Client(c.client_id, c.scope, secret=c.client_secret.get_secret_value().encode())
            for c in config.secret_clients
        }
        clients = [*self._jwt_clients.values(), *self._secret_clients.values()]
        scopes = [s for c in clients for s in c.scope.split()]
        self.scopes_supported = list(dict.fromkeys(scopes)) or ["system/*.rs"]
        self._capabilities: dict[str, bytes] = {}

    # -- requests -------------------------------------------------------------------------------------------

    def problem(self, authorization: str | None) -> tuple[str, str | None] | None:
        """None when the request carries a valid token; otherwise (diagnostics, RFC 6750 error code or None)."""
        scheme, _, token = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer":
            return "this server needs an access token: send Authorization: Bearer <token>", None
        token = token.strip()
        if not token:
            return "the Authorization header has an empty bearer token", "invalid_token"
        digest = _digest(token)
        if digest in self._static:
            return None
        issued = self._tokens.get(digest)
        if issued is None:
            return "the access token is not valid here", "invalid_token"
        if issued.expires_at <= self.clock():
            return "the access token has expired; get a new one from the token endpoint", "invalid_token"
        return None

    # -- the token endpoint ---------------------------------------------------------------------------------

    def issue(self, form: Mapping[str, str], authorization: str | None, token_url: str) -> dict[str, Any]:
        """Answer a client_credentials token request (the form's fields), or raise OAuthError."""
        grant = form.get("grant_type")
        if not grant:
            raise OAuthError("invalid_request", "grant_type is missing")
        if grant != "client_credentials":
            raise OAuthError("unsupported_grant_type", "this server issues tokens for client_credentials only")
        client = self._authenticate(form, authorization, token_url)
        scope = _grant(form.get("scope"), client.scope)
        token = secrets.token_urlsafe(32)
        now = self.clock()
        with self._lock:
            self._tokens = {d: t for d, t in self._tokens.items() if t.expires_at > now}  # forget expired ones
            self._tokens[_digest(token)] = _Issued(client.client_id, scope, now + self.lifetime)
        return {"access_token": token, "token_type": "bearer", "expires_in": self.lifetime, "scope": scope}

    def _authenticate(self, form: Mapping[str, str], authorization: str | None, token_url: str) -> _Client:
        scheme, _, credentials = (authorization or "").strip().partition(" ")
        basic = scheme.lower() == "basic"
        assertion_type, assertion = form.get("client_assertion_type"), form.get("client_assertion")
        if "client_secret" in form:
            raise OAuthError("invalid_client", "client_secret_post is not supported: send the secret with HTTP Basic")
        if basic and (assertion_type or assertion):
            raise OAuthError("invalid_request", "use one client authentication method, not HTTP Basic and a JWT")
        if basic:
            return self._basic(credentials)
        if assertion_type or assertion:
            if assertion_type != ASSERTION_TYPE:
                raise OAuthError("invalid_client", f"client_assertion_type must be {ASSERTION_TYPE}")
            if not assertion:
                raise OAuthError("invalid_request", "client_assertion is missing")
            return self._private_key_jwt(assertion, token_url, form.get("client_id"))
        raise OAuthError(
            "invalid_client", "no client authentication: send a client_assertion (private_key_jwt) or HTTP Basic"
        )

    def _basic(self, credentials: str) -> _Client:
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            raise OAuthError("invalid_client", "the HTTP Basic credentials are malformed") from None
        client_id, colon, secret = decoded.partition(":")
        if not colon:
            raise OAuthError("invalid_client", "the HTTP Basic credentials are malformed")
        # RFC 6749 §2.3.1 form-encodes id and secret first; many clients do not: accept either
        for candidate_id, candidate_secret in ((client_id, secret), (unquote_plus(client_id), unquote_plus(secret))):
            client = self._secret_clients.get(candidate_id)
            if client and client.secret and hmac.compare_digest(candidate_secret.encode(), client.secret):
                return client
        raise OAuthError("invalid_client", "unknown client or wrong client secret")

    def _private_key_jwt(self, assertion: str, token_url: str, form_client_id: str | None) -> _Client:
        try:
            header = jwt.get_unverified_header(assertion)
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise OAuthError("invalid_client", "the client_assertion is not a well-formed JWT") from None
        alg = header.get("alg")
        if alg not in SIGNING_ALGS:
            raise OAuthError("invalid_client", f"the client_assertion is signed with {alg!r}; use RS384 or ES384")
        issuer = unverified.get("iss")
        client = self._jwt_clients.get(issuer) if isinstance(issuer, str) else None
        if client is None:
            raise OAuthError("invalid_client", "the client_assertion's iss is not a registered client")
        if form_client_id is not None and form_client_id != client.client_id:
            raise OAuthError("invalid_client", "client_id does not match the client_assertion's iss")
        kid = header.get("kid")
        found = client.keys.get(kid) if isinstance(kid, str) else None
        if found is None:
            raise OAuthError("invalid_client", f"the client's JWKS has no key with the client_assertion's kid {kid!r}")
        key, jwk = found
        if not _key_fits(jwk, alg):
            raise OAuthError("invalid_client", f"the key {kid!r} cannot verify {alg} signatures")
        try:
            claims = jwt.decode(
                assertion,
                key.key,
                algorithms=[alg],
                audience=token_url,
                issuer=client.client_id,
                # exp and nbf are checked below, against self.clock
                options={
                    "require": ["iss", "sub", "aud", "exp", "jti"],
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidAudienceError:
            raise OAuthError(
                "invalid_client", f"the client_assertion's aud must be the token URL {token_url}"
            ) from None
        except jwt.MissingRequiredClaimError as exc:
            raise OAuthError("invalid_client", f"the client_assertion has no {exc.claim} claim") from None
        except jwt.InvalidSignatureError:
            raise OAuthError(
                "invalid_client", f"the client_assertion's signature does not verify with key {kid!r}"
            ) from None
        except jwt.PyJWTError as exc:
            raise OAuthError("invalid_client", f"the client_assertion is not valid: {exc}") from None
        if claims.get("sub") != client.client_id:
            raise OAuthError("invalid_client", "the client_assertion's sub must equal its iss (the client_id)")
        self._check_times(claims)
        self._remember_jti(client.client_id, claims["jti"], float(claims["exp"]))
        return client

    def _check_times(self, claims: dict[str, Any]) -> None:
        now = self.clock()
        exp, nbf = claims["exp"], claims.get("nbf")
        if not isinstance(exp, int | float) or isinstance(exp, bool):
            raise OAuthError("invalid_client", "the client_assertion's exp must be a number of seconds")
        if exp <= now - CLOCK_SKEW:
            raise OAuthError("invalid_client", "the client_assertion has expired")
        if exp > now + MAX_ASSERTION_LIFETIME + CLOCK_SKEW:
            raise OAuthError("invalid_client", "the client_assertion's exp is more than five minutes ahead")
        if isinstance(nbf, int | float) and nbf > now + CLOCK_SKEW:
            raise OAuthError("invalid_client", "the client_assertion is not valid yet (nbf)")

    def _remember_jti(self, client_id: str, jti: Any, exp: float) -> None:
        if not isinstance(jti, str) or not jti:
            raise OAuthError("invalid_client", "the client_assertion's jti must be a non-empty string")
        now = self.clock()
        with self._lock:
            self._seen_jti = {k: until for k, until in self._seen_jti.items() if until > now}
            if (client_id, jti) in self._seen_jti:
                raise OAuthError("invalid_client", "the client_assertion's jti was used before (a replay)")
            # an assertion is refused once expired anyway: its jti need only be remembered until then
            self._seen_jti[(client_id, jti)] = exp + CLOCK_SKEW

    # -- discovery ------------------------------------------------------------------------------------------

    def smart_configuration(self, origin: str) -> dict[str, Any]:
        """``.well-known/smart-configuration`` (SMART App Launch 2.2 conformance.html)."""
        return {
            "token_endpoint": origin + TOKEN_PATH,
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_basic"],
            "token_endpoint_auth_signing_alg_values_supported": list(SIGNING_ALGS),
            "scopes_supported": self.scopes_supported,
            "capabilities": [
                "client-confidential-asymmetric",
                "client-confidential-symmetric",
                "permission-v1",
                "permission-v2",
            ],
        }

    def security(self, origin: str) -> dict[str, Any]:
        """``CapabilityStatement.rest.security``: the SMART oauth-uris extension names the token endpoint."""
        if self.mode != "smart":
            return {"description": "Every request needs Authorization: Bearer <token>; tokens are issued out of band."}
        return {
            "extension": [{"url": OAUTH_URIS, "extension": [{"url": "token", "valueUri": origin + TOKEN_PATH}]}],
            "service": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                            "code": "SMART-on-FHIR",
                        }
                    ],
                    "text": "SMART Backend Services (client_credentials)",
                }
            ],
            "description": (
                "SMART Backend Services: get a token at the token endpoint with a private_key_jwt client assertion "
                "(RS384 or ES384) or client_secret_basic; send it as Authorization: Bearer <token>."
            ),
        }

    def with_security(self, statement: bytes, req: FhirRequest) -> bytes:
        """The CapabilityStatement with ``rest.security`` (FhirService's capability hook)."""
        cached = self._capabilities.get(req.base_url)
        if cached is None:
            suffix = "/fhir" if req.session == DEFAULT_SESSION else f"/sessions/{req.session}/fhir"
            document = jsonio.loads(statement)
            document["rest"][0]["security"] = self.security(req.base_url.removesuffix(suffix))
            cached = jsonio.dumps(document)
            if len(self._capabilities) >= 64:
                self._capabilities.clear()
            self._capabilities[req.base_url] = cached
        return cached


def _jwt_client(client_id: str, scope: str, jwks: dict[str, Any]) -> _Client:
    client = _Client(client_id, scope)
    for jwk in jwks["keys"]:
        if jwk.get("use", "sig") != "sig":
            continue
        try:
            key = jwt.PyJWK(jwk)
        except jwt.PyJWTError as exc:
            raise ValueError(f"client {client_id!r}: key {jwk.get('kid')!r} is not a usable JWK: {exc}") from None
        client.keys[jwk["kid"]] = (key, jwk)
    return client


def _key_fits(jwk: dict[str, Any], alg: str) -> bool:
    if jwk.get("alg") not in (None, alg):
        return False
    if alg == "RS384":
        return bool(jwk.get("kty") == "RSA")
    return bool(jwk.get("kty") == "EC" and jwk.get("crv") == "P-384")


def _grant(requested: str | None, allowed: str) -> str:
    """The scopes to grant: all the client's when none are asked for, else those asked for that its own cover."""
    if not requested or not requested.strip():
        return allowed
    own = allowed.split()
    granted = [s for s in requested.split() if any(_covers(a, s) for a in own)]
    if not granted:
        raise OAuthError("invalid_scope", f"none of the requested scopes is allowed for this client ({allowed})")
    return " ".join(dict.fromkeys(granted))


def _covers(allowed: str, wanted: str) -> bool:
    """Whether scope ``allowed`` includes ``wanted``: SMART v1 (``.read``) and v2 (``.rs``) syntax."""
    a, w = _SCOPE.match(allowed), _SCOPE.match(wanted)
    if a is None or w is None:
        return allowed == wanted
    a_perms, w_perms = _permissions(a.group(3)), _permissions(w.group(3))
    if a_perms is None or w_perms is None:
        return False
    return (
        a.group(1) == w.group(1)
        and a.group(2) in ("*", w.group(2))
        and w_perms <= a_perms
        and (a.group(4) is None or a.group(4) == w.group(4))
    )


def _permissions(text: str) -> set[str] | None:
    letters = _V1_PERMISSIONS.get(text, text)
    return set(letters) if letters and set(letters) <= set("cruds") else None


# -- wiring into the app --------------------------------------------------------------------------------------


def _public(method: str, path: str) -> bool:
    """Paths anyone may call: the token endpoint, the API docs, and each FHIR base's metadata and discovery."""
    if path in (TOKEN_PATH, "/docs", "/docs/oauth2-redirect", "/openapi.json"):
        return True
    segments = [s for s in path.split("/") if s]
    if segments[:1] == ["fhir"]:
        rest = segments[1:]
    elif len(segments) >= 3 and segments[0] == "sessions" and segments[2] == "fhir":
        rest = segments[3:]
    else:
        return False
    return method in ("GET", "HEAD") and rest in (["metadata"], [".well-known", "smart-configuration"])


class RequireToken:
    """ASGI middleware: a request to anything but a public path needs a valid bearer token, or gets 401."""

    def __init__(self, app: ASGIApp, authority: Authority):
        self.app = app
        self.authority = authority

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _public(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        problem = self.authority.problem(Headers(scope=scope).get("authorization"))
        if problem is None:
            await self.app(scope, receive, send)
            return
        diagnostics, error = problem
        challenge = f'Bearer realm="{REALM}"' + (
            f', error="{error}", error_description="{diagnostics}"' if error else ""
        )
        outcome = operation_outcome("error", "login", diagnostics)
        response = Response(
            jsonio.dumps(outcome), status_code=401, media_type=FHIR_JSON, headers={"WWW-Authenticate": challenge}
        )
        await response(scope, receive, send)


def install_auth(
    app: FastAPI, settings: ServerSettings, service: FhirService, origin: Callable[[Request], str]
) -> Authority | None:
    """Protect ``app`` as ``settings.auth`` says; call before the FHIR routes are added (the discovery routes
    must come first). ``origin`` gives a request's public origin. Returns the Authority (None for "none")."""
    if settings.auth == "none":
        return None
    authority = Authority(settings.auth, settings.auth_config)
    service.capability_hook = authority.with_security
    app.add_middleware(RequireToken, authority=authority)
    if settings.auth == "smart":
        _add_smart_routes(app, authority, origin)
    return authority


def _add_smart_routes(app: FastAPI, authority: Authority, origin: Callable[[Request], str]) -> None:
    repository = app.state.repository

    @app.get("/fhir/.well-known/smart-configuration", summary="SMART configuration (default session)")
    async def smart_configuration(request: Request) -> Response:
        return _json(200, authority.smart_configuration(origin(request)))

    @app.get("/sessions/{session_id}/fhir/.well-known/smart-configuration", summary="SMART configuration (a session)")
    async def session_smart_configuration(request: Request, session_id: str) -> Response:
        await run_in_threadpool(repository.session, session_id)  # 404 for an unknown session
        return _json(200, authority.smart_configuration(origin(request)))

    @app.post(TOKEN_PATH, summary="OAuth 2.0 token endpoint (SMART Backend Services, client_credentials)")
    async def token(request: Request) -> Response:
        media = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
        raw = await read_body(request, 64 * 1024)
        pairs = parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)
        form = dict(pairs)
        try:
            if media != _FORM:
                raise OAuthError("invalid_request", f"send the token request as {_FORM}")
            if len(form) != len(pairs):
                raise OAuthError("invalid_request", "a parameter appears more than once")
            answer = authority.issue(form, request.headers.get("authorization"), origin(request) + TOKEN_PATH)
        except OAuthError as exc:
            headers = dict(_NO_STORE)
            if exc.status == 401:
                headers["WWW-Authenticate"] = f'Basic realm="{REALM}"'
            return _json(exc.status, {"error": exc.error, "error_description": exc.description}, headers)
        return _json(200, answer, dict(_NO_STORE))


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(jsonio.dumps(body), status_code=status, media_type="application/json", headers=headers)
