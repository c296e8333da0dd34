"""A protected staging endpoint for the staging and auth-client tests: our server in a child process
(``fhir-sandbox serve --auth smart``), with an RSA and an EC P-384 SMART client, a client_secret client and a
static bearer token, and a read-only scenario whose patient is seeded on the server (no setup)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fhir_sandbox.auth import jwks
from fhir_sandbox.fhir_server import make_engine
from fhir_sandbox.server import ServerProcess
from run_kit import MRN_SYSTEM, NOW, potassium

STATIC = "static-bearer-4f1d9c-never-logged"
SECRET = "client-secret-77e2+/=never-logged"
RSA_CLIENT, EC_CLIENT, SECRET_CLIENT = "rsa-client", "ec-client", "secret-client"
SEEDED_MRN = "S0000002"  # the read-only scenario's patient, seeded in the server's default session
SEEDED_PATIENT = "ro-pt"


class Keys:
    """Private keys as PEM files (what ``--key`` takes) and the text that must never be logged."""

    def __init__(self, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self.rsa = folder / "rsa.pem"
        self.ec = folder / "ec.pem"
        self.ec256 = folder / "ec256.pem"
        for path, key in (
            (self.rsa, rsa.generate_private_key(public_exponent=65537, key_size=2048)),
            (self.ec, ec.generate_private_key(ec.SECP384R1())),
            (self.ec256, ec.generate_private_key(ec.SECP256R1())),
        ):
            path.write_bytes(
                key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                )
            )

    def secrets(self) -> list[str]:
        """Text that must appear in no log, record or output: the token, the secret, every key's PEM lines."""
        lines = [
            line
            for path in (self.rsa, self.ec)
            for line in path.read_text().splitlines()
            if line and not line.startswith("-----")
        ]
        return [STATIC, SECRET, *lines]


def auth_config(keys: Keys, token_lifetime: int = 300) -> dict[str, Any]:
    return {
        "bearer_tokens": [STATIC],
        "clients": [
            {"client_id": RSA_CLIENT, "jwks": jwks(keys.rsa), "scope": "system/*.cruds"},
            {"client_id": EC_CLIENT, "jwks": jwks(keys.ec), "scope": "system/*.cruds"},
        ],
        "secret_clients": [{"client_id": SECRET_CLIENT, "client_secret": SECRET, "scope": "system/*.cruds"}],
        "token_lifetime": token_lifetime,
    }


@contextmanager
def protected_server(folder: Path, keys: Keys, token_lifetime: int = 300) -> Iterator[ServerProcess]:
    """``fhir-sandbox serve --auth smart`` on an empty database, with the read-only scenario's patient seeded."""
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "auth.json"
    config.write_text(json.dumps(auth_config(keys, token_lifetime)))
    database = folder / "staging.db"
    make_engine(database).dispose()
    serve_args = ["--auth", "smart", "--auth-config", str(config)]
    with ServerProcess(str(database), serve_args=serve_args) as server:
        seed(server)
        yield server


def bearer() -> dict[str, str]:
    return {"Authorization": f"Bearer {STATIC}"}


def seed(server: ServerProcess) -> None:
    patient = {
        "resourceType": "Patient",
        "id": SEEDED_PATIENT,
        "identifier": [{"system": MRN_SYSTEM, "value": SEEDED_MRN}],
        "name": [{"family": "Seeded"}],
        "gender": "male",
        "birthDate": "1960-02-02",
    }
    potassium_result = {
        "resourceType": "Observation",
        "id": "ro-k",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2823-3"}, {"code": "K"}], "text": "Potassium"},
        "subject": {"reference": f"Patient/{SEEDED_PATIENT}"},
        "effectiveDateTime": "2023-11-13T07:00:00+00:00",
        "valueQuantity": {"value": 3.9, "unit": "mmol/L"},
    }
    entries = [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
        for r in (patient, potassium_result)
    ]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    response = httpx.post(f"{server.url}/fhir", json=bundle, headers=bearer(), timeout=30)
    assert response.status_code == 200, response.text


def read_only_potassium(scenario_id: str = "t.ro-k") -> dict[str, Any]:
    """The latest potassium (3.9) of the seeded patient: no setup, and the reference writes nothing."""
    scenario = copy.deepcopy(potassium(scenario_id, answer=3.9))
    del scenario["setup"]
    scenario["patient"] = {"mrn": SEEDED_MRN}
    scenario["instruction"] = scenario["instruction"].replace("S0000001", SEEDED_MRN)
    steps = scenario["reference"]["steps"]
    steps[0]["args"]["params"]["identifier"] = SEEDED_MRN
    assert scenario["now"] == NOW
    return scenario


def tagged(
    server: ServerProcess, tag: str, types: tuple[str, ...] = ("Patient", "Observation", "MedicationRequest")
) -> list[str]:
    """Type/id of the resources on the server carrying ``tag`` (system|code)."""
    found = []
    for kind in types:
        bundle = httpx.get(f"{server.url}/fhir/{kind}", params={"_tag": tag}, headers=bearer(), timeout=30).json()
        found += [f"{kind}/{e['resource']['id']}" for e in bundle.get("entry", ())]
    return found


def default_writes(server: ServerProcess) -> int:
    """How many writes the server's default session has logged (every write a client made to /fhir)."""
    response = httpx.get(f"{server.url}/sessions/default/writes", headers=bearer(), timeout=30)
    assert response.status_code == 200, response.text
    return len(response.json())
