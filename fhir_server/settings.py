"""Server settings: the knobs a deployment sets (page sizes are HAPI's defaults).

Besides paging, a deployment can protect the API (``auth``: see auth.py) and behave like a real EHR (realism.py:
``require_patient``, ``include_limit``, or a whole ``profile``)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

__all__ = ["PROFILES", "AuthConfig", "JwtClient", "SecretClient", "ServerSettings"]

# What each --profile sets, unless a setting is given explicitly (docs/server-differences.md, "Realism").
PROFILES: dict[str, dict[str, Any]] = {
    # hapi-fhir-jpaserver-starter: default_page_size 20, max_page_size 200; JpaStorageSettings
    # DEFAULT_MAXIMUM_INCLUDES_TO_LOAD_PER_PAGE = 1000
    "hapi": {"default_page_size": 20, "max_page_size": 200, "include_limit": 1000},
    # Epic: Observation needs patient plus code or category, other clinical types need patient. Epic publishes no
    # page-size limits we could confirm, so paging stays at the defaults.
    "epic": {"require_patient": True},
}


class JwtClient(BaseModel):
    """A SMART Backend Services client that authenticates with a JWT signed by a key in its JWKS."""

    model_config = ConfigDict(extra="forbid")

    client_id: str = Field(min_length=1)
    jwks: dict[str, Any] = Field(description='The client\'s public keys: {"keys": [JWK, ...]}, each with a "kid"')
    scope: str = Field("system/*.rs", description="The scopes this client may be granted, space separated")

    @field_validator("jwks")
    @classmethod
    def _keys_have_kids(cls, jwks: dict[str, Any]) -> dict[str, Any]:
        keys = jwks.get("keys")
        if not isinstance(keys, list) or not keys:
            raise ValueError('jwks must be {"keys": [...]} with at least one key')
        for key in keys:
            if not isinstance(key, dict) or not key.get("kid") or not key.get("kty"):
                raise ValueError("every key in jwks needs a kty and a kid")
            if "d" in key:
                raise ValueError(f"key {key['kid']!r} holds private key material: register public keys only")
        return jwks


class SecretClient(BaseModel):
    """A client that authenticates with a client secret (HTTP Basic, client_secret_basic)."""

    model_config = ConfigDict(extra="forbid")

    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    scope: str = Field("system/*.rs", description="The scopes this client may be granted, space separated")


class AuthConfig(BaseModel):
    """Who may call a protected server (``fhir-sandbox serve --auth-config FILE``, a JSON file of this shape)."""

    model_config = ConfigDict(extra="forbid")

    bearer_tokens: list[SecretStr] = Field(default_factory=list, description="Static tokens, accepted as they are")
    clients: list[JwtClient] = Field(default_factory=list, description="private_key_jwt clients")
    secret_clients: list[SecretClient] = Field(default_factory=list, description="client_secret_basic clients")
    token_lifetime: int = Field(300, ge=1, le=86400, description="Seconds an issued access token is valid")

    @model_validator(mode="after")
    def _unique_client_ids(self) -> AuthConfig:
        ids = [c.client_id for c in self.clients] + [c.client_id for c in self.secret_clients]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise ValueError(f"client ids must be unique; repeated: {', '.join(repeated)}")
        return self

    @classmethod
    def from_file(cls, path: str | Path) -> AuthConfig:
        """Read the JSON file. Raises ValueError (pydantic's ValidationError is one) on a bad file."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"cannot read the auth config {path}: {exc}") from None
        return cls.model_validate(data)


class ServerSettings(BaseModel):
    """Settings of one server instance."""

    database: str = Field(":memory:", description="SQLite file path, ':memory:', or a SQLAlchemy URL")
    public_url: str | None = Field(
        None,
        description="The origin clients reach the server at (e.g. https://fhir.example.org); default: the request's",
    )
    default_page_size: int = Field(20, ge=1, description="_count when a search gives none (HAPI: 20)")
    max_page_size: int = Field(200, ge=1, description="The largest _count honoured (HAPI: 200)")
    max_body_bytes: int = Field(64 * 1024 * 1024, ge=1024, description="Larger request bodies get 413")
    default_timezone_minutes: int = Field(0, description="Offset applied to dates searched without a zone")
    max_history: int = Field(1000, ge=1, description="Most entries a history Bundle returns")
    # -- protection (auth.py) --
    auth: Literal["none", "bearer", "smart"] = Field(
        "none", description="none; bearer (static tokens); smart (SMART Backend Services token endpoint, too)"
    )
    auth_config: AuthConfig = Field(default_factory=AuthConfig, description="Tokens and clients, for bearer/smart")
    # -- realism (realism.py) --
    profile: Literal["hapi", "epic"] | None = Field(None, description="Preset of the settings below (PROFILES)")
    require_patient: bool = Field(False, description="Epic: clinical searches need patient (Observation: + code)")
    include_limit: int | None = Field(None, ge=1, description="Most _include/_revinclude resources per page")

    @model_validator(mode="before")
    @classmethod
    def _apply_profile(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("profile") in PROFILES:
            data = {**PROFILES[data["profile"]], **data}  # explicit settings win over the profile's
        return data

    @model_validator(mode="after")
    def _auth_has_credentials(self) -> ServerSettings:
        config = self.auth_config
        if self.auth == "bearer" and not config.bearer_tokens:
            raise ValueError("auth 'bearer' needs at least one token in bearer_tokens")
        if self.auth == "smart" and not (config.clients or config.secret_clients or config.bearer_tokens):
            raise ValueError("auth 'smart' needs clients, secret_clients or bearer_tokens")
        return self

    @property
    def default_tz(self) -> timedelta:
        return timedelta(minutes=self.default_timezone_minutes)
