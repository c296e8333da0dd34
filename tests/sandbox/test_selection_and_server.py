"""Choosing scenarios for a run (filters), and the FHIR server in its own process for concurrent runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from fhir_sandbox.fhir_server import ServerSettings
from fhir_sandbox.runner import ScenarioFilter, select_scenarios
from fhir_sandbox.scenarios import load_scenarios
from fhir_sandbox.server import LocalServer, ServerProcess

CORE = load_scenarios(["core"]).scenarios


def test_filters_pick_by_category_id_prefix_tag_and_count() -> None:
    per_category = select_scenarios(CORE, ScenarioFilter(per_category=2))
    assert len(per_category) == 20 and {s.category for s in per_category} == {s.category for s in CORE}
    prefix = select_scenarios(CORE, ScenarioFilter(ids=["core.k-replacement.1*"]))
    assert [s.id for s in prefix] == [f"core.k-replacement.{n}" for n in range(10, 20)]
    exact = select_scenarios(CORE, ScenarioFilter(ids=["core.record-bp.07"], categories=["record-bp"]))
    assert [s.id for s in exact] == ["core.record-bp.07"]
    tagged = select_scenarios(CORE, ScenarioFilter(tags=[CORE[0].tags[0]], limit=3))
    assert len(tagged) == 3 and all(CORE[0].tags[0] in s.tags for s in tagged)
    assert select_scenarios(CORE, ScenarioFilter(categories=["no-such-category"])) == []


def test_a_server_process_serves_the_file_and_keeps_the_sessions_others_have_there(tmp_path: Path) -> None:
    database = str(tmp_path / "shared.db")
    with LocalServer(ServerSettings(database=database)) as first, httpx.Client() as http:
        session = http.post(f"{first.url}/sessions", json={"label": "another run"}).json()["id"]
        with ServerProcess(database) as second:
            assert http.get(f"{second.url}/fhir/metadata").json()["fhirVersion"] == "4.0.1"
            assert http.get(f"{second.url}/sessions/{session}").status_code == 200
            assert second.url.startswith("http://127.0.0.1:")
    assert second.process is not None and second.process.poll() is not None  # stopped on exit


def test_server_processes_stop_when_the_run_that_started_them_is_killed(tmp_path: Path) -> None:
    """A run killed with -9 leaves no server behind: each stops when its stdin pipe from the run closes."""
    database = str(tmp_path / "db.sqlite")
    script = (
        "import sys, time\n"
        "from fhir_sandbox.server import ServerProcesses\n"
        f"servers = ServerProcesses({database!r}, 2).__enter__()\n"
        "print(' '.join(str(s.process.pid) for s in servers.servers), flush=True)\n"
        "time.sleep(120)\n"
    )
    run = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert run.stdout is not None
        pids = [int(pid) for pid in run.stdout.readline().split()]
        assert len(pids) == 2 and all(_alive(pid) for pid in pids)
        os.kill(run.pid, signal.SIGKILL)
        run.wait()
        deadline = time.monotonic() + 20
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in pids)
    finally:
        run.kill()
        run.wait()
        if run.stdout:
            run.stdout.close()


def _alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting for a parent to reap it)."""
    status = Path(f"/proc/{pid}/status")
    try:
        return "\nState:\tZ" not in status.read_text()
    except FileNotFoundError:
        return False
