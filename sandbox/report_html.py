"""``report.html``: one self-contained page per run folder (inline CSS and SVG, a few lines of vanilla JS for
expand/collapse; no network, no server). It shows what was run, pass@1 with its Wilson interval (pass^k and
pass@k with several trials), how episodes ended, tokens and cost, a per-category chart with 95% intervals, and
every episode (failed first, then infrastructure errors, then passed): its checks with their reasons, the answer,
the conversation, the FHIR calls, what it wrote next to what the checks expected, and the computed values.

Everything shown is escaped: answers, resources and model output are untrusted text. Long texts are cut (tool
results to at most 4 KB each, less when a run has very many calls) so the page stays a few MB; the run's
``episodes.jsonl`` keeps everything."""

from __future__ import annotations

import html
import os
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from .episode import EpisodeResult, Termination
from .runs import Manifest, RunFolder, latest
from .scenarios.loader import load_scenarios
from .scenarios.model import Scenario
from .stats import Rate, RunStats, run_stats

__all__ = ["REPORT", "render_report", "write_report"]

REPORT = "report.html"
RESULT_LIMIT = 4096  # characters of one tool result, resource or message shown at most
RESULT_FLOOR = 512  # ... and at least, in failed episodes, however many calls the run made
PASSED_SHARE = 4  # passed episodes show a quarter of that (at least PASSED_FLOOR): failures are what one reads
PASSED_FLOOR = 256
RESULTS_BUDGET = 2_000_000  # characters of tool results across the report: the limits shrink to fit it
PREVIEW_LIMIT = 120  # tool results repeated in the conversation (they are under "FHIR calls")
DIFF_ROWS = 60


def write_report(folder: RunFolder, scenarios: Sequence[Scenario] | None = None) -> Path:
    """Write ``report.html`` into the run folder (atomically) and return its path. ``scenarios`` give titles,
    instructions and check definitions; by default the run's suites are loaded, if they can still be found."""
    manifest = folder.manifest()
    results = latest(folder.episodes())
    known = {s.id: s for s in (scenarios if scenarios is not None else _load_scenarios(manifest))}
    page = render_report(manifest, results, known, folder.path.name)
    path = folder.path / REPORT
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(page, encoding="utf-8")
    os.replace(temporary, path)
    return path


def render_report(
    manifest: Manifest,
    results: Sequence[EpisodeResult],
    scenarios: Mapping[str, Scenario] | None = None,
    name: str = "",
) -> str:
    scenarios = scenarios or {}
    stats = run_stats(results)
    ordered = sorted(results, key=_order)
    limits = _limits(results)
    system = _shared_system_prompt(results)
    title = _title(manifest)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}{' · ' + _e(name) if name else ''}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<header><h1>{_e(title)}</h1>{_run_facts(manifest, stats, name)}</header>",
        '<section id="summary"><h2>Results</h2>',
        _summary(stats),
        "<h3>pass@1 per category (95% Wilson intervals)</h3>",
        _chart(stats.categories, stats.overall),
        "</section>",
        _index(ordered, scenarios),
        _fold("The system prompt", _pre_text(system, RESULT_LIMIT), css="h4like") if system else "",
        '<section id="episodes"><h2>Episodes</h2>',
        '<p class="tools"><button type="button" data-open="failed">expand failed</button> '
        '<button type="button" data-open="all">expand all</button> '
        '<button type="button" data-open="none">collapse all</button> '
        '<span class="note">failed first, then infrastructure errors, then passed; long texts are cut to '
        f"{limits[False]:,} characters each ({limits[True]:,} in passed episodes); episodes.jsonl has them "
        "whole</span></p>",
    ]
    parts.extend(
        _episode(index, result, scenarios.get(result.scenario_id), limits[_state(result) == "passed"], system)
        for index, result in enumerate(ordered)
    )
    parts.append(f"</section><script>{_JS}</script></body></html>\n")
    return "\n".join(parts)


def _limits(results: Sequence[EpisodeResult]) -> dict[bool, int]:
    """Characters shown of each long text, {passed: limit}: at most RESULT_LIMIT, less when the run made so many
    tool calls that the report would outgrow RESULTS_BUDGET (passed episodes count a quarter)."""
    passed = sum(len(r.tool_calls) for r in results if _state(r) == "passed")
    other = sum(len(r.tool_calls) for r in results) - passed
    weight = max(1, other + passed // PASSED_SHARE)
    limit = max(RESULT_FLOOR, min(RESULT_LIMIT, RESULTS_BUDGET // weight))
    return {False: limit, True: max(PASSED_FLOOR, limit // PASSED_SHARE)}


# -- the header and the numbers -------------------------------------------------------------------------------------


def _title(manifest: Manifest) -> str:
    config = manifest.config
    agent = config.get("agent") or {}
    who = str(agent.get("agent") or "?") if isinstance(agent, Mapping) else str(agent)
    model = agent.get("model") if isinstance(agent, Mapping) else None
    suites = config.get("suites") or []
    return f"{who}{' · ' + str(model) if model else ''} on {', '.join(map(str, suites)) or '?'}"


def _run_facts(manifest: Manifest, stats: RunStats, name: str) -> str:
    config = manifest.config
    population = manifest.population
    facts = [
        ("run", name),
        ("created", manifest.created),
        ("commit", (manifest.git_commit or "unknown")[:12]),
        ("version", manifest.package_version),
        (
            "population",
            f"{population.get('name') or config.get('database') or '?'} ({population.get('resources', '?')} resources)",
        ),
        ("scenarios", str(len(manifest.scenarios))),
        ("trials", str(config.get("trials", 1))),
        ("episodes", str(stats.episodes)),
    ]
    agent = config.get("agent")
    if isinstance(agent, Mapping) and agent.get("model"):
        facts.append(("temperature", str(agent.get("temperature"))))
        if agent.get("seed") is not None:
            facts.append(("seed", str(agent.get("seed"))))
    return _facts(facts)


def _pct(value: float) -> str:
    return f"{value:.1%}"


def _summary(stats: RunStats) -> str:
    overall = stats.overall
    cards = [
        (
            "pass@1",
            f'<b class="big">{_pct(overall.rate)}</b> <span>95% CI [{_pct(overall.low)}, {_pct(overall.high)}]</span>'
            f"<span>{overall.passed} of {overall.n} scored episodes</span>",
        )
    ]
    if stats.trials > 1:
        rows = "".join(
            f"<tr><td>{k}</td><td>{_pct(stats.pass_hat_k[k])}</td><td>{_pct(stats.pass_at_k.get(k, 0.0))}</td></tr>"
            for k in sorted(stats.pass_hat_k)
        )
        cards.append(
            (
                f"{stats.trials} trials",
                f'<table class="mini"><tr><th>k</th><th>pass^k</th><th>pass@k</th></tr>{rows}</table>',
            )
        )
    endings = "".join(
        f'<li><span class="term {_a(name)}">{_e(name)}</span> {count}</li>'
        for name, count in sorted(stats.terminations.items(), key=lambda item: -item[1])
    )
    cards.append(
        (
            "terminations",
            f'<ul class="plain">{endings}</ul><span>infrastructure errors (not scored): '
            f"{stats.infrastructure_errors}</span>",
        )
    )
    cost = f"<span>cost ${stats.cost:,.4f}</span>" if stats.cost is not None else "<span>cost unknown</span>"
    cards.append(
        (
            "tokens",
            f"<span>{stats.input_tokens:,} in</span><span>{stats.output_tokens:,} out</span>{cost}"
            f"<span>median episode {stats.seconds_p50:.2f} s</span>",
        )
    )
    return (
        '<div class="cards">'
        + "".join(f'<div class="card"><h4>{_e(t)}</h4>{body}</div>' for t, body in cards)
        + "</div>"
    )


def _chart(categories: Mapping[str, Rate], overall: Rate) -> str:
    """Horizontal bars (pass@1 per category) with their 95% intervals as error bars, and the overall rate."""
    label_w, plot_w, value_w, row_h, top = 210, 440, 130, 26, 22
    width, height = label_w + plot_w + value_w, top + row_h * max(1, len(categories)) + 8
    parts = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="pass@1 per category with 95% intervals">'
    ]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = label_w + tick * plot_w
        parts.append(f'<line class="grid" x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{height - 4}"/>')
        parts.append(f'<text class="tick" x="{x:.1f}" y="{top - 8}" text-anchor="middle">{tick:.0%}</text>')
    for row, (category, rate) in enumerate(categories.items()):
        y = top + row * row_h
        middle = y + row_h / 2
        label = category if len(category) <= 30 else category[:29] + "…"
        summary = (
            f"{category}: {rate.passed}/{rate.n} = {_pct(rate.rate)}, 95% CI [{_pct(rate.low)}, {_pct(rate.high)}]"
        )
        low, high = label_w + rate.low * plot_w, label_w + rate.high * plot_w
        parts.append(
            f'<g class="category" data-category="{_a(category)}"><title>{_e(summary)}</title>'
            f'<text class="label" x="{label_w - 8}" y="{middle + 4:.1f}" text-anchor="end">{_e(label)}</text>'
            f'<rect class="bar" data-category="{_a(category)}" x="{label_w}" y="{y + 5}" '
            f'width="{rate.rate * plot_w:.1f}" height="{row_h - 10}"/>'
            f'<line class="err" x1="{low:.1f}" y1="{middle:.1f}" x2="{high:.1f}" y2="{middle:.1f}"/>'
            f'<line class="err" x1="{low:.1f}" y1="{middle - 5:.1f}" x2="{low:.1f}" y2="{middle + 5:.1f}"/>'
            f'<line class="err" x1="{high:.1f}" y1="{middle - 5:.1f}" x2="{high:.1f}" y2="{middle + 5:.1f}"/>'
            f'<text class="value" x="{label_w + plot_w + 8}" y="{middle + 4:.1f}">'
            f"{_pct(rate.rate)} ({rate.passed}/{rate.n})</text></g>"
        )
    if categories:
        x = label_w + overall.rate * plot_w
        parts.append(
            f'<line class="overall" x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{height - 4}">'
            f"<title>overall {_pct(overall.rate)}</title></line>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _index(ordered: Sequence[EpisodeResult], scenarios: Mapping[str, Scenario]) -> str:
    """Each scenario with its trials' outcomes, linking to the episodes."""
    rows: dict[str, list[tuple[int, EpisodeResult]]] = defaultdict(list)
    for index, result in enumerate(ordered):
        rows[result.scenario_id].append((index, result))
    lines = []
    for scenario_id in sorted(rows, key=lambda s: (rows[s][0][1].category, s)):
        episodes = sorted(rows[scenario_id], key=lambda item: item[1].trial)
        marks = " ".join(
            f'<a class="mark {_state(r)}" href="#ep-{i}" title="trial {r.trial}: {_a(r.termination)}">'
            f"{_MARKS[_state(r)]}</a>"
            for i, r in episodes
        )
        scenario = scenarios.get(scenario_id)
        title = scenario.title if scenario else ""
        lines.append(
            f"<tr><td>{_e(episodes[0][1].category)}</td><td><code>{_e(scenario_id)}</code></td>"
            f"<td>{_e(title)}</td><td>{marks}</td></tr>"
        )
    return (
        '<section id="scenarios"><details><summary><h2>Scenarios</h2></summary>'
        '<table class="index"><tr><th>category</th><th>scenario</th><th>title</th><th>trials</th></tr>'
        + "".join(lines)
        + "</table></details></section>"
    )


# -- one episode ----------------------------------------------------------------------------------------------------

_MARKS = {"failed": "✗", "infra": "!", "passed": "✓"}
_STATE_LABEL = {"failed": "FAILED", "infra": "INFRA ERROR", "passed": "PASSED"}


def _state(result: EpisodeResult) -> str:
    if result.score is None or result.termination == Termination.INFRASTRUCTURE_ERROR:
        return "infra"
    return "passed" if result.score >= 1.0 else "failed"


def _label(result: EpisodeResult, state: str) -> str:
    """Not-scored episodes say why: an infrastructure error, or a scenario this endpoint cannot run."""
    if state == "infra" and result.termination != Termination.INFRASTRUCTURE_ERROR:
        return _e(str(result.termination).replace("_", " ").upper())
    return _STATE_LABEL[state]


def _order(result: EpisodeResult) -> tuple[int, str, str, int]:
    return ({"failed": 0, "infra": 1, "passed": 2}[_state(result)], result.category, result.scenario_id, result.trial)


def _episode(index: int, result: EpisodeResult, scenario: Scenario | None, limit: int, system: str) -> str:
    state = _state(result)
    score = "not scored" if result.score is None else f"score {result.score:g}"
    title = f" · {_e(scenario.title)}" if scenario else ""
    summary = (
        f'<span class="badge {state}">{_label(result, state)}</span> <code>{_e(result.scenario_id)}</code> '
        f"<span>trial {result.trial}</span>{title} "
        f'<span class="cat">{_e(result.category)}</span> '
        f'<span class="term {_a(result.termination)}">{_e(result.termination)}</span> '
        f'<span class="dim">{score} · {len(result.tool_calls)} calls · {result.seconds:.2f} s</span>'
    )
    body = []
    if scenario is not None:
        body.append(f'<p class="instruction"><b>Task:</b> {_e(scenario.instruction)}</p>')
    facts = [
        ("agent", result.agent),
        ("model", result.model or ""),
        ("patient", result.patient_id or ""),
        ("started", result.started),
        ("tokens", f"{result.input_tokens:,} in / {result.output_tokens:,} out" if result.input_tokens else ""),
        ("cost", f"${result.cost:.4f}" if result.cost is not None else ""),
        ("model retries", str(result.retries) if result.retries else ""),
        ("attempts", str(result.attempts) if result.attempts > 1 else ""),
    ]
    body.append(_facts(facts))
    if result.error:
        body.append(f'<p class="error"><b>error:</b> {_e(result.error)}</p>')
    body.append(_checks(result))
    body.append(
        "<h4>Answer</h4>" + (_pre(result.answer, limit) if result.answer is not None else "<p class=dim>none</p>")
    )
    body.append(_state_diff(result, scenario, limit))
    body.append(
        "<h4>Values computed from the chart</h4>"
        + (_pre(result.values, limit) if result.values else "<p class=dim>none</p>")
    )
    body.append(_conversation(result.messages, limit, system))
    body.append(_fhir_calls(result, limit))
    return (
        f'<details class="episode {state}" id="ep-{index}" data-scenario="{_a(result.scenario_id)}" '
        f'data-trial="{result.trial}"><summary>{summary}</summary><div class="body">{"".join(body)}</div></details>'
    )


def _checks(result: EpisodeResult) -> str:
    if not result.checks:
        return "<h4>Checks</h4><p class=dim>not graded</p>"
    rows = []
    for check in result.checks:
        verdict = "n/a" if not check.applicable else ("pass" if check.passed else "fail")
        rows.append(
            f'<tr class="{verdict.replace("/", "")}"><td><code>{_e(check.name)}</code></td><td>{_e(check.type)}</td>'
            f"<td>{'counted' if check.counted else 'diagnostic'}</td>"
            f'<td class="verdict">{verdict}</td><td>{_e(check.reason)}</td></tr>'
        )
    return (
        '<h4>Checks</h4><table class="checks"><tr><th>check</th><th>type</th><th>counts</th><th>result</th>'
        "<th>reason</th></tr>" + "".join(rows) + "</table>"
    )


def _state_diff(result: EpisodeResult, scenario: Scenario | None, limit: int) -> str:
    """What the episode wrote, next to what the write checks expected."""
    written = []
    for write in result.writes:
        head = (
            f'<p class="write-head"><b>{_e(write.kind)}</b> <code>{_e(write.type)}/{_e(write.id)}</code> '
            f"v{write.version} (HTTP {write.status})</p>"
        )
        parts = [head]
        if write.prior is not None and write.resource is not None:
            parts.append(_diff_table(write.prior, write.resource))
        if write.resource is None:
            parts.append("<p class=dim>no longer exists (deleted)</p>")
        else:
            parts.append(_fold("final resource", _pre(write.resource, limit), open_=write.prior is None))
        if write.prior is not None:
            parts.append(_fold(f"prior version (v{write.version - 1})", _pre(write.prior, limit)))
        written.append(f'<div class="write">{"".join(parts)}</div>')
    definitions = {c.name: c for c in scenario.expectations.checks} if scenario else {}
    expected = []
    for check in result.checks:
        if check.type.startswith("answer_"):
            continue
        verdict = "n/a" if not check.applicable else ("pass" if check.passed else "fail")
        definition = definitions.get(check.name)
        spec = ""
        if definition is not None:
            data = definition.model_dump(mode="json", exclude_defaults=True, exclude={"name", "type", "description"})
            spec = _pre(data, limit) if data else ""
        expected.append(
            f'<div class="expect {verdict.replace("/", "")}"><p><code>{_e(check.name)}</code> {_e(check.type)} '
            f'<span class="verdict">{verdict}</span>{"" if check.counted else " (diagnostic)"}</p>'
            f"<p>{_e(check.reason)}</p>{spec}</div>"
        )
    return (
        f'<h4>State: what it wrote ({len(result.writes)}) vs what the checks expected</h4><div class="diff">'
        f'<div class="col"><h5>written</h5>{"".join(written) or "<p class=dim>nothing</p>"}</div>'
        f'<div class="col"><h5>expected (write checks)</h5>{"".join(expected) or "<p class=dim>no write checks</p>"}'
        "</div></div>"
    )


def _diff_table(before: Any, after: Any) -> str:
    old, new = _flatten(before), _flatten(after)
    changed = [p for p in sorted(set(old) | set(new)) if old.get(p, _MISSING) != new.get(p, _MISSING)]
    changed = [p for p in changed if not p.startswith("meta.")]
    if not changed:
        return "<p class=dim>no change besides meta</p>"
    rows = "".join(
        f"<tr><td><code>{_e(p)}</code></td><td>{_short(old.get(p, _MISSING))}</td>"
        f"<td>{_short(new.get(p, _MISSING))}</td></tr>"
        for p in changed[:DIFF_ROWS]
    )
    more = f"<p class=note>and {len(changed) - DIFF_ROWS} more changed paths</p>" if len(changed) > DIFF_ROWS else ""
    return f'<table class="changes"><tr><th>path</th><th>before</th><th>after</th></tr>{rows}</table>{more}'


_MISSING = object()


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat |= _flatten(item, f"{prefix}.{key}" if prefix else str(key))
        return flat
    if isinstance(value, list) and value:
        flat = {}
        for position, item in enumerate(value):
            flat |= _flatten(item, f"{prefix}[{position}]")
        return flat
    return {prefix: value}


def _short(value: Any) -> str:
    if value is _MISSING:
        return '<span class="dim">(absent)</span>'
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return _e(text if len(text) <= 200 else text[:199] + "…")


def _conversation(messages: Sequence[Mapping[str, Any]], limit: int, system: str = "") -> str:
    if not messages:
        return ""
    items = []
    first_human = True
    for message in messages:
        role = str(message.get("role", "?"))
        text = _text(message.get("content"))
        usage = message.get("usage") or {}
        tokens = f" · {usage.get('input_tokens', 0)} in / {usage.get('output_tokens', 0)} out" if usage else ""
        head = f'<p class="role">{_e(role)}{_e(tokens)}</p>'
        # tool results (and the text protocol's replies after the task) repeat what "FHIR calls" shows
        if role == "tool" or (role == "human" and not first_human):
            preview = text if len(text) <= PREVIEW_LIMIT else text[:PREVIEW_LIMIT] + "…"
            more = f' <span class="note">({len(text):,} chars)</span>' if preview != text else ""
            items.append(f'<div class="msg {_a(role)}">{head}<code>{_e(preview)}</code>{more}</div>')
            continue
        first_human = first_human and role != "human"
        if role == "system" and system and text == system:
            items.append(f'<div class="msg system">{head}<p class="dim">the system prompt shown above</p></div>')
            continue
        parts = [head, _pre_text(text, limit) if text else ""]
        for call in message.get("tool_calls") or ():
            args = orjson.dumps(call.get("args"), option=orjson.OPT_NON_STR_KEYS).decode()
            parts.append(f'<p class="call">→ <b>{_e(call.get("name"))}</b>({_clip_e(args, limit)})</p>')
        for bad in message.get("invalid_tool_calls") or ():
            parts.append(
                f'<p class="call bad">✗ invalid call <b>{_e(bad.get("name"))}</b>({_clip_e(str(bad.get("args")), 300)})'
                f": {_e(bad.get('error') or 'could not be parsed')}</p>"
            )
        items.append(f'<div class="msg {_a(role)}">{"".join(parts)}</div>')
    return _fold(f"Conversation ({len(messages)} messages)", "".join(items), css="h4like")


def _fhir_calls(result: EpisodeResult, limit: int) -> str:
    if not result.tool_calls:
        return "<h4>FHIR calls</h4><p class=dim>none</p>"
    base = _base_url(result)
    rows = []
    for call in result.tool_calls:
        url = call.url or ""
        if base and url.startswith(base):
            url = url[len(base) :]
        request = f"{call.method or ''} {url}".strip() or "(no HTTP request)"
        args = ""
        if call.tool in ("create", "update") or not call.url:
            args = _fold("arguments", _pre(call.args, limit))
        shown = _fold("result", _pre(call.result, limit)) if call.result is not None else ""
        rows.append(
            f'<tr class="{"ok" if call.ok else "fail"}"><td>{call.step}</td><td>{_e(call.tool)}</td>'
            f'<td class="url"><code>{_e(request)}</code>{args}{shown}</td>'
            f"<td>{_e(call.status if call.status is not None else '')}</td><td>{call.seconds * 1000:.0f}</td></tr>"
        )
    failed = sum(not c.ok for c in result.tool_calls)
    return (
        f"<h4>FHIR calls ({len(result.tool_calls)}, {failed} failed)</h4>"
        + (f'<p class="note">URLs relative to {_e(base)}</p>' if base else "")
        + '<table class="calls"><tr><th>#</th><th>tool</th><th>request</th><th>status</th><th>ms</th></tr>'
        + "".join(rows)
        + "</table>"
    )


def _shared_system_prompt(results: Sequence[EpisodeResult]) -> str:
    """The system prompt most episodes share: shown once, not in every conversation."""
    prompts = Counter(
        _text(r.messages[0].get("content")) for r in results if r.messages and r.messages[0].get("role") == "system"
    )
    return prompts.most_common(1)[0][0] if prompts else ""


def _base_url(result: EpisodeResult) -> str:
    """The session's FHIR base (".../fhir/"), said once instead of in every URL."""
    for call in result.tool_calls:
        if call.url and "/fhir/" in call.url:
            return call.url[: call.url.index("/fhir/") + len("/fhir/")]
    return ""


# -- small helpers --------------------------------------------------------------------------------------------------


def _facts(facts: Sequence[tuple[str, str]]) -> str:
    items = "".join(f"<div><dt>{_e(k)}</dt><dd>{_e(v)}</dd></div>" for k, v in facts if v)
    return f'<dl class="facts">{items}</dl>'


def _e(value: Any) -> str:
    """Text content, escaped."""
    return html.escape(str(value), quote=False)


def _a(value: Any) -> str:
    """An attribute value (in double quotes), escaped."""
    return html.escape(str(value), quote=True)


def _text(content: Any) -> str:
    if content is None or content == "":
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) for p in content):  # content blocks
        texts = [str(p.get("text", "")) for p in content if p.get("type") == "text"]
        if len(texts) == len(content):
            return "\n".join(texts)
    return _json_text(content)


def _json_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return repr(value)


def _pre(value: Any, limit: int) -> str:
    return _pre_text(_json_text(value), limit)


def _pre_text(text: str, limit: int) -> str:
    if len(text) <= limit:
        return f"<pre>{html.escape(text, quote=False)}</pre>"
    return (
        f"<pre>{html.escape(text[:limit], quote=False)}</pre>"
        f'<p class="note">cut: the first {limit:,} of {len(text):,} characters</p>'
    )


def _clip_e(text: str, limit: int) -> str:
    return _e(text if len(text) <= limit else text[:limit] + f"… [{len(text):,} characters]")


def _fold(label: str, inner: str, open_: bool = False, css: str = "") -> str:
    return f'<details class="fold {css}"{" open" if open_ else ""}><summary>{_e(label)}</summary>{inner}</details>'


def _load_scenarios(manifest: Manifest) -> list[Scenario]:
    """The run's scenarios as the files now say (for titles and check definitions); none if they cannot be read."""
    suites = manifest.config.get("suites") or []
    try:
        loaded = load_scenarios(suites)
    except Exception:  # the report must not fail because scenario files moved
        return []
    return [s for s in loaded.scenarios if s.id in manifest.scenarios]


_CSS = """
:root{--fg:#1d2330;--dim:#6b7280;--line:#e3e6eb;--pass:#1a7f37;--fail:#c62828;--infra:#b26a00;--bar:#4c78a8}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);margin:0 auto;
max-width:1280px;padding:16px 24px 64px}
h1{font-size:22px;margin:8px 0}h2{font-size:18px;margin:24px 0 8px;display:inline-block}
h3{font-size:15px;margin:16px 0 6px}h4{font-size:14px;margin:14px 0 6px}h5{font-size:13px;margin:4px 0;color:var(--dim)}
code,pre{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
pre{background:#f6f8fa;border:1px solid var(--line);border-radius:4px;padding:6px 8px;margin:4px 0;
white-space:pre-wrap;word-break:break-word;max-height:420px;overflow:auto}
table{border-collapse:collapse;margin:4px 0;width:100%}th,td{border-bottom:1px solid var(--line);padding:3px 6px;
text-align:left;vertical-align:top}th{font-weight:600;background:#fafbfc}
.facts{display:flex;flex-wrap:wrap;gap:2px 18px;margin:6px 0}.facts dt,.facts dd{display:inline;margin:0}
.facts dt{color:var(--dim)}.facts dt::after{content:": "}
.cards{display:flex;flex-wrap:wrap;gap:12px}.card{border:1px solid var(--line);border-radius:6px;padding:8px 12px;
min-width:180px}.card h4{margin:0 0 4px;color:var(--dim);font-weight:600}.card span{display:block}
.big{font-size:28px}.mini{width:auto}.plain{list-style:none;padding:0;margin:0}
.chart .bar{fill:var(--bar)}.chart .err{stroke:#222;stroke-width:1.5}.chart .grid{stroke:var(--line)}
.chart .overall{stroke:var(--fail);stroke-dasharray:4 3}.chart text{font-size:12px;fill:var(--fg)}
.chart .tick{fill:var(--dim);font-size:11px}
.index{width:auto}.mark{text-decoration:none;font-weight:700;padding:0 2px}
.mark.passed,.verdict.pass,tr.pass .verdict{color:var(--pass)}.mark.failed,tr.fail .verdict{color:var(--fail)}
.mark.infra{color:var(--infra)}
details.episode{border:1px solid var(--line);border-left:5px solid var(--line);border-radius:4px;margin:6px 0}
details.episode.failed{border-left-color:var(--fail)}details.episode.passed{border-left-color:var(--pass)}
details.episode.infra{border-left-color:var(--infra)}
details.episode>summary{cursor:pointer;padding:6px 10px;list-style-position:inside}
details.episode>summary>*{margin-right:6px}.body{padding:0 14px 10px}
.badge{font-weight:700;font-size:12px;padding:1px 6px;border-radius:3px;color:#fff}.badge.failed{background:var(--fail)}
.badge.passed{background:var(--pass)}.badge.infra{background:var(--infra)}
.cat{background:#eef2f7;border-radius:3px;padding:0 5px}.term{font-family:ui-monospace,monospace;font-size:12px}
.dim{color:var(--dim)}.note{color:var(--dim);font-size:12px;margin:2px 0}.error{color:var(--fail)}
tr.fail td{background:#fff5f5}tr.fail .verdict,.expect.fail .verdict{color:var(--fail);font-weight:600}
.expect.pass .verdict{color:var(--pass);font-weight:600}
.diff{display:grid;grid-template-columns:1fr 1fr;gap:12px}.col{min-width:0}
.write,.expect{border:1px solid var(--line);border-radius:4px;padding:4px 8px;margin:4px 0}
.expect.fail{border-color:#f1b5b5}.expect p{margin:2px 0}.write-head{margin:2px 0}
.fold>summary{cursor:pointer;color:#33507a}.fold.h4like>summary{font-weight:600;margin:14px 0 6px;color:var(--fg)}
.msg{border-left:3px solid var(--line);padding:2px 8px;margin:6px 0}.msg.ai{border-left-color:var(--bar)}
.msg.tool{border-left-color:#9aa5b1}.msg .role{margin:0;font-weight:600;font-size:12px;color:var(--dim)}
.call{margin:2px 0;font-family:ui-monospace,monospace;font-size:12px;word-break:break-word}.call.bad{color:var(--fail)}
.calls td.url{word-break:break-all}tr.fail td:first-child{border-left:3px solid var(--fail)}
button{font:inherit;padding:2px 10px;cursor:pointer}
@media print{details{display:block}}
"""

_JS = """
document.querySelectorAll('button[data-open]').forEach(function (button) {
  button.addEventListener('click', function () {
    var which = button.getAttribute('data-open');
    document.querySelectorAll('details.episode').forEach(function (d) {
      d.open = which === 'all' || (which === 'failed' && d.classList.contains('failed'));
    });
  });
});
function openTarget() {
  var target = location.hash && document.getElementById(location.hash.slice(1));
  if (target && target.tagName === 'DETAILS') { target.open = true; target.scrollIntoView(); }
}
window.addEventListener('hashchange', openTarget);
openTarget();
"""
