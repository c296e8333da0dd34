"""Options shared by several commands: scenario paths, and how to authenticate to an endpoint."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from ..auth import AuthOptions


from . import fail

SUITES_HELP = "Scenario files or folders, or a bundled suite's name (core, extended); default: both suites"


AUTH_MODES = ("none", "bearer", "smart-backend", "client-secret")
AuthMode = Annotated[str, typer.Option(help="none, bearer, smart-backend (SMART Backend Services), client-secret")]
TokenEnv = Annotated[str, typer.Option(help="bearer: the environment variable holding the token")]
ClientId = Annotated[str | None, typer.Option(help="smart-backend, client-secret: the registered client id")]
KeyPath = Annotated[Path | None, typer.Option(help="smart-backend: the PEM private key (RSA, or EC P-384)")]
Alg = Annotated[str | None, typer.Option(help="smart-backend: RS384 or ES384 (default: the key's)")]
Kid = Annotated[str | None, typer.Option(help="smart-backend: the key id (default: the key's JWK thumbprint)")]
Scope = Annotated[str | None, typer.Option(help="Scopes to ask for (default system/*.rs; system/*.cruds to write)")]
SecretEnv = Annotated[str, typer.Option(help="client-secret: the environment variable holding the secret")]
TokenUrl = Annotated[str | None, typer.Option(help="The token endpoint (default: discovered from the endpoint)")]


def auth_options(
    mode: str,
    token_env: str,
    client_id: str | None,
    key: Path | None,
    alg: str | None,
    kid: str | None,
    scope: str | None,
    client_secret_env: str,
    token_url: str | None,
) -> AuthOptions:
    from ..auth import AuthOptions

    if mode not in AUTH_MODES:
        raise fail(f"--auth must be one of {', '.join(AUTH_MODES)}, not {mode!r}")
    if alg not in (None, "RS384", "ES384"):
        raise fail(f"--alg must be RS384 or ES384, not {alg!r}")
    return AuthOptions(
        mode=mode,  # type: ignore[arg-type]
        token_env=token_env,
        client_id=client_id,
        key_path=key,
        alg=alg,  # type: ignore[arg-type]
        kid=kid,
        scope=scope,
        client_secret_env=client_secret_env,
        token_url=token_url,
    )
