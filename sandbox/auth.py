"""Authorising our HTTP client against a FHIR endpoint: no auth, a static bearer token, SMART Backend Services
(private_key_jwt), or a client secret (client_credentials with HTTP Basic).

``make_auth`` turns ``AuthOptions`` into an ``httpx.Auth`` that puts ``Authorization: Bearer`` on every request.
For SMART (SMART App Launch 2.2, backend-services.html) it discovers the token endpoint at
``{base}/.well-known/smart-configuration`` (or the CapabilityStatement's oauth-uris extension), posts a
``client_credentials`` request with a JWT assertion (iss = sub = client_id, aud = the token URL, exp at most five
minutes ahead, a fresh jti, header kid and typ JWT, RS384 or ES384), keeps the access token until shortly before it
expires, and mints a new one once when the server answers 401.

Secrets stay secret: the options hold only the *names* of environment variables and the *path* of the key; tokens,
secrets and keys appear in no repr, message or exception. Every failure is an ``AuthError`` with one line saying
what went wrong (the OAuth error code and status, never the token). ``AuthError`` is an ``httpx.HTTPError``, so an
episode that meets one ends as an infrastructure error, never as the agent's failure.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Generator, Mapping
from pathlib import Path
from typing import Any, Literal

import httpx
import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import BaseModel, Field

__all__ = [
    "ASSERTION_TYPE",
    "AuthError",
    "AuthMode",
    "AuthOptions",
    "BearerTokenAuth",
    "ClientSecretAuth",
    "SmartBackendAuth",
    "default_scope",
    "discover_token_url",
    "jwks",
    "make_auth",
]

AuthMode = Literal["none", "bearer", "smart-backend", "client-secret"]
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
# exp of an assertion: the spec allows five minutes; four leave room for a server clock a minute behind ours
ASSERTION_SECONDS = 240
DEFAULT_TOKEN_SECONDS = 300  # when a token response has no expires_in
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


class AuthError(httpx.HTTPError):
    """Authorisation failed: a missing secret, an unreadable key, discovery, the token request, or a token the
    FHIR server rejected. The message is one line and never contains a token, secret or key."""


class AuthOptions(BaseModel):
    """How to authorise against an endpoint. Holds no secret: only environment variable names and a key path."""

    mode: AuthMode = Field("none", description="none, bearer, smart-backend or client-secret.")
    token_env: str = Field("FHIR_TOKEN", description="bearer: the environment variable holding the token.")
    client_id: str | None = Field(None, description="smart-backend, client-secret: the registered client id.")
    key_path: Path | None = Field(None, description="smart-backend: the PEM private key (RSA or EC P-384).")
    alg: Literal["RS384", "ES384"] | None = Field(None, description="The signing algorithm (default: the key's).")
    kid: str | None = Field(None, description="The key id in the JWT header (default: the key's RFC 7638 thumbprint).")
    scope: str | None = Field(None, description="Scopes to ask for (default: system/*.rs, system/*.cruds to write).")
    client_secret_env: str = Field(
        "FHIR_CLIENT_SECRET", description="client-secret: the environment variable holding the secret."
    )
    token_url: str | None = Field(None, description="The token endpoint, instead of discovering it.")


def default_scope(writes: bool) -> str:
    """SMART v2 system scopes: read and search everything, or also create, update and delete."""
    return "system/*.cruds" if writes else "system/*.rs"


def make_auth(
    options: AuthOptions,
    fhir_base_url: str,
    http: httpx.Client,
    writes: bool = False,
    clock: Callable[[], float] = time.time,
) -> httpx.Auth | None:
    """The ``httpx.Auth`` for ``options`` (None for mode none).

    ``http`` sends the discovery and token requests (always without this auth, so it may be the very client the
    auth is set on). ``writes`` picks the default scope. Secrets are read from the environment and the key is
    loaded now, so a missing one fails here; no request is made until the first one that needs a token.

    Raises:
        AuthError: a missing option, environment variable or key.
    """
    if options.mode == "none":
        return None
    if options.mode == "bearer":
        return BearerTokenAuth(_from_env(options.token_env, "the bearer token"), options.token_env)
    if not options.client_id:
        raise AuthError(f"--auth {options.mode} needs --client-id")
    scope = options.scope or default_scope(writes)
    if options.mode == "client-secret":
        secret = _from_env(options.client_secret_env, "the client secret")
        return ClientSecretAuth(
            options.client_id, secret, fhir_base_url, http, scope, token_url=options.token_url, clock=clock
        )
    if options.key_path is None:
        raise AuthError("--auth smart-backend needs --key (the PEM private key of the registered JWKS)")
    key = _load_key(options.key_path)
    return SmartBackendAuth(
        options.client_id,
        key,
        fhir_base_url,
        http,
        scope,
        alg=_alg(key, options.alg, options.key_path),
        kid=options.kid,
        token_url=options.token_url,
        clock=clock,
    )


class BearerTokenAuth(httpx.Auth):
    """A static token (from an environment variable); a 401 is an AuthError (nothing can renew it)."""

    def __init__(self, token: str, source: str = "the environment"):
        self._token = token
        self.source = source

    def __repr__(self) -> str:
        return f"BearerTokenAuth(from ${self.source})"

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token}"
        response = yield request
        if response.status_code == 401:
            challenge = _challenge(response)
            raise AuthError(
                f"the bearer token from ${self.source} was rejected (HTTP 401{challenge}) at {_where(request)}"
            )

    async def async_auth_flow(self, request: httpx.Request) -> Any:
        raise NotImplementedError("fhir-sandbox auth works with httpx.Client, not AsyncClient")
        yield request  # pragma: no cover - makes this an async generator


class _TokenAuth(httpx.Auth):
    """An access token from a client_credentials grant: cached until shortly before it expires, minted again
    when the server answers 401 (once per request). Thread-safe: concurrent episodes share one token.
    ``clock`` (seconds) times the cache only."""

    def __init__(
        self,
        client_id: str,
        fhir_base_url: str,
        http: httpx.Client,
        scope: str,
        token_url: str | None,
        clock: Callable[[], float],
    ):
        self.client_id = client_id
        self.fhir_base_url = fhir_base_url.rstrip("/")
        self.scope = scope
        self.token_url = token_url
        self.tokens_issued = 0  # how many tokens this auth obtained (tests check caching with it)
        self._http = http
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0
        self._refresh_at = 0.0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(client_id={self.client_id!r}, token_url={self.token_url!r})"

    def access_token(self) -> str:
        """A valid access token (the cached one, or a new one): for a library that takes a token, not an Auth.

        Raises:
            AuthError: discovery or the token request failed.
        """
        with self._lock:
            if self._token is None or self._clock() >= self._refresh_at:
                self._mint()
            assert self._token is not None
            return self._token

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.read()  # a streamed body could not be sent again after a 401
        token = self.access_token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code != 401:
            return
        with self._lock:
            if self._token == token:  # not renewed by another thread meanwhile
                self._mint()
            token = self._token or ""
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            raise AuthError(
                f"a newly issued access token was rejected (HTTP 401{_challenge(response)}) at {_where(request)}"
            )

    async def async_auth_flow(self, request: httpx.Request) -> Any:
        raise NotImplementedError("fhir-sandbox auth works with httpx.Client, not AsyncClient")
        yield request  # pragma: no cover - makes this an async generator

    def _mint(self) -> None:
        """A new token into the cache (the lock is held)."""
        if self.token_url is None:
            self.token_url = discover_token_url(self.fhir_base_url, self._http)
        form = {"grant_type": "client_credentials", "scope": self.scope}
        sent_at = self._clock()
        response = self._post(self.token_url, form)
        token, lifetime = _token_from(response, self.token_url, self._secrets())
        self._token = token
        self._expires_at = sent_at + lifetime
        self._refresh_at = self._expires_at - min(60.0, lifetime * 0.2)  # renew a little before it runs out
        self.tokens_issued += 1

    def _post(self, url: str, form: dict[str, str]) -> httpx.Response:
        raise NotImplementedError

    def _secrets(self) -> list[str]:
        return []

    def _send(self, url: str, form: dict[str, str], auth: httpx.Auth | None = None) -> httpx.Response:
        headers = {"Accept": "application/json"}
        try:
            # auth=None: never this auth's own flow, even when self._http is the client it is set on
            return self._http.post(url, data=form, headers=headers, auth=auth)  # type: ignore[arg-type]
        except httpx.HTTPError as exc:
            raise AuthError(f"the token request to {url} failed: {type(exc).__name__}: {exc}") from None


class SmartBackendAuth(_TokenAuth):
    """SMART Backend Services: client_credentials with a private_key_jwt assertion (RS384 or ES384)."""

    def __init__(
        self,
        client_id: str,
        key: PrivateKey,
        fhir_base_url: str,
        http: httpx.Client,
        scope: str = "system/*.rs",
        alg: Literal["RS384", "ES384"] | None = None,
        kid: str | None = None,
        token_url: str | None = None,
        clock: Callable[[], float] = time.time,
    ):
        super().__init__(client_id, fhir_base_url, http, scope, token_url, clock)
        self._key = key
        self.alg = alg or _alg(key, None, None)
        self.kid = kid or _thumbprint(_public_jwk(key))

    def __repr__(self) -> str:
        return f"SmartBackendAuth(client_id={self.client_id!r}, alg={self.alg}, kid={self.kid!r})"

    def assertion(self, token_url: str) -> str:
        """A signed client assertion for ``token_url``: good for ASSERTION_SECONDS, with a fresh jti."""
        now = int(time.time())  # the server's clock judges it: never the (test-settable) cache clock
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": token_url,
            "exp": now + ASSERTION_SECONDS,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self._key, algorithm=self.alg, headers={"kid": self.kid, "typ": "JWT"})

    def _post(self, url: str, form: dict[str, str]) -> httpx.Response:
        form = form | {"client_assertion_type": ASSERTION_TYPE, "client_assertion": self.assertion(url)}
        return self._send(url, form)


class ClientSecretAuth(_TokenAuth):
    """client_credentials with a client secret, sent with HTTP Basic (client_secret_basic)."""

    def __init__(
        self,
        client_id: str,
        secret: str,
        fhir_base_url: str,
        http: httpx.Client,
        scope: str = "system/*.rs",
        token_url: str | None = None,
        clock: Callable[[], float] = time.time,
    ):
        super().__init__(client_id, fhir_base_url, http, scope, token_url, clock)
        self._secret = secret

    def _post(self, url: str, form: dict[str, str]) -> httpx.Response:
        return self._send(url, form, auth=httpx.BasicAuth(self.client_id, self._secret))

    def _secrets(self) -> list[str]:
        return [self._secret]


def discover_token_url(fhir_base_url: str, http: httpx.Client) -> str:
    """The token endpoint: from ``{base}/.well-known/smart-configuration``, else the CapabilityStatement's
    oauth-uris extension.

    Raises:
        AuthError: neither names one.
    """
    base = fhir_base_url.rstrip("/")
    url = f"{base}/.well-known/smart-configuration"
    answer = _get_json(url, http)
    if isinstance(answer, dict) and isinstance(answer.get("token_endpoint"), str):
        return str(answer["token_endpoint"])
    statement = _get_json(f"{base}/metadata", http)
    for rest in statement.get("rest", ()) if isinstance(statement, dict) else ():
        for extension in rest.get("security", {}).get("extension", ()):
            if extension.get("url") == OAUTH_URIS:
                for uri in extension.get("extension", ()):
                    if uri.get("url") == "token" and isinstance(uri.get("valueUri"), str):
                        return str(uri["valueUri"])
    status = answer if isinstance(answer, int) else 200
    raise AuthError(f"found no token endpoint: {url} answered HTTP {status}, and the CapabilityStatement names none")


def jwks(key_path: Path, kid: str | None = None, alg: Literal["RS384", "ES384"] | None = None) -> dict[str, Any]:
    """The public JWKS of a private key file, to register the client with a server (the kid defaults to the
    key's thumbprint, as the client's does).

    Raises:
        AuthError: the key cannot be read.
    """
    key = _load_key(key_path)
    public = _public_jwk(key)
    return {"keys": [public | {"kid": kid or _thumbprint(public), "alg": _alg(key, alg, key_path), "use": "sig"}]}


# -- helpers ------------------------------------------------------------------------------------------------------


def _from_env(name: str, what: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise AuthError(f"{what} is read from the environment variable {name}, which is not set")
    return value


def _load_key(path: Path) -> PrivateKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AuthError(f"cannot read the private key {path}: {exc.strerror or type(exc).__name__}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise AuthError(f"{path} is not an unencrypted PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise AuthError(f"{path} is neither an RSA nor an EC private key (RS384 or ES384)")
    return key


def _alg(key: PrivateKey, wanted: str | None, path: Path | None) -> Literal["RS384", "ES384"]:
    where = f" in {path}" if path else ""
    if isinstance(key, rsa.RSAPrivateKey):
        if wanted not in (None, "RS384"):
            raise AuthError(f"--alg {wanted} does not fit the RSA key{where}; RSA keys sign RS384")
        return "RS384"
    if not isinstance(key.curve, ec.SECP384R1):
        raise AuthError(f"the EC key{where} is on {key.curve.name}; ES384 needs P-384 (secp384r1)")
    if wanted not in (None, "ES384"):
        raise AuthError(f"--alg {wanted} does not fit the EC key{where}; P-384 keys sign ES384")
    return "ES384"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _public_jwk(key: PrivateKey) -> dict[str, str]:
    """The public key as a JWK with only its required members (RFC 7517, 7518)."""
    if isinstance(key, rsa.RSAPrivateKey):
        numbers = key.public_key().public_numbers()
        return {"kty": "RSA", "n": _b64(_int_bytes(numbers.n)), "e": _b64(_int_bytes(numbers.e))}
    point = key.public_key().public_numbers()
    size = (key.curve.key_size + 7) // 8
    return {
        "kty": "EC",
        "crv": "P-384",
        "x": _b64(point.x.to_bytes(size, "big")),
        "y": _b64(point.y.to_bytes(size, "big")),
    }


def _int_bytes(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")


def _thumbprint(jwk: Mapping[str, str]) -> str:
    """RFC 7638: SHA-256 of the required members, sorted, without whitespace."""
    canonical = json.dumps(dict(sorted(jwk.items())), separators=(",", ":"))
    return _b64(hashlib.sha256(canonical.encode()).digest())


def _get_json(url: str, http: httpx.Client) -> Any:
    """The JSON at ``url``, or the HTTP status when there is none."""
    try:
        response = http.get(url, headers={"Accept": "application/json"}, auth=None)  # type: ignore[arg-type]
    except httpx.HTTPError as exc:
        raise AuthError(f"SMART discovery at {url} failed: {type(exc).__name__}: {exc}") from None
    if response.status_code != 200:
        return response.status_code
    try:
        return response.json()
    except ValueError:
        return response.status_code


def _token_from(response: httpx.Response, url: str, secrets: list[str]) -> tuple[str, float]:
    """The access token and its lifetime in seconds.

    Raises:
        AuthError: an error answer (its status and OAuth error code), or no usable token in it.
    """
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200:
        error = body.get("error") if isinstance(body, dict) else None
        description = body.get("error_description") if isinstance(body, dict) else None
        detail = f" {error}" if isinstance(error, str) else ""
        if isinstance(description, str) and description:
            detail += f": {_scrub(description, secrets)[:200]}"
        raise AuthError(f"the token request to {url} was refused (HTTP {response.status_code}{detail})")
    # a 200 body holds the token: nothing of it goes into a message
    if not isinstance(body, dict) or not isinstance(body.get("access_token"), str) or not body["access_token"]:
        raise AuthError(f"the token response from {url} has no access_token")
    token_type = body.get("token_type")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise AuthError(f"the token response from {url} is not a bearer token (token_type {token_type!r})")
    expires_in = body.get("expires_in")
    lifetime = float(expires_in) if isinstance(expires_in, int | float) and expires_in > 0 else DEFAULT_TOKEN_SECONDS
    return str(body["access_token"]), lifetime


def _scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return " ".join(text.split())


def _where(request: httpx.Request) -> str:
    return f"{request.method} {request.url.copy_with(query=None)}"


def _challenge(response: httpx.Response) -> str:
    """The RFC 6750 error code of a 401's WWW-Authenticate challenge, if it has one."""
    challenge = response.headers.get("WWW-Authenticate", "")
    marker = 'error="'
    if marker in challenge:
        return ", " + challenge.split(marker, 1)[1].split('"', 1)[0]
    return ""
