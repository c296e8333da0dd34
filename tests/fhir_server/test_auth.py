"""The server as a protected endpoint (fhir_server/auth.py): static bearer tokens, and SMART Backend Services
(discovery, client_credentials with an RS384/ES384 private_key_jwt or client_secret_basic, opaque access tokens).

Most tests run the server in-process (LocalServer); one runs ``fhir-sandbox serve --auth smart`` in a child process,
as a staging client would meet it. Keys are made with cryptography, JWKS entries with PyJWT's ``to_jwk``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fhir_sandbox.cli import app as cli_app
from fhir_sandbox.fhir_server.auth import ASSERTION_TYPE, Authority
from fhir_sandbox.fhir_server.settings import AuthConfig, ServerSettings
from fhir_sandbox.server import LocalServer, ServerProcess
from fhirclient.client import FHIRClient
from fhirclient.models.patient import Patient
from fhirpy import AsyncFHIRClient, SyncFHIRClient
from fhirpy.base.exceptions import AuthorizationError
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from typer.testing import CliRunner

STATIC = "static-token-for-tests"
SECRET = "s3cret+/=with%chars"  # '+' and '%' as they are: clients seldom form-encode Basic credentials

# -- keys and configuration -----------------------------------------------------------------------------------


class Keys:
    def __init__(self) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.other_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP384R1())
        self.ec256 = ec.generate_private_key(ec.SECP256R1())

    def config(self) -> dict[str, Any]:
        rsa_jwk = {**RSAAlgorithm.to_jwk(self.rsa.public_key(), as_dict=True), "kid": "rsa-1", "alg": "RS384"}
        ec_jwk = {**ECAlgorithm.to_jwk(self.ec.public_key(), as_dict=True), "kid": "ec-1"}
        ec256_jwk = {**ECAlgorithm.to_jwk(self.ec256.public_key(), as_dict=True), "kid": "ec256"}
        return {
            "bearer_tokens": [STATIC],
            "clients": [
                {"client_id": "rs-client", "jwks": {"keys": [rsa_jwk]}, "scope": "system/*.rs"},
                {"client_id": "es-client", "jwks": {"keys": [ec_jwk, ec256_jwk]}, "scope": "system/*.cruds"},
            ],
            "secret_clients": [{"client_id": "basic-client", "client_secret": SECRET, "scope": "system/*.rs"}],
            "token_lifetime": 300,
        }


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


@pytest.fixture(scope="module")
def smart(keys: Keys, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    database = tmp_path_factory.mktemp("auth") / "fhir.db"
    settings = ServerSettings(
        database=str(database), auth="smart", auth_config=AuthConfig.model_validate(keys.config())
    )
    with LocalServer(settings) as server:
        yield server


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30, verify=False) as client:
        yield client


def assertion(
    key: Any, token_url: str, *, client: str = "rs-client", alg: str = "RS384", kid: str = "rsa-1", **claims: Any
) -> str:
    """A client assertion as SMART backend services wants it; ``claims`` override (None drops a claim)."""
    now = int(time.time())
    body = {"iss": client, "sub": client, "aud": token_url, "exp": now + 240, "jti": uuid.uuid4().hex}
    body.update(claims)
    return jwt.encode({k: v for k, v in body.items() if v is not None}, key, algorithm=alg, headers={"kid": kid})


def form(client_assertion: str, **extra: str) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": client_assertion,
        **extra,
    }


def token_url(server: LocalServer | ServerProcess) -> str:
    return f"{server.url}/auth/token"


def get_token(http: httpx.Client, server: LocalServer | ServerProcess, keys: Keys) -> str:
    response = http.post(token_url(server), data=form(assertion(keys.rsa, token_url(server))))
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


# -- discovery ------------------------------------------------------------------------------------------------


def test_discovery_document_and_capability_security_are_public(smart: LocalServer, http: httpx.Client) -> None:
    config = http.get(f"{smart.url}/fhir/.well-known/smart-configuration")
    assert config.status_code == 200
    body = config.json()
    assert body["token_endpoint"] == f"{smart.url}/auth/token"
    assert body["grant_types_supported"] == ["client_credentials"]
    assert {"private_key_jwt", "client_secret_basic"} <= set(body["token_endpoint_auth_methods_supported"])
    assert body["token_endpoint_auth_signing_alg_values_supported"] == ["RS384", "ES384"]
    assert {"client-confidential-asymmetric", "permission-v2"} <= set(body["capabilities"])
    assert "system/*.rs" in body["scopes_supported"]

    session = http.post(f"{smart.url}/sessions", headers={"Authorization": f"Bearer {STATIC}"}, json={}).json()
    in_session = http.get(f"{session['fhir_base_url']}/.well-known/smart-configuration")
    assert in_session.status_code == 200 and in_session.json() == body
    assert http.get(f"{smart.url}/sessions/no-such-session/fhir/.well-known/smart-configuration").status_code == 404

    for base in (f"{smart.url}/fhir", session["fhir_base_url"]):
        statement = http.get(f"{base}/metadata")
        assert statement.status_code == 200
        security = statement.json()["rest"][0]["security"]
        (oauth,) = security["extension"]
        assert oauth["url"] == "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
        assert oauth["extension"] == [{"url": "token", "valueUri": f"{smart.url}/auth/token"}]
        assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"


# -- the token endpoint ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
def test_a_signed_assertion_gets_a_token_that_opens_fhir_and_admin(
    smart: LocalServer, http: httpx.Client, keys: Keys, alg: str
) -> None:
    key, client, kid = (keys.rsa, "rs-client", "rsa-1") if alg == "RS384" else (keys.ec, "es-client", "ec-1")
    response = http.post(token_url(smart), data=form(assertion(key, token_url(smart), client=client, alg=alg, kid=kid)))
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 300
    assert body["scope"] == ("system/*.rs" if alg == "RS384" else "system/*.cruds")
    assert len(body["access_token"]) >= 32
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    assert http.get(f"{smart.url}/fhir/Patient", headers=headers).status_code == 200
    assert http.get(f"{smart.url}/sessions", headers=headers).status_code == 200


def test_requested_scopes_are_granted_when_the_clients_own_cover_them(
    smart: LocalServer, http: httpx.Client, keys: Keys
) -> None:
    url = token_url(smart)
    asked = "system/Observation.rs system/Patient.read launch/patient"
    granted = http.post(url, data=form(assertion(keys.rsa, url), scope=asked))
    assert granted.status_code == 200 and granted.json()["scope"] == "system/Observation.rs system/Patient.read"
    refused = http.post(url, data=form(assertion(keys.rsa, url), scope="system/Observation.cud"))
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_scope"


def _relabel(token: str) -> str:
    """``token`` with its header's alg changed to ES384 (PyJWT refuses to sign ES384 with a P-256 key)."""
    _, payload, signature = token.split(".")
    header = jwt.get_unverified_header(token) | {"alg": "ES384"}
    encoded = base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=").decode()
    return f"{encoded}.{payload}.{signature}"


def _bad_assertions(keys: Keys, url: str) -> dict[str, tuple[str, str]]:
    """name -> (assertion, a phrase the error_description holds)."""
    now = int(time.time())
    hs256 = jwt.encode({"iss": "rs-client", "sub": "rs-client", "aud": url, "exp": now + 60, "jti": "h"}, "k" * 32)
    unsigned = jwt.encode(
        {"iss": "rs-client", "sub": "rs-client", "aud": url, "exp": now + 60, "jti": "n"},
        None,
        algorithm="none",
        headers={"kid": "rsa-1"},
    )
    return {
        "wrong aud": (assertion(keys.rsa, url + "/other"), "aud"),
        "fhir base as aud": (assertion(keys.rsa, url.replace("/auth/token", "/fhir")), "aud"),
        "expired": (assertion(keys.rsa, url, exp=now - 60), "expired"),
        "exp too far ahead": (assertion(keys.rsa, url, exp=now + 600), "five minutes"),
        "no exp": (assertion(keys.rsa, url, exp=None), "exp"),
        "no jti": (assertion(keys.rsa, url, jti=None), "jti"),
        "unknown kid": (assertion(keys.rsa, url, kid="rsa-2"), "kid"),
        "signed by another key": (assertion(keys.other_rsa, url), "signature"),
        "unknown client": (assertion(keys.rsa, url, client="nobody"), "registered"),
        "sub is not iss": (assertion(keys.rsa, url, sub="someone-else"), "sub"),
        "HS256": (hs256, "HS256"),
        "alg none": (unsigned, "none"),
        "RS256": (assertion(keys.rsa, url, alg="RS256"), "RS256"),
        "ES384 with a P-256 key": (
            _relabel(assertion(keys.ec256, url, client="es-client", alg="ES256", kid="ec256")),
            "ec256",
        ),
        "garbage": ("not-a-jwt", "JWT"),
    }


def test_bad_client_assertions_are_refused_as_invalid_client(
    smart: LocalServer, http: httpx.Client, keys: Keys
) -> None:
    url = token_url(smart)
    for name, (bad, phrase) in _bad_assertions(keys, url).items():
        response = http.post(url, data=form(bad))
        assert response.status_code == 401, (name, response.text)
        body = response.json()
        assert body["error"] == "invalid_client", name
        assert phrase in body["error_description"], (name, body)
        assert bad not in response.text


def test_a_replayed_jti_is_refused(smart: LocalServer, http: httpx.Client, keys: Keys) -> None:
    url = token_url(smart)
    once = assertion(keys.rsa, url)
    assert http.post(url, data=form(once)).status_code == 200
    replay = http.post(url, data=form(once))
    assert replay.status_code == 401
    assert replay.json()["error"] == "invalid_client" and "replay" in replay.json()["error_description"]
    # the same jti from another client is that client's own
    jti = jwt.decode(once, options={"verify_signature": False})["jti"]
    other = assertion(keys.ec, url, client="es-client", alg="ES384", kid="ec-1", jti=jti)
    assert http.post(url, data=form(other)).status_code == 200


def test_malformed_token_requests(smart: LocalServer, http: httpx.Client, keys: Keys) -> None:
    url = token_url(smart)
    good = assertion(keys.rsa, url)

    def error(response: httpx.Response) -> tuple[int, str]:
        return response.status_code, response.json()["error"]

    assert error(http.post(url, data={"client_assertion": good})) == (400, "invalid_request")
    wrong_grant = {**form(good), "grant_type": "authorization_code"}
    assert error(http.post(url, data=wrong_grant)) == (400, "unsupported_grant_type")
    assert error(http.post(url, data={"grant_type": "client_credentials"})) == (401, "invalid_client")
    assert error(http.post(url, json=form(good))) == (400, "invalid_request")  # not a form
    wrong_type = {**form(good), "client_assertion_type": "urn:other"}
    assert error(http.post(url, data=wrong_type)) == (401, "invalid_client")
    both = http.post(url, data=form(assertion(keys.rsa, url)), auth=("basic-client", SECRET))
    assert error(both) == (400, "invalid_request")
    posted_secret = {"grant_type": "client_credentials", "client_id": "basic-client", "client_secret": SECRET}
    refused = http.post(url, data=posted_secret)
    assert error(refused) == (401, "invalid_client") and SECRET not in refused.text
    mismatched = {**form(assertion(keys.rsa, url)), "client_id": "es-client"}
    assert error(http.post(url, data=mismatched)) == (401, "invalid_client")
    repeated = http.post(url, content=f"grant_type=client_credentials&grant_type=x&client_assertion={good}",
                         headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert error(repeated) == (400, "invalid_request")
    assert http.get(url).status_code == 405


def test_client_secret_basic(smart: LocalServer, http: httpx.Client) -> None:
    url = token_url(smart)
    data = {"grant_type": "client_credentials"}
    response = http.post(url, data=data, auth=("basic-client", SECRET))
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    assert http.get(f"{smart.url}/fhir/Patient", headers={"Authorization": f"Bearer {token}"}).status_code == 200

    # RFC 6749 §2.3.1 form-encodes id and secret before Basic; that works too
    from urllib.parse import quote_plus

    encoded = base64.b64encode(f"basic-client:{quote_plus(SECRET)}".encode()).decode()
    assert http.post(url, data=data, headers={"Authorization": f"Basic {encoded}"}).status_code == 200

    for credentials in (("basic-client", "not-the-secret-42"), ("nobody", SECRET), ("rs-client", SECRET)):
        refused = http.post(url, data=data, auth=credentials)
        assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
        assert refused.headers["www-authenticate"].startswith("Basic ")
        assert credentials[1] not in refused.text
    malformed = http.post(url, data=data, headers={"Authorization": "Basic !!!"})
    assert malformed.status_code == 401


# -- protected requests ---------------------------------------------------------------------------------------


def test_requests_without_a_valid_token_get_401_with_an_operation_outcome(
    smart: LocalServer, http: httpx.Client
) -> None:
    for method, path in [("GET", "/fhir/Patient"), ("GET", "/sessions"), ("POST", "/sessions"), ("GET", "/nowhere")]:
        response = http.request(method, smart.url + path)
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"] == 'Bearer realm="fhir-sandbox"'
        assert response.headers["content-type"].startswith("application/fhir+json")
        (issue,) = response.json()["issue"]
        assert response.json()["resourceType"] == "OperationOutcome"
        assert issue["code"] == "login" and issue["severity"] == "error"

    made_up = "made-up-token-1234567890"
    for authorization in (f"Bearer {made_up}", "Bearer", f"Basic {made_up}"):
        response = http.get(f"{smart.url}/fhir/Patient", headers={"Authorization": authorization})
        assert response.status_code == 401
        assert made_up not in response.text and made_up not in str(response.headers)
    invalid = http.get(f"{smart.url}/fhir/Patient", headers={"Authorization": f"Bearer {made_up}"})
    assert 'error="invalid_token"' in invalid.headers["www-authenticate"]

    static = http.get(f"{smart.url}/fhir/Patient", headers={"Authorization": f"bearer {STATIC}"})
    assert static.status_code == 200  # configured bearer tokens work in smart mode too; the scheme is case-blind


def test_an_issued_token_expires(smart: LocalServer, http: httpx.Client, keys: Keys) -> None:
    token = get_token(http, smart, keys)
    headers = {"Authorization": f"Bearer {token}"}
    assert http.get(f"{smart.url}/fhir/Patient", headers=headers).status_code == 200
    authority: Authority = smart.app.state.auth
    try:
        authority.clock = lambda: time.time() + 301
        expired = http.get(f"{smart.url}/fhir/Patient", headers=headers)
    finally:
        authority.clock = time.time
    assert expired.status_code == 401
    assert 'error="invalid_token"' in expired.headers["www-authenticate"]
    assert "expired" in expired.json()["issue"][0]["diagnostics"]
    assert token not in expired.text


def test_bearer_mode(tmp_path: Path, http: httpx.Client) -> None:
    settings = ServerSettings(
        database=str(tmp_path / "b.db"), auth="bearer", auth_config=AuthConfig(bearer_tokens=["t-1", "t-2"])
    )
    with LocalServer(settings) as server:
        assert http.get(f"{server.url}/fhir/Patient").status_code == 401
        assert http.get(f"{server.url}/sessions").status_code == 401
        for token in ("t-1", "t-2"):
            ok = http.get(f"{server.url}/fhir/Patient", headers={"Authorization": f"Bearer {token}"})
            assert ok.status_code == 200
        wrong = http.get(f"{server.url}/fhir/Patient", headers={"Authorization": "Bearer t-3"})
        assert wrong.status_code == 401 and 'error="invalid_token"' in wrong.headers["www-authenticate"]
        statement = http.get(f"{server.url}/fhir/metadata")
        assert statement.status_code == 200 and "Bearer" in statement.json()["rest"][0]["security"]["description"]
        # no SMART here: no discovery, no token endpoint
        assert http.get(f"{server.url}/fhir/.well-known/smart-configuration").status_code == 404
        assert http.post(f"{server.url}/auth/token", data={"grant_type": "client_credentials"}).status_code == 404


def test_settings_need_credentials_for_the_mode_they_name(keys: Keys) -> None:
    with pytest.raises(ValueError, match="bearer_tokens"):
        ServerSettings(auth="bearer")
    with pytest.raises(ValueError, match="smart"):
        ServerSettings(auth="smart")
    with pytest.raises(ValueError, match="kid"):
        AuthConfig.model_validate({"clients": [{"client_id": "c", "jwks": {"keys": [{"kty": "RSA"}]}}]})
    private = {**RSAAlgorithm.to_jwk(keys.other_rsa, as_dict=True), "kid": "p"}
    with pytest.raises(ValueError, match="public keys only"):
        AuthConfig.model_validate({"clients": [{"client_id": "c", "jwks": {"keys": [private]}}]})
    with pytest.raises(ValueError, match="unique"):
        AuthConfig.model_validate(
            {"secret_clients": [{"client_id": "c", "client_secret": "a"}, {"client_id": "c", "client_secret": "b"}]}
        )
    assert STATIC not in repr(AuthConfig(bearer_tokens=[STATIC]))  # secrets stay out of logs and reprs


# -- clients --------------------------------------------------------------------------------------------------


def test_fhirpy_sync_and_async_with_a_token(smart: LocalServer, http: httpx.Client, keys: Keys) -> None:
    authorization = f"Bearer {get_token(http, smart, keys)}"
    client = SyncFHIRClient(f"{smart.url}/fhir", authorization=authorization, requests_config={"timeout": 30})
    patient = client.resource("Patient", name=[{"family": "Tokened"}], gender="female")
    patient.save()
    assert client.resources("Patient").search(family="Tokened").count() == 1

    async def read() -> Any:
        async_client = AsyncFHIRClient(f"{smart.url}/fhir", authorization=authorization)
        return await async_client.reference("Patient", patient.id).to_resource()

    assert asyncio.run(read())["name"] == [{"family": "Tokened"}]

    unauthorised = SyncFHIRClient(f"{smart.url}/fhir", requests_config={"timeout": 30})
    with pytest.raises(AuthorizationError, match="login"):
        unauthorised.resources("Patient").fetch()


def test_fhirclient_runs_the_backend_services_flow_from_the_capability_statement(
    smart: LocalServer, http: httpx.Client, keys: Keys
) -> None:
    created = http.post(
        f"{smart.url}/fhir/Patient",
        json={"resourceType": "Patient", "name": [{"family": "Smart"}]},
        headers={"Authorization": f"Bearer {STATIC}"},
    )
    patient_id = created.json()["id"]
    settings = {
        "app_id": "rs-client",
        "api_base": f"{smart.url}/fhir",
        "scope": "system/*.rs",
        "jwt_token": assertion(keys.rsa, token_url(smart)),  # fhirclient does not sign: it sends this one
    }
    client = FHIRClient(settings=settings)
    client.wants_patient = False
    assert client.prepare() is False  # read metadata: found the token endpoint, has no token yet
    client.authorize()  # POST /auth/token with the client assertion
    assert client.ready
    assert client.launch_context["scope"] == "system/*.rs"
    patient = Patient.read(patient_id, client.server)
    assert patient.name[0].family == "Smart"


# -- the real command -----------------------------------------------------------------------------------------


def test_serve_auth_smart_in_a_child_process(keys: Keys, tmp_path: Path) -> None:
    config = tmp_path / "auth.json"
    config.write_text(json.dumps(keys.config()))
    database = str(tmp_path / "p.db")
    serve_args = ["--auth", "smart", "--auth-config", str(config)]
    with ServerProcess(database, serve_args=serve_args) as server, httpx.Client(timeout=30) as http:
        discovery = http.get(f"{server.url}/fhir/.well-known/smart-configuration").json()
        url = discovery["token_endpoint"]
        assert url == token_url(server)
        assert http.get(f"{server.url}/fhir/Patient").status_code == 401
        token = http.post(url, data=form(assertion(keys.rsa, url))).json()["access_token"]
        response = http.get(f"{server.url}/fhir/Patient", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200 and response.json()["type"] == "searchset"


def test_serve_refuses_a_mode_without_credentials(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli_app, ["serve", "--database", str(tmp_path / "x.db"), "--auth", "bearer"])
    assert result.exit_code == 2
    assert "bearer_tokens" in result.output
    bad = tmp_path / "bad.json"
    bad.write_text('{"bearer_tokens": ["a"], "unknown": 1}')
    result = CliRunner().invoke(
        cli_app, ["serve", "--database", str(tmp_path / "x.db"), "--auth", "bearer", "--auth-config", str(bad)]
    )
    assert result.exit_code == 2 and "unknown" in result.output
