"""The episode client: one httpx.Client whose connection pools are per thread."""

from __future__ import annotations

import threading

from fhir_sandbox.connections import PerThreadTransport, episode_client
from fhir_sandbox.fhir_server import ServerSettings
from fhir_sandbox.server import LocalServer


def test_each_thread_gets_its_own_pool_and_close_closes_them_all(tmp_path):
    with LocalServer(ServerSettings(database=str(tmp_path / "db.sqlite"))) as server:
        http = episode_client(timeout=30)
        transport = http._transport
        assert isinstance(transport, PerThreadTransport)
        statuses: list[int] = []

        def read_metadata() -> None:
            for _ in range(3):  # reuses the thread's pool
                statuses.append(http.get(f"{server.url}/fhir/metadata").status_code)

        threads = [threading.Thread(target=read_metadata) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        read_metadata()

        assert statuses == [200] * 15
        pools = list(transport._transports)
        assert len(pools) == 5 and len({id(p) for p in pools}) == 5  # four threads and this one
        http.close()
        assert transport._transports == []
        assert all(p._pool.connections == [] for p in pools)
