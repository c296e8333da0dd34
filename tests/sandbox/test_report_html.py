"""report.html: a real run's report, parsed: failed episodes first, every episode present, untrusted text escaped,
one chart bar per category, well-formed; it stays small for a large run; and, where Chromium is installed, it
loads in a real browser with its script working."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from fhir_sandbox import api
from fhir_sandbox.agent_choice import AgentChoice
from fhir_sandbox.api import RunRequest
from fhir_sandbox.episode import EpisodeResult, Termination
from fhir_sandbox.report_html import render_report, write_report
from fhir_sandbox.runs import RunFolder, latest
from fhir_sandbox.stats import run_stats
from run_kit import empty_population, potassium, standard_suite, write_suite

SCRIPT = "<script>alert('pwned')</script>"
CHROMIUM = Path("/usr/bin/chromium")
VOID = {"meta", "link", "br", "hr", "img", "input", "line", "rect", "circle", "path"}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> RunFolder:
    """The reference agent on the standard suite plus a scenario whose reference answers a <script> tag (it
    fails); then an infrastructure error is stored as a run would store it."""
    workdir = tmp_path_factory.mktemp("report")
    suite = standard_suite(workdir / "suite")
    write_suite(suite, [potassium("t.k-script", answer=SCRIPT)])
    request = RunRequest(
        suites=[str(suite)],
        agent=AgentChoice(agent="reference"),
        database=str(empty_population(workdir / "empty.db")),
        out=workdir / "run",
    )
    folder, _ = api.run(request)
    template = next(r for r in folder.episodes() if r.scenario_id == "t.k-latest")
    broken = template.model_copy(
        update={
            "trial": 1,
            "termination": Termination.INFRASTRUCTURE_ERROR,
            "score": None,
            "checks": [],
            "tool_calls": [],
            "writes": [],
            "error": "TargetError: the server said <b>no</b>",
        }
    )
    folder.append(broken)
    write_report(folder)
    return folder


class Page(HTMLParser):
    """The parts of the report the tests look at, and whether every element is closed in order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.misnested: list[str] = []
        self.episodes: list[dict[str, str]] = []
        self.bars: list[str] = []
        self.scripts = 0
        self.pre_texts: list[str] = []
        self.h1 = ""
        self._pre: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        if tag == "details" and "episode" in found.get("class", "").split():
            self.episodes.append(found)
        if tag == "rect" and "bar" in found.get("class", "").split():
            self.bars.append(found["data-category"])
        if tag == "script":
            self.scripts += 1
        if tag == "pre":
            self._pre = []
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.misnested.append(f"</{tag}> at {self.getpos()} with {self.stack[-3:]} open")
            return
        self.stack.pop()
        if tag == "pre" and self._pre is not None:
            self.pre_texts.append("".join(self._pre))
            self._pre = None

    def handle_data(self, data: str) -> None:
        if self._pre is not None:
            self._pre.append(data)
        if self.stack and self.stack[-1] == "h1":
            self.h1 += data


def parse(text: str) -> Page:
    page = Page()
    page.feed(text)
    page.close()
    return page


@pytest.fixture(scope="module")
def page(run: RunFolder) -> tuple[str, Page]:
    text = (run.path / "report.html").read_text(encoding="utf-8")
    return text, parse(text)


def test_the_report_is_well_formed_and_self_contained(page: tuple[str, Page], run: RunFolder) -> None:
    text, parsed = page
    assert parsed.misnested == [] and parsed.stack == []
    assert "http://" not in text.split('<section id="episodes">')[0].replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "<link" not in text and "src=" not in text  # nothing loaded from anywhere
    manifest = run.manifest()
    assert "reference on" in parsed.h1 and "suite" in parsed.h1
    assert manifest.created in text


def test_failed_episodes_come_first_then_infrastructure_errors_then_passed(
    page: tuple[str, Page], run: RunFolder
) -> None:
    _, parsed = page
    states = [e["class"].split()[1] for e in parsed.episodes]
    assert states == sorted(states, key=["failed", "infra", "passed"].index)
    assert Counter(states) == {"failed": 2, "infra": 1, "passed": 3}
    shown = [(e["data-scenario"], int(e["data-trial"])) for e in parsed.episodes]
    stored = [(r.scenario_id, r.trial) for r in latest(run.episodes())]
    assert sorted(shown) == sorted(stored) and len(shown) == len(set(shown)) == 6
    assert {s for s, _ in shown[:2]} == {"t.k-rounded", "t.k-script"}


def test_untrusted_text_is_escaped(page: tuple[str, Page]) -> None:
    text, parsed = page
    assert parsed.scripts == 1  # the report's own script, not the answer's
    assert SCRIPT not in text and "&lt;script&gt;alert('pwned')&lt;/script&gt;" in text
    assert any(SCRIPT in t for t in parsed.pre_texts)  # shown as text
    assert "<b>no</b>" not in text and "&lt;b&gt;no&lt;/b&gt;" in text


def test_one_chart_bar_per_category(page: tuple[str, Page], run: RunFolder) -> None:
    _, parsed = page
    categories = run_stats(latest(run.episodes())).categories
    assert sorted(parsed.bars) == sorted(categories) == ["charting", "lookup", "orders"]


def test_an_episode_shows_checks_writes_values_and_calls(page: tuple[str, Page]) -> None:
    text, _ = page
    stop = text[text.index('data-scenario="t.med-stop"') :]
    stop = stop[: stop.index("</details>\n")]
    for part in ("one_update", "counted", "update</b>", "MedicationRequest/mr-1", "prior version (v1)", "stopped"):
        assert part in stop, part
    assert "<td><code>status</code></td><td>active</td><td>stopped</td>" in stop  # the state diff
    latest_k = text[text.index('data-scenario="t.k-latest"') :]
    assert "Values computed from the chart" in latest_k and "FHIR calls (3, 0 failed)" in latest_k
    assert "GET Observation?patient=pt-1&amp;code=K" in latest_k


def test_long_results_are_cut_and_a_large_run_stays_small(run: RunFolder) -> None:
    template = next(r for r in run.episodes() if r.scenario_id == "t.k-latest")
    bundle: dict[str, Any] = {"resourceType": "Bundle", "entry": [{"resource": {"note": "x" * 500}}] * 16}
    calls = [c.model_copy(update={"result": bundle, "step": i + 1}) for i, c in enumerate(template.tool_calls * 3)]
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are careful. " * 80},
        {"role": "human", "content": "task"},
    ]
    for call in calls:
        messages += [
            {"role": "ai", "content": "", "tool_calls": [{"id": "c", "name": call.tool, "args": call.args}]},
            {"role": "tool", "content": str(bundle), "tool_call_id": "c"},
        ]
    results: list[EpisodeResult] = [
        template.model_copy(
            update={
                "scenario_id": f"t.big-{i % 40}",
                "category": f"category-{i % 6}",
                "trial": i // 40,
                "score": float(i % 4 != 0),
                "tool_calls": calls,
                "messages": messages,
            }
        )
        for i in range(320)
    ]
    started = time.perf_counter()
    text = render_report(run.manifest(), results)
    seconds = time.perf_counter() - started
    assert len(text.encode()) < 5_000_000, f"{len(text.encode()):,} bytes"
    assert seconds < 10
    assert "cut: the first" in text
    parsed = parse(text)
    assert len(parsed.episodes) == 320 and len(parsed.bars) == 6 and parsed.misnested == []


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Chromium is not installed (/usr/bin/chromium): parse tests only")
def test_the_report_loads_in_headless_chromium(run: RunFolder, tmp_path: Path) -> None:
    report = shutil.copy(run.path / "report.html", tmp_path / "report.html")
    dom = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", f"file://{report}#ep-0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert dom.count('<details class="episode') == 6
    assert '<rect class="bar"' in dom
    assert 'id="ep-0" data-scenario' in dom and 'open=""' in dom  # the script opened the linked episode
    assert SCRIPT not in dom
