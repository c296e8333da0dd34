"""Our FHIR server, served over real HTTP on 127.0.0.1 from a background thread, for episodes run in-process
(and for tests): agents and graders talk to it exactly as they would to a remote one."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn

from .fhir_server import Repository, ServerSettings, create_app

__all__ = ["LocalServer"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalServer:
    """A uvicorn server in a daemon thread; ``url`` is its origin (http://127.0.0.1:PORT). A context manager."""

    def __init__(self, settings: ServerSettings, repository: Repository | None = None, port: int | None = None):
        self.port = port or _free_port()
        self.app = create_app(settings, repository)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="fhir-server", daemon=True)
        self.url = f"http://127.0.0.1:{self.port}"

    @property
    def repository(self) -> Repository:
        return self.app.state.repository  # type: ignore[no-any-return]

    def __enter__(self) -> LocalServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"the FHIR server did not start on {self.url}")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
