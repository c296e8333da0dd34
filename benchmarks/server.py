"""The real server in a subprocess on 127.0.0.1, always terminated.

The subprocess runs what ``fhir-sandbox serve`` runs, ``uvicorn.run(create_app(ServerSettings(database=...)))``,
but imports only the server package: the benchmark measures the server, and keeps working while the CLI and
the packages it imports change.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

__all__ = ["ServerFailed", "running_server"]

_START_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 10.0
_SERVE = """
import sys
import uvicorn
from fhir_sandbox.fhir_server.app import create_app
from fhir_sandbox.fhir_server.settings import ServerSettings
database, port = sys.argv[1], int(sys.argv[2])
uvicorn.run(create_app(ServerSettings(database=database)), host="127.0.0.1", port=port, log_level="warning")
"""


class ServerFailed(RuntimeError):
    """The server did not come up; the message carries the end of its log."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _log_tail(log: Path, lines: int = 20) -> str:
    text = log.read_text(errors="replace") if log.exists() else ""
    return "\n".join(text.splitlines()[-lines:]) or "(the server wrote nothing)"


@contextmanager
def running_server(database: Path, log: Path) -> Iterator[str]:
    """Serve ``database`` on a free 127.0.0.1 port; yields the origin (``http://127.0.0.1:PORT``).

    Access logging is off (``--log-level warning``), as it would be under load in production.
    """
    port = _free_port()
    origin = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-c", _SERVE, str(database), str(port)]
    with log.open("wb") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            _wait_until_ready(process, origin, log)
            yield origin
        finally:
            process.terminate()
            try:
                process.wait(timeout=_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=_STOP_TIMEOUT_S)


def _wait_until_ready(process: subprocess.Popen[bytes], origin: str, log: Path) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerFailed(f"the server exited with code {process.returncode}:\n{_log_tail(log)}")
        try:
            if httpx.get(f"{origin}/sessions/default", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise ServerFailed(f"the server did not answer within {_START_TIMEOUT_S:.0f} s:\n{_log_tail(log)}")
