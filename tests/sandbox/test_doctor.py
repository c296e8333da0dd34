"""``doctor`` against our server in its own process, loaded with ``population push``: which hand-written scenarios
can run there and why the others cannot, the probes on real data, an endpoint that misbehaves, an unreachable one,
and bearer auth (accepted, rejected, missing)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fhir_sandbox.auth import AuthOptions
from fhir_sandbox.cli import app
from fhir_sandbox.doctor import DoctorReport, diagnose, examine, id_ranges, scenario_needs
from fhir_sandbox.fixtures import MRN_SYSTEM, PopulationOptions, build_population
from fhir_sandbox.push import push_population
from fhir_sandbox.scenarios import load_scenarios
from fhir_sandbox.scenarios.model import Scenario
from fhir_sandbox.server import ServerProcess
from fhir_sandbox.staging import EndpointOptions
from typer.testing import CliRunner

TINY = PopulationOptions(patients=2, years=1, seed=120)  # two small charts, as in test_push
TOKEN = "doctor-static-token-9c1e-never-printed"
ABSENT = "S0000000"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("doctor")


@pytest.fixture(scope="module")
def staging(workdir: Path) -> Iterator[ServerProcess]:
    """A server on a new database, loaded with the tiny population by ``push_population``."""
    population = workdir / "tiny.db"
    build_population(TINY, population, workers=1)
    with ServerProcess(str(workdir / "staging.db")) as server, httpx.Client(timeout=60) as http:
        push_population(population, "tiny", f"{server.url}/fhir", http, state_file=workdir / "push.json")
        yield server


@pytest.fixture(scope="module")
def chart(staging: ServerProcess) -> tuple[str, str]:
    """The MRN of the patient with the most Observations, and one of its codes with 5 to 30 results (enough to
    probe sorting, paging and prefixes with, few enough to be quick)."""
    with httpx.Client(timeout=30, base_url=f"{staging.url}/fhir/") as http:
        patients = [e["resource"] for e in http.get("Patient").json()["entry"]]
        counts = {
            p["id"]: http.get("Observation", params={"patient": p["id"], "_summary": "count"}).json()["total"]
            for p in patients
        }
        patient = max(patients, key=lambda p: counts[p["id"]])
        bundle = http.get("Observation", params={"patient": patient["id"], "_count": "1000"}).json()
    codes = Counter(e["resource"]["code"]["coding"][-1]["code"] for e in bundle["entry"])  # the local code
    mrn = next(i["value"] for i in patient["identifier"] if i["system"] == MRN_SYSTEM)
    return mrn, next(code for code, n in sorted(codes.items()) if 5 <= n <= 30)


def scenario(name: str, mrn: str, code: str, *extra_steps: dict[str, Any], param: str = "date") -> dict[str, Any]:
    """A scenario reading the latest result of ``code``; ``extra_steps`` go before its finish."""
    return {
        "id": f"doc.{name}",
        "category": "doctor",
        "title": name,
        "instruction": f"What is the latest {code} result of patient {mrn}?",
        "now": "2023-11-13T10:15:00+00:00",
        "patient": {"mrn": mrn},
        "expectations": {
            "values": {"x": {"kind": "latest", "code": code, "within_hours": 8760}},
            "checks": [{"name": "answer", "type": "answer_number", "expected": {"expr": "%x.value"}}],
        },
        "reward_basis": ["answer"],
        "reference": {
            "steps": [
                {
                    "tool": "search",
                    "args": {"resource_type": "Patient", "params": {"identifier": f"{MRN_SYSTEM}|{mrn}"}},
                },
                {
                    "tool": "search",
                    "args": {
                        "resource_type": "Observation",
                        "params": {
                            "patient": "${patient.id}",
                            "code": code,
                            "_sort": "-date",
                            "_count": "1",
                            param: "ge2022-11-13",
                        },
                    },
                },
                *extra_steps,
                {"tool": "finish", "args": {"answer": 1}},
            ]
        },
    }


@pytest.fixture(scope="module")
def suite(workdir: Path, chart: tuple[str, str]) -> Path:
    """Four scenarios: one that can run read-only, one whose patient is absent, one that writes, one whose
    search uses a parameter the server does not declare."""
    mrn, code = chart
    order = {
        "tool": "create",
        "args": {"resource": {"resourceType": "MedicationRequest", "status": "active", "intent": "order"}},
    }
    folder = workdir / "suite"
    folder.mkdir()
    for name, data in {
        "reads": scenario("reads", mrn, code),
        "absent": scenario("absent", ABSENT, code),
        "writes": scenario("writes", mrn, code, order),
        "undeclared": scenario("undeclared", mrn, code, param="no-such-param"),
    }.items():
        (folder / f"{name}.json").write_bytes(orjson.dumps(data))
    return folder


@pytest.fixture(scope="module")
def scenarios(suite: Path) -> list[Scenario]:
    loaded = load_scenarios([suite])
    assert not loaded.problems
    return loaded.scenarios


def reasons(report: DoctorReport) -> dict[str, list[str]]:
    return {verdict.id: verdict.reasons for verdict in report.scenarios}


def test_the_report_says_which_scenarios_can_run_and_why_the_others_cannot(
    staging: ServerProcess, scenarios: list[Scenario]
) -> None:
    with httpx.Client(timeout=30) as http:
        report = diagnose(f"{staging.url}/fhir", scenarios, http)
        writing = diagnose(f"{staging.url}/fhir", scenarios, http, allow_writes=True)
    assert report.exit_code == 0 and report.error is None
    assert reasons(report) == {
        "doc.reads": [],
        "doc.absent": [f"patient {ABSENT} not found"],
        "doc.writes": ["needs writes (run with --allow-writes)"],
        "doc.undeclared": ["Observation search param 'no-such-param' not declared"],
    }
    assert [(s.suite, s.runnable, s.total) for s in report.suites] == [("doc", 1, 4)]
    assert reasons(writing)["doc.writes"] == [] and sum(v.runnable for v in writing.scenarios) == 2
    statuses = {check.name: check.status for check in report.checks}
    probes = {name: status for name, status in statuses.items() if name.startswith("probe: ")}
    assert set(probes) >= {"probe: _count", "probe: paging", "probe: _sort=-date", "probe: date=ge…"}
    assert set(probes.values()) == {"pass"}, report.checks
    assert statuses["fhirVersion"] == statuses["auth"] == "pass" and statuses["patients"] == "warn"
    assert json.loads(report.model_dump_json())["suites"] == [{"suite": "doc", "runnable": 1, "total": 4}]


class _Misbehaving(httpx.BaseTransport):
    """The network to a server that ignores ``_sort``, or whose next links point at another host."""

    def __init__(self, fault: str):
        self.inner = httpx.HTTPTransport()
        self.fault = fault

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.fault == "ignores _sort":
            params = [(k, v) for k, v in request.url.params.multi_items() if k != "_sort"]
            request = httpx.Request(request.method, request.url.copy_with(params=params), headers=request.headers)
        response = self.inner.handle_request(request)
        if self.fault != "links elsewhere":
            return response
        body = response.read().replace(b'"url":"http://127.0.0.1', b'"url":"http://elsewhere.example')
        headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() != "content-length"]
        return httpx.Response(response.status_code, headers=headers, content=body)

    def close(self) -> None:
        self.inner.close()


@pytest.mark.parametrize(
    ("fault", "probe", "detail"),
    [
        ("ignores _sort", "_sort=-date", "not newest first"),
        ("links elsewhere", "paging", "outside the FHIR base URL"),
    ],
)
def test_a_server_that_misbehaves_fails_the_probe_and_the_scenarios_relying_on_it(
    staging: ServerProcess, scenarios: list[Scenario], fault: str, probe: str, detail: str
) -> None:
    with httpx.Client(timeout=30, transport=_Misbehaving(fault)) as http:
        report = diagnose(f"{staging.url}/fhir", scenarios, http)
    check = report.check(f"probe: {probe}")
    assert check is not None and check.status == "fail" and detail in check.detail
    assert any(r.startswith(f"probe {probe} failed") for r in reasons(report)["doc.reads"])


def run_cli(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200", **(env or {})})
    return result.exit_code, result.output


def test_the_cli_prints_the_checks_the_counts_and_the_reasons(staging: ServerProcess, suite: Path) -> None:
    code, output = run_cli(["doctor", "--fhir-base-url", f"{staging.url}/fhir", "--suite", str(suite)])
    assert code == 0, output
    for text in (
        "probe: _sort=-date",
        f"patient {ABSENT} not found",
        "needs writes (run with --allow-writes)",
        "doc.writes",
        "1 of 4 scenario(s) can run",
    ):
        assert text in output, output


def test_an_unreachable_endpoint_exits_2_with_one_line() -> None:
    code, output = run_cli(["doctor", "--fhir-base-url", "http://127.0.0.1:9/fhir"])
    assert code == 2
    assert output.startswith("error: cannot reach http://127.0.0.1:9/fhir/metadata") and output.count("\n") == 1


@pytest.fixture(scope="module")
def protected(workdir: Path, staging: ServerProcess) -> Iterator[ServerProcess]:
    """The same database served again, needing a bearer token."""
    config = workdir / "auth.json"
    config.write_text(json.dumps({"bearer_tokens": [TOKEN]}))
    with ServerProcess(staging.database, serve_args=["--auth", "bearer", "--auth-config", str(config)]) as server:
        yield server


def test_bearer_auth_is_checked_and_a_refused_token_is_said_plainly(protected: ServerProcess, suite: Path) -> None:
    args = ["doctor", "--fhir-base-url", f"{protected.url}/fhir", "--suite", str(suite)]
    code, output = run_cli([*args, "--auth", "bearer"], env={"FHIR_TOKEN": TOKEN})
    assert code == 0 and "credentials accepted" in output and "1 of 4 scenario(s) can run" in output, output

    code, output = run_cli([*args, "--auth", "bearer"], env={"FHIR_TOKEN": "a-wrong-token"})
    assert code == 2 and "authentication failed" in output and "FHIR_TOKEN" in output and "401" in output, output
    assert "a-wrong-token" not in output and TOKEN not in output

    code, output = run_cli(args)
    assert code == 2 and "authentication failed" in output and "HTTP 401" in output, output


def test_what_a_bundled_scenario_needs() -> None:
    core = {s.id: s for s in load_scenarios(["core"]).scenarios}
    mg = scenario_needs(core["core.mg-replacement.07"])
    assert ("Observation", "code") in mg.searches and ("Patient", "identifier") in mg.searches
    assert {"_sort=-date", "_count", "date=ge…", "code (bare token)"} <= mg.features
    assert mg.writes == core["core.mg-replacement.07"].expects_action
    assert id_ranges(["core.k.00", "core.k.01", "core.k.02", "core.k.05", "core.m.1"]) == "core.k.00-02,05; core.m.1"


def test_examine_reports_a_missing_token_as_an_auth_failure(suite: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCTOR_TEST_TOKEN", raising=False)
    options = AuthOptions(mode="bearer", token_env="DOCTOR_TEST_TOKEN")
    report = examine(EndpointOptions(fhir_base_url="http://127.0.0.1:9/fhir", auth=options), [str(suite)])
    assert report.exit_code == 2 and report.error is not None
    assert report.error.startswith("authentication failed:") and "DOCTOR_TEST_TOKEN" in report.error
