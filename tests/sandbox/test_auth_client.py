"""Our HTTP client's auth (sandbox/auth.py) against our server in a child process playing a protected staging
endpoint (``fhir-sandbox serve --auth smart``): a static bearer token from the environment, SMART Backend Services
with RS384 and ES384 keys (discovery, the assertion's claims, the token cached, renewed before expiry and after a
401), a client secret; one-line errors that hold no secret; and fhirpy and fhirclient with a token from it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import jwt
import pytest
from fhir_sandbox.auth import (
    AuthError,
    AuthOptions,
    ClientSecretAuth,
    SmartBackendAuth,
    discover_token_url,
    jwks,
    make_auth,
)
from fhir_sandbox.server import ServerProcess
from fhirclient.client import FHIRClient
from fhirclient.models.patient import Patient
from fhirpy import SyncFHIRClient
from staging_kit import (
    EC_CLIENT,
    RSA_CLIENT,
    SECRET,
    SECRET_CLIENT,
    SEEDED_PATIENT,
    STATIC,
    Keys,
    protected_server,
)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return Keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def server(keys: Keys, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with protected_server(tmp_path_factory.mktemp("staging"), keys) as running:
        yield running


class Traffic:
    """What went over the wire: (method, path, status) of every exchange, and the token requests' forms."""

    def __init__(self) -> None:
        self.exchanges: list[tuple[str, str, int]] = []
        self.token_forms: list[dict[str, str]] = []

    def client(self) -> httpx.Client:
        def on_response(response: httpx.Response) -> None:
            request = response.request
            self.exchanges.append((request.method, request.url.path, response.status_code))
            if request.url.path == "/auth/token":
                self.token_forms.append({k: v[0] for k, v in parse_qs(request.content.decode()).items()})

        return httpx.Client(timeout=30, event_hooks={"response": [on_response]})

    def count(self, path: str, status: int | None = None) -> int:
        return sum(p == path and (status is None or s == status) for _, p, s in self.exchanges)


def smart_options(keys: Keys, alg: str) -> AuthOptions:
    if alg == "RS384":
        return AuthOptions(mode="smart-backend", client_id=RSA_CLIENT, key_path=keys.rsa)
    return AuthOptions(mode="smart-backend", client_id=EC_CLIENT, key_path=keys.ec)


# -- SMART Backend Services ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
def test_smart_backend_discovers_signs_and_caches_the_token(server: ServerProcess, keys: Keys, alg: str) -> None:
    traffic = Traffic()
    base = f"{server.url}/fhir"
    with traffic.client() as http:
        auth = make_auth(smart_options(keys, alg), base, http)
        assert isinstance(auth, SmartBackendAuth) and auth.alg == alg
        http.auth = auth
        for _ in range(3):
            response = http.get(f"{base}/Patient/{SEEDED_PATIENT}")
            assert response.status_code == 200, response.text
    # discovered once, one token for the three requests
    assert traffic.count("/fhir/.well-known/smart-configuration") == 1
    assert traffic.count("/auth/token") == 1 and auth.tokens_issued == 1
    [form] = traffic.token_forms
    assert form["grant_type"] == "client_credentials" and form["scope"] == "system/*.rs"
    assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    token_url = f"{server.url}/auth/token"
    header = jwt.get_unverified_header(form["client_assertion"])
    assert (
        header["alg"] == alg
        and header["typ"] == "JWT"
        and header["kid"] == jwks(smart_options(keys, alg).key_path)["keys"][0]["kid"]
    )  # type: ignore[arg-type]
    public = jwt.PyJWK(jwks(smart_options(keys, alg).key_path)["keys"][0])  # type: ignore[arg-type]
    claims = jwt.decode(form["client_assertion"], public.key, algorithms=[alg], audience=token_url)
    client_id = RSA_CLIENT if alg == "RS384" else EC_CLIENT
    assert claims["iss"] == claims["sub"] == client_id and claims["aud"] == token_url
    assert 0 < claims["exp"] - time.time() <= 300
    assert auth.assertion(token_url) != auth.assertion(token_url)  # a fresh jti each time
    jtis = {jwt.decode(auth.assertion(token_url), options={"verify_signature": False})["jti"] for _ in range(5)}
    assert len(jtis) == 5


def test_the_token_is_renewed_before_it_expires_and_after_a_401(keys: Keys, tmp_path: Path) -> None:
    with protected_server(tmp_path / "short", keys, token_lifetime=1) as short:
        base = f"{short.url}/fhir"
        # renewed before expiry: a 1 s token is renewed after 0.8 s, so the server never answers 401
        traffic = Traffic()
        with traffic.client() as http:
            http.auth = make_auth(smart_options(keys, "RS384"), base, http)
            assert http.get(f"{base}/Patient").status_code == 200
            time.sleep(0.9)
            assert http.get(f"{base}/Patient").status_code == 200
        assert http.auth.tokens_issued == 2  # type: ignore[attr-defined]
        assert traffic.count("/fhir/Patient", 401) == 0

        # a cached token the server no longer takes (here: a clock that stands still) is minted again, once
        traffic = Traffic()
        frozen = time.time()
        with traffic.client() as http:
            http.auth = make_auth(smart_options(keys, "ES384"), base, http, clock=lambda: frozen)
            assert http.get(f"{base}/Patient").status_code == 200
            time.sleep(1.1)
            assert http.get(f"{base}/Patient").status_code == 200
        assert http.auth.tokens_issued == 2  # type: ignore[attr-defined]
        assert traffic.count("/fhir/Patient", 401) == 1 and traffic.count("/fhir/Patient", 200) == 2


def test_a_token_url_given_skips_discovery_and_scopes_follow_writes(server: ServerProcess, keys: Keys) -> None:
    traffic = Traffic()
    options = smart_options(keys, "RS384").model_copy(update={"token_url": f"{server.url}/auth/token"})
    with traffic.client() as http:
        http.auth = make_auth(options, f"{server.url}/fhir", http, writes=True)
        assert http.get(f"{server.url}/fhir/Patient").status_code == 200
    assert traffic.count("/fhir/.well-known/smart-configuration") == 0
    assert traffic.token_forms[0]["scope"] == "system/*.cruds"


def test_discovery_falls_back_to_the_capability_statement() -> None:
    statement = {
        "resourceType": "CapabilityStatement",
        "rest": [
            {
                "mode": "server",
                "security": {
                    "extension": [
                        {
                            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                            "extension": [{"url": "token", "valueUri": "https://auth.example.org/token"}],
                        }
                    ]
                },
            }
        ],
    }

    def remote(request: httpx.Request) -> httpx.Response:  # a remote server without a SMART configuration
        if request.url.path.endswith("/metadata"):
            return httpx.Response(200, json=statement)
        return httpx.Response(404)

    with httpx.Client(transport=httpx.MockTransport(remote)) as http:
        assert discover_token_url("https://fhir.example.org/r4", http) == "https://auth.example.org/token"
    nowhere = httpx.MockTransport(lambda _: httpx.Response(404))
    with httpx.Client(transport=nowhere) as http, pytest.raises(AuthError, match=r"no token endpoint: .* HTTP 404"):
        discover_token_url("https://fhir.example.org/r4", http)


# -- client secret and static bearer --------------------------------------------------------------------------------


def test_client_secret(server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_SECRET", SECRET)
    options = AuthOptions(mode="client-secret", client_id=SECRET_CLIENT, client_secret_env="MY_SECRET")
    with httpx.Client(timeout=30) as http:
        auth = make_auth(options, f"{server.url}/fhir", http)
        assert isinstance(auth, ClientSecretAuth)
        http.auth = auth
        assert http.get(f"{server.url}/fhir/Patient/{SEEDED_PATIENT}").status_code == 200
        assert SECRET not in repr(auth)

        monkeypatch.setenv("MY_SECRET", "wrong-" + SECRET)
        http.auth = make_auth(options, f"{server.url}/fhir", http)
        with pytest.raises(AuthError) as refused:
            http.get(f"{server.url}/fhir/Patient")
    message = str(refused.value)
    assert "was refused (HTTP 401 invalid_client" in message and SECRET not in message and "\n" not in message


def test_bearer_token_from_the_environment(server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FHIR_TOKEN", raising=False)
    with pytest.raises(AuthError, match="environment variable FHIR_TOKEN, which is not set"):
        make_auth(AuthOptions(mode="bearer"), f"{server.url}/fhir", httpx.Client())
    monkeypatch.setenv("FHIR_TOKEN", STATIC)
    with httpx.Client(timeout=30) as http:
        auth = make_auth(AuthOptions(mode="bearer"), f"{server.url}/fhir", http)
        assert auth is not None and STATIC not in repr(auth)
        http.auth = auth
        assert http.get(f"{server.url}/fhir/Patient/{SEEDED_PATIENT}").status_code == 200

        monkeypatch.setenv("FHIR_TOKEN", "not-" + STATIC)
        http.auth = make_auth(AuthOptions(mode="bearer"), f"{server.url}/fhir", http)  # type: ignore[assignment]
        with pytest.raises(AuthError) as rejected:
            http.get(f"{server.url}/fhir/Patient")
    message = str(rejected.value)
    assert message.startswith("the bearer token from $FHIR_TOKEN was rejected (HTTP 401, invalid_token) at GET ")
    assert STATIC not in message
    assert make_auth(AuthOptions(), f"{server.url}/fhir", httpx.Client()) is None


# -- configuration errors: one line each, nothing secret -------------------------------------------------------


def test_configuration_errors_are_one_clear_line(server: ServerProcess, keys: Keys, tmp_path: Path) -> None:
    base = f"{server.url}/fhir"
    not_a_key = tmp_path / "not-a-key.pem"
    not_a_key.write_text("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
    cases = {
        "--auth smart-backend needs --client-id": AuthOptions(mode="smart-backend", key_path=keys.rsa),
        "needs --key": AuthOptions(mode="smart-backend", client_id=RSA_CLIENT),
        "cannot read the private key": AuthOptions(
            mode="smart-backend", client_id=RSA_CLIENT, key_path=tmp_path / "missing.pem"
        ),
        "is not an unencrypted PEM private key": AuthOptions(
            mode="smart-backend", client_id=RSA_CLIENT, key_path=not_a_key
        ),
        "ES384 needs P-384": AuthOptions(mode="smart-backend", client_id=EC_CLIENT, key_path=keys.ec256),
        "--alg ES384 does not fit the RSA key": AuthOptions(
            mode="smart-backend", client_id=RSA_CLIENT, key_path=keys.rsa, alg="ES384"
        ),
        "the client secret is read from the environment variable NO_SUCH_VARIABLE": AuthOptions(
            mode="client-secret", client_id=SECRET_CLIENT, client_secret_env="NO_SUCH_VARIABLE"
        ),
    }
    with httpx.Client(timeout=30) as http:
        for expected, options in cases.items():
            with pytest.raises(AuthError) as failed:
                make_auth(options, base, http)
            assert expected in str(failed.value) and "\n" not in str(failed.value)

        # a client the server does not know: the status and the OAuth error code, from the token request
        unknown = make_auth(AuthOptions(mode="smart-backend", client_id="nobody", key_path=keys.rsa), base, http)
        assert isinstance(unknown, SmartBackendAuth)
        with pytest.raises(AuthError) as refused:
            unknown.access_token()
    message = str(refused.value)
    assert message.startswith(f"the token request to {server.url}/auth/token was refused (HTTP 401 invalid_client")
    assert not any(secret in message for secret in keys.secrets())


def test_a_server_without_smart_has_no_token_endpoint(tmp_path: Path, keys: Keys) -> None:
    with httpx.Client(transport=httpx.MockTransport(lambda _: httpx.Response(401))) as http:
        auth = make_auth(smart_options(keys, "RS384"), "https://fhir.example.org/r4", http)
        assert isinstance(auth, SmartBackendAuth)
        with pytest.raises(AuthError, match="found no token endpoint"):
            auth.access_token()


# -- other clients with our token ---------------------------------------------------------------------------------


def test_fhirpy_and_fhirclient_with_a_token_from_our_smart_client(server: ServerProcess, keys: Keys) -> None:
    base = f"{server.url}/fhir"
    with httpx.Client(timeout=30) as http:
        auth = make_auth(smart_options(keys, "ES384"), base, http)
        assert isinstance(auth, SmartBackendAuth)
        fhirpy = SyncFHIRClient(base, authorization=f"Bearer {auth.access_token()}", requests_config={"timeout": 30})
        patient = fhirpy.reference("Patient", SEEDED_PATIENT).to_resource()
        assert patient["name"][0]["family"] == "Seeded"

        # fhirclient runs the client_credentials flow itself; it does not sign, so it sends our assertion
        token_url = discover_token_url(base, http)
        settings = {
            "app_id": EC_CLIENT,
            "api_base": base,
            "scope": "system/*.rs",
            "jwt_token": auth.assertion(token_url),
        }
        smart = FHIRClient(settings=settings)
        smart.wants_patient = False
        smart.prepare()
        smart.authorize()
        assert smart.ready
        assert Patient.read(SEEDED_PATIENT, smart.server).name[0].family == "Seeded"
