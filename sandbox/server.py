"""Our FHIR server, served over real HTTP on 127.0.0.1 from a background thread, for episodes run in-process
(and for tests): agents and graders talk to it exactly as they would to a remote one."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from .fhir_server import Repository, ServerSettings, create_app, make_engine

__all__ = ["LocalServer", "ServerProcess", "ServerProcesses"]


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
        self.urls = [self.url]  # as ServerProcesses: the origins to spread sessions over

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


class ServerProcess:
    """``fhir-sandbox serve`` in a child process (its own GIL: many concurrent episodes in this process no longer
    slow the server down), keeping the sessions other runs have on the same file. A context manager.
    ``serve_args`` are more ``serve`` options, e.g. ``["--auth", "smart", "--auth-config", path]``."""

    def __init__(
        self, database: str, port: int | None = None, start_timeout: float = 60, serve_args: Sequence[str] = ()
    ):
        self.port = port or _free_port()
        self.database = database
        self.serve_args = list(serve_args)
        self.start_timeout = start_timeout
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ServerProcess:
        self.start()
        self.wait_ready()
        return self

    def start(self) -> None:
        script = Path(sys.executable).with_name("fhir-sandbox")
        command = [str(script)] if script.exists() else [sys.executable, "-m", "fhir_sandbox.cli"]
        arguments = ["serve", "--port", str(self.port), "--database", self.database, "--keep-sessions"]
        self.process = subprocess.Popen(
            [*command, *arguments, "--stop-at-stdin-eof", *self.serve_args],
            stdin=subprocess.PIPE,  # never written: the server stops when it closes, as it does when we die
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def wait_ready(self) -> None:
        assert self.process is not None, "start() first"
        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                if httpx.get(f"{self.url}/fhir/metadata", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                error = self.process.stderr.read().decode(errors="replace")[-500:] if self.process.stderr else ""
                self.__exit__()
                raise RuntimeError(f"the FHIR server did not start on {self.url}: {error}")
            time.sleep(0.1)

    def __exit__(self, *exc: Any) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for pipe in (self.process.stdin, self.process.stderr):
            if pipe:
                pipe.close()


class ServerProcesses:
    """``count`` server processes on one database file, for a run's episodes to spread their sessions over (a
    session lives on the server that created it, so no process serves a session another one changes). One
    Python process serves about one core's worth; many episodes at once need more. A context manager."""

    def __init__(self, database: str, count: int, serve_args: Sequence[str] = ()):
        self.database = database
        self.servers = [ServerProcess(database, serve_args=serve_args) for _ in range(max(1, count))]
        self.urls = [server.url for server in self.servers]
        self.url = self.urls[0]

    def __enter__(self) -> ServerProcesses:
        # the schema first, here: servers starting at once on a new file would race to create its tables
        make_engine(self.database).dispose()
        try:
            for server in self.servers:  # all start at once: each takes a second or two to import and bind
                server.start()
            for server in self.servers:
                server.wait_ready()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        for server in self.servers:
            server.__exit__()
