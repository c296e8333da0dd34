"""The HTTP client a run's episodes share: one ``httpx.Client`` (one place for timeouts and auth) whose
connections are pooled per thread.

httpcore's connection pool hands out connections under one lock, in time that grows with the number of
requests and connections in it; sixty-four episode threads on one pool spent more CPU waiting on and walking
that pool than on their own work (``python -m benchmarks.concurrency``: the runner's CPU halved with a pool per
thread). Episode threads live for the whole run, so each keeps its few connections alive.
"""

from __future__ import annotations

import ssl
import threading

import httpx

__all__ = ["PerThreadTransport", "episode_client"]


class PerThreadTransport(httpx.BaseTransport):
    """An ``httpx.HTTPTransport`` per calling thread, all built with the same options."""

    def __init__(self, verify: ssl.SSLContext | bool = True, connections_per_thread: int = 4):
        # one SSL context for every pool: httpx builds a new one per transport otherwise (~0.1 s each)
        self._verify = httpx.create_ssl_context(verify=verify) if not isinstance(verify, ssl.SSLContext) else verify
        self._limits = httpx.Limits(
            max_connections=connections_per_thread, max_keepalive_connections=connections_per_thread
        )
        self._local = threading.local()
        self._lock = threading.Lock()
        self._transports: list[httpx.HTTPTransport] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        transport: httpx.HTTPTransport | None = getattr(self._local, "transport", None)
        if transport is None:
            transport = httpx.HTTPTransport(verify=self._verify, limits=self._limits)
            with self._lock:
                self._transports.append(transport)
            self._local.transport = transport
        return transport.handle_request(request)

    def close(self) -> None:
        with self._lock:
            transports, self._transports = self._transports, []
        for transport in transports:
            transport.close()


def episode_client(timeout: float = 120, verify: ssl.SSLContext | bool = True) -> httpx.Client:
    """A client for many episode threads at once (close it, or use it as a context manager)."""
    return httpx.Client(timeout=timeout, transport=PerThreadTransport(verify=verify))
