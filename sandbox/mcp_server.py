"""``fhir-sandbox mcp`` and ``fhir-sandbox grade``: one scenario's session served over the Model Context Protocol.

Any MCP-capable agent or IDE assistant gets the same typed tools as every other agent (``search``, ``read``,
``create``, ``update``, ``finish``: the names, descriptions and JSON Schemas of ``TOOL_SPECS``, run by
``FhirTools`` with the scenario's step limit), bound to one session opened at the scenario's ``now`` with its
setup. The task is offered as the ``task`` prompt, the ``fhir-sandbox://task`` resource and in the server's
instructions. Everything grading needs is kept in ``<state dir>/<session id>.json`` (rewritten after every tool
call) and the session stays in the population file, so ``grade`` can run after the MCP process has ended: it
starts its own server on the same file, reads the session's write log after the setup mark and grades it.
"""

from __future__ import annotations

import copy
import os
import re
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.prompts.base import Prompt
from mcp.server.mcpserver.resources import TextResource
from mcp.server.mcpserver.tools import Tool
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase, FuncMetadata
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from platformdirs import user_cache_dir
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from rich.console import Console

from .agents.base import AgentTask
from .agents.prompts import SYSTEM_PROMPT, task_text
from .agents.tools import (
    TOOL_SPECS,
    WRITE_TOOLS,
    FhirTools,
    StepLimitReached,
    TimeLimitReached,
    ToolCall,
    ToolErrorLimitReached,
)
from .episode import EpisodeLimits, Termination
from .fhir_server import ServerSettings, __version__
from .fhir_server.client import FhirClient
from .graders.inputs import Write
from .graders.outcome import Grade
from .grading import PreparedEpisode, grade_episode, prepare_episode
from .runs import scenario_hash
from .scenarios.loader import ScenarioError, load_scenario, load_scenarios
from .scenarios.model import Scenario
from .server import LocalServer
from .targets import LocalTarget, SessionHandle, TargetError

__all__ = [
    "TASK_URI",
    "McpSession",
    "SessionError",
    "SessionGrade",
    "SessionState",
    "build_mcp_server",
    "default_state_dir",
    "find_scenario",
    "grade_session",
    "load_state",
    "open_session",
    "serve_mcp",
]

TASK_URI = "fhir-sandbox://task"
_SESSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,63}$")  # the server's session ids (no path separators)
_LIMITS = {
    StepLimitReached: Termination.STEP_LIMIT,
    ToolErrorLimitReached: Termination.TOOL_ERROR_LIMIT,
    TimeLimitReached: Termination.TIME_LIMIT,
}


class SessionError(RuntimeError):
    """A problem the user can fix, said in one line: an unknown scenario or session, a changed scenario."""


class SessionState(BaseModel):
    """What grading an MCP session needs after its process has ended (``<session id>.json``)."""

    format: int = 1
    session_id: str
    scenario_id: str
    scenario_hash: str = Field(description="The scenario's content hash: grading refuses a changed scenario.")
    scenario_file: str | None = None
    suites: list[str] = Field(description="Where the scenario was looked up (suite names or absolute paths).")
    database: str = Field(description="The population file holding the session.")
    fhir_base_url: str
    mark: int = Field(description="Write-log entries before the agent acted (the setup's).")
    now: str
    variables: dict[str, str] = Field(default_factory=dict)
    patient: dict[str, Any] | None = None
    values: dict[str, Any] = Field(default_factory=dict)
    created: str
    termination: Termination = Termination.NO_FINISH
    error: str | None = None
    answer: Any = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    graded: Grade | None = Field(None, description="The grade, once the session was graded and deleted.")
    score: float | None = None


def default_state_dir() -> Path:
    """Where MCP session states are kept (``$XDG_CACHE_HOME/fhir-sandbox/mcp-sessions`` on Linux)."""
    return Path(user_cache_dir("fhir-sandbox")) / "mcp-sessions"


def _state_path(state_dir: Path, session_id: str) -> Path:
    if not _SESSION_ID.match(session_id):
        raise SessionError(f"{session_id!r} is not a session id (letters, digits, '.' and '-')")
    return state_dir / f"{session_id}.json"


def _save_state(state: SessionState, state_dir: Path) -> None:
    """Write the state atomically: a reader never sees half a file."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = _state_path(state_dir, state.session_id)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(orjson.dumps(state.model_dump(mode="json"), option=orjson.OPT_INDENT_2))
    os.replace(temporary, path)


def load_state(session_id: str, state_dir: Path) -> SessionState:
    """Raises: SessionError for an unknown session or an unreadable state file."""
    path = _state_path(state_dir, session_id)
    try:
        return SessionState.model_validate(orjson.loads(path.read_bytes()))
    except FileNotFoundError:
        raise SessionError(f"unknown session {session_id!r}: no {path.name} in {state_dir}") from None
    except (OSError, orjson.JSONDecodeError, ValidationError) as exc:
        raise SessionError(f"cannot read the state of session {session_id!r} ({path}): {exc}".splitlines()[0]) from None


def find_scenario(scenario_id: str, suites: list[str]) -> tuple[Scenario, str]:
    """The scenario ``scenario_id`` in ``suites`` and its file. Raises: SessionError when it is not there."""
    loaded = load_scenarios(suites)
    for scenario in loaded.scenarios:
        if scenario.id == scenario_id:
            return scenario, loaded.file(scenario)
    problems = (
        f" ({len(loaded.problems)} problem(s) loading them; first: {loaded.problems[0]})" if loaded.problems else ""
    )
    raise SessionError(f"no scenario {scenario_id!r} in {', '.join(suites)}{problems}")


class _RawArguments(ArgModelBase):
    """The tool arguments as the client sent them: ``FhirTools`` checks them exactly as for every other agent."""

    model_config = ConfigDict(extra="allow")

    def model_dump_one_level(self) -> dict[str, Any]:
        return {"arguments": dict(self.model_extra or {})}


class McpSession:
    """One scenario's prepared session and its tools; every call is recorded and the state file rewritten."""

    def __init__(self, prepared: PreparedEpisode, state: SessionState, state_dir: Path, tools: FhirTools):
        self.prepared = prepared
        self.state = state
        self.state_dir = state_dir
        self.tools = tools
        self._lock = threading.Lock()  # an MCP client may call tools concurrently: one episode, one call at a time

    @property
    def task(self) -> AgentTask:
        scenario = self.prepared.scenario
        return AgentTask(
            instruction=scenario.instruction,
            context=scenario.context,
            now=self.prepared.now,
            fhir_base_url=self.prepared.handle.fhir_base_url,
            max_steps=scenario.limits.max_steps,
        )

    @property
    def task_text(self) -> str:
        """What the agent is asked (instruction, context, now, step limit), as the LLM agent is told."""
        return task_text(self.task)

    def call(self, tool: str, arguments: Mapping[str, Any]) -> CallToolResult:
        """Run one tool call; its result is the JSON text the LLM agent would be shown."""
        with self._lock:
            try:
                result = self.tools.call(tool, _parse_json_strings(tool, arguments))
            except (StepLimitReached, ToolErrorLimitReached, TimeLimitReached) as exc:
                if self.state.termination == Termination.NO_FINISH:
                    self.state.termination, self.state.error = _LIMITS[type(exc)], str(exc)
                    _save_state(self.state, self.state_dir)
                return _result(f"error: {exc}; the episode is over", error=True)
            if self.tools.finished and self.state.termination == Termination.NO_FINISH:
                self.state.termination, self.state.answer = Termination.FINISHED, self.tools.answer
            self.state.tool_calls = list(self.tools.calls)
            _save_state(self.state, self.state_dir)
        return _result(result.text(), error=not result.ok)


def _parse_json_strings(tool: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """Object arguments some clients send as JSON text (``"resource": "{...}"``) parsed back into objects."""
    spec = next((s for s in TOOL_SPECS if s["name"] == tool), None)
    properties = spec["parameters"].get("properties", {}) if spec else {}
    parsed = dict(arguments)
    for name, value in arguments.items():
        if isinstance(value, str) and properties.get(name, {}).get("type") == "object":
            try:
                candidate = orjson.loads(value)
            except orjson.JSONDecodeError:
                continue
            if isinstance(candidate, dict):
                parsed[name] = candidate
    return parsed


def _result(text: str, error: bool) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)], is_error=error)


def open_session(
    scenario: Scenario,
    scenario_file: str | None,
    suites: list[str],
    database: str,
    target: LocalTarget,
    http: httpx.Client,
    state_dir: Path,
    limits: EpisodeLimits | None = None,
) -> McpSession:
    """Open and prepare the scenario's session on ``target`` (a server on ``database``) and save its state.

    Raises:
        TargetError, SetupError, ValuesUnavailable, httpx.HTTPError: the session could not be prepared.
    """
    limits = limits or EpisodeLimits(max_seconds=None)
    prepared = prepare_episode(scenario, target, http)
    state = SessionState(
        session_id=prepared.handle.id,
        scenario_id=scenario.id,
        scenario_hash=scenario_hash(scenario),
        scenario_file=str(Path(scenario_file).resolve()) if scenario_file else None,
        suites=suites,
        database=database,
        fhir_base_url=prepared.handle.fhir_base_url,
        mark=prepared.mark,
        now=prepared.now,
        variables=prepared.variables,
        patient=prepared.patient,
        values=prepared.values,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    _save_state(state, state_dir)
    tools = FhirTools(prepared.client, scenario.limits.max_steps, limits.max_tool_errors, None)
    return McpSession(prepared, state, state_dir, tools)


def build_mcp_server(session: McpSession) -> MCPServer:
    """The MCP server of ``session``: a tool per ``TOOL_SPECS`` entry, the task as a prompt and a resource."""
    scenario = session.prepared.scenario
    tools = [
        Tool(
            fn=_tool_function(session, spec["name"]),
            name=spec["name"],
            description=spec["description"],
            parameters=copy.deepcopy(spec["parameters"]),
            fn_metadata=FuncMetadata(arg_model=_RawArguments),
            is_async=False,
            annotations=ToolAnnotations(
                read_only_hint=spec["name"] not in WRITE_TOOLS,
                destructive_hint=spec["name"] == "update",
                open_world_hint=False,
            ),
        )
        for spec in TOOL_SPECS
    ]
    task = session.task_text
    resource = TextResource(
        uri=TASK_URI,
        name="task",
        title=scenario.title,
        description="The task of this session: the instruction, its context and the current time.",
        text=task,
    )
    server: MCPServer = MCPServer(
        "fhir-sandbox",
        title="FHIR Agent Sandbox",
        instructions=f"{SYSTEM_PROMPT}\n\nThe task (also the 'task' prompt and the {TASK_URI} resource):\n\n{task}",
        version=__version__,
        tools=tools,
        resources=[resource],
        log_level="WARNING",
    )

    def task_prompt() -> str:
        return task

    server.add_prompt(
        Prompt.from_function(
            task_prompt, name="task", title=scenario.title, description="The task of this session, to hand the agent."
        )
    )
    return server


def _tool_function(session: McpSession, name: str) -> Any:
    def call(arguments: dict[str, Any]) -> CallToolResult:
        return session.call(name, arguments)

    call.__name__ = name
    return call


def serve_mcp(
    scenario_id: str,
    suites: list[str],
    database: str,
    transport: str,
    port: int,
    state_dir: Path,
    console: Console,
) -> SessionState:
    """Open the scenario's session and serve it over MCP until the client disconnects (stdio) or Ctrl-C (HTTP).
    Messages go to ``console`` (stderr: on stdio, stdout is the protocol). Returns the session's final state.

    Raises:
        SessionError: an unknown scenario, an unusable database, a port in use.
        TargetError, SetupError, ValuesUnavailable, httpx.HTTPError: the session could not be prepared.
    """
    if transport not in ("stdio", "http"):
        raise SessionError(f"unknown transport {transport!r}; use stdio or http")
    if "://" not in database:
        if database == ":memory:" or not Path(database).is_file():
            raise SessionError(f"no population file {database!r} (the session must outlive the MCP server)")
        database = str(Path(database).resolve())
    if transport == "http":
        _check_port_free(port)
    suites = [str(Path(s).resolve()) if Path(s).exists() else s for s in suites]
    scenario, scenario_file = find_scenario(scenario_id, suites)
    # the session stays in the population file after the MCP server ends: LocalServer never clears sessions
    with LocalServer(ServerSettings(database=database)) as fhir, httpx.Client(timeout=120) as http:
        session = open_session(scenario, scenario_file, suites, database, LocalTarget(fhir.url, http), http, state_dir)
        grade_command = _grade_command(session.state.session_id, state_dir)
        console.print(
            f"MCP session [bold]{session.state.session_id}[/bold]: scenario {scenario.id} ({scenario.title}), "
            f"now {session.prepared.now}, database {database}",
            highlight=False,
        )
        where = "stdio" if transport == "stdio" else f"http://127.0.0.1:{port}/mcp (streamable HTTP)"
        console.print(f"serving MCP tools {', '.join(s['name'] for s in TOOL_SPECS)} on {where}", highlight=False)
        console.print(f"when the agent is done: [bold]{grade_command}[/bold]", highlight=False)
        server = build_mcp_server(session)
        try:
            if transport == "stdio":
                server.run("stdio")
            else:
                server.run("streamable-http", host="127.0.0.1", port=port)
        except KeyboardInterrupt:
            pass
    state = session.state
    console.print(
        f"MCP session {state.session_id} ended ({state.termination}, {len(state.tool_calls)} tool call(s)); "
        f"grade it: {grade_command}",
        highlight=False,
    )
    return state


def _check_port_free(port: int) -> None:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise SessionError(f"cannot serve on 127.0.0.1:{port}: {exc.strerror or exc}") from None


def _grade_command(session_id: str, state_dir: Path) -> str:
    default = state_dir.resolve() == default_state_dir().resolve()
    return f"fhir-sandbox grade {session_id}" + ("" if default else f" --state-dir {state_dir}")


@dataclass
class SessionGrade:
    state: SessionState
    grade: Grade
    score: float
    writes: list[Write]
    deleted: bool
    earlier: bool = False  # graded (and deleted) before: the stored grade


def grade_session(session_id: str, state_dir: Path, keep: bool = False) -> SessionGrade:
    """Grade what was done in an MCP session: its writes after the setup mark, its answer, with its scenario.
    The session is deleted afterwards unless ``keep``; its state file keeps the grade.

    Raises:
        SessionError: an unknown session, one no longer on the server, a changed or missing scenario.
        TargetError, httpx.HTTPError: the server failed.
    """
    state = load_state(session_id, state_dir)
    if state.graded is not None:
        return SessionGrade(state, state.graded, state.score or 0.0, [], deleted=True, earlier=True)
    scenario = _scenario_of(state)
    if "://" not in state.database and not Path(state.database).is_file():
        raise SessionError(f"the population file {state.database} of session {state.session_id} is gone")
    with LocalServer(ServerSettings(database=state.database)) as fhir, httpx.Client(timeout=120) as http:
        reply = http.get(f"{fhir.url}/sessions/{state.session_id}")
        if reply.status_code == 404:
            raise SessionError(
                f"session {state.session_id} is no longer in {state.database} (deleted, or cleared by "
                "`fhir-sandbox serve`, which clears sessions when it starts)"
            )
        if reply.status_code != 200:
            raise TargetError(f"GET /sessions/{state.session_id} answered HTTP {reply.status_code}")
        handle = SessionHandle(state.session_id, reply.json()["fhir_base_url"])
        prepared = PreparedEpisode(
            scenario,
            handle,
            FhirClient(handle.fhir_base_url, http),
            state.mark,
            state.patient,
            state.values,
            {**state.variables, "now": state.now},
        )
        target = LocalTarget(fhir.url, http)
        writes, graded = grade_episode(prepared, state.answer, target)
        score = graded.score if state.termination == Termination.FINISHED else 0.0
        if not keep:
            target.close(handle)
            state.graded, state.score = graded, score
            _save_state(state, state_dir)
    return SessionGrade(state, graded, score, writes, deleted=not keep)


def _scenario_of(state: SessionState) -> Scenario:
    """The session's scenario, as it was when the session was created."""
    scenario = None
    if state.scenario_file and Path(state.scenario_file).is_file():
        try:
            scenario = load_scenario(state.scenario_file)
        except ScenarioError as exc:
            raise SessionError(f"scenario file {state.scenario_file} no longer loads: {exc.problems[0]}") from None
        if scenario.id != state.scenario_id:
            scenario = None
    if scenario is None:
        scenario, _ = find_scenario(state.scenario_id, state.suites)
    if scenario_hash(scenario) != state.scenario_hash:
        raise SessionError(
            f"scenario {state.scenario_id} has changed since session {state.session_id} was created (hash "
            f"{state.scenario_hash} -> {scenario_hash(scenario)}); grading it would not measure what the agent did"
        )
    return scenario
