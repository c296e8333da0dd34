"""The tools an agent acts with: generic, typed FHIR tools (search, read, create, update) and ``finish``.

Every call really happens on the session's FHIR server and the agent is told the truth: the resource, the
Bundle, or the OperationOutcome. Tools reach only the FHIR base URL they were given (FhirClient refuses any
other URL), and the step limit is enforced here, so every agent obeys the same rules.

Against an external endpoint the write tools may be disabled (they then refuse without making a request), and what
they write may be tagged (``meta.tag``) so that a run's resources can be found and removed afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from pydantic import BaseModel, Field

from ..fhir_server.client import FhirClient, FhirReply, OutsideBaseError

__all__ = [
    "TOOL_SPECS",
    "WRITES_DISABLED",
    "WRITE_TOOLS",
    "FhirTools",
    "StepLimitReached",
    "TimeLimitReached",
    "ToolCall",
    "ToolErrorLimitReached",
    "ToolResult",
    "langchain_tools",
]


MAX_RESULT_CHARS = 200_000


class StepLimitReached(RuntimeError):
    """The agent used all its tool calls."""


class ToolErrorLimitReached(RuntimeError):
    """The agent's tool calls failed too many times."""


class TimeLimitReached(RuntimeError):
    """The episode ran out of wall time."""


class ToolResult(BaseModel):
    ok: bool
    status: int | None = Field(None, description="The HTTP status of the FHIR call, if one was made.")
    content: Any = Field(description="What the agent is shown: the FHIR response body, or the error.")

    def text(self) -> str:
        """The result as a model reads it: the body's JSON, or {"error": true, "status", "body"} for a failure;
        cut at 200,000 characters with a hint (a page of a few hundred Observations fits)."""
        shown = self.content if self.ok else {"error": True, "status": self.status, "body": self.content}
        text = shown if isinstance(shown, str) else orjson.dumps(shown).decode()
        if len(text) > MAX_RESULT_CHARS:
            return text[:MAX_RESULT_CHARS] + f"... [truncated: {len(text):,} characters; use _count or _elements]"
        return text


class ToolCall(BaseModel):
    """One tool call as the trajectory records it."""

    step: int
    tool: str
    args: dict[str, Any]
    ok: bool
    status: int | None = None
    result: Any = None
    method: str | None = None
    url: str | None = None
    location: str | None = Field(None, description="The Location header of a write's response.")
    seconds: float = 0.0


_RESOURCE_TYPE = {"type": "string", "description": "A FHIR R4 resource type, e.g. Patient, Observation."}

TOOL_SPECS: list[dict[str, Any]] = [
    {
        "name": "search",
        "description": "Search FHIR resources: GET [base]/{resource_type}?{params}. Returns a searchset Bundle "
        "(follow its 'next' link with the 'url' parameter to page). Standard R4 search parameters, prefixes "
        "(ge, le, gt, lt) and modifiers, _sort (e.g. -date), _count.",
        "parameters": {
            "type": "object",
            "properties": {
                "resource_type": _RESOURCE_TYPE,
                "params": {
                    "type": "object",
                    "description": 'Search parameters, e.g. {"patient": "abc", "code": "K", "_sort": "-date"}. A list '
                    "value repeats the parameter (AND).",
                    "additionalProperties": {
                        "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]
                    },
                },
                "url": {"type": "string", "description": "Instead of the above: a paging link the server returned."},
            },
        },
    },
    {
        "name": "read",
        "description": "Read one resource: GET [base]/{resource_type}/{id}.",
        "parameters": {
            "type": "object",
            "properties": {"resource_type": _RESOURCE_TYPE, "id": {"type": "string"}},
            "required": ["resource_type", "id"],
        },
    },
    {
        "name": "create",
        "description": "Create a resource: POST [base]/{resourceType}. The resource must be valid FHIR R4 JSON "
        "(e.g. dosageInstruction.route is a CodeableConcept, note is a list of Annotations). Returns the stored "
        "resource with its new id, or an OperationOutcome saying what is wrong.",
        "parameters": {
            "type": "object",
            "properties": {"resource": {"type": "object", "description": "The FHIR resource, with resourceType."}},
            "required": ["resource"],
        },
    },
    {
        "name": "update",
        "description": "Replace a resource: PUT [base]/{resourceType}/{id} with the whole new version (read it "
        "first, change it, send it back). Returns the stored resource or an OperationOutcome.",
        "parameters": {
            "type": "object",
            "properties": {"resource": {"type": "object", "description": "The full FHIR resource, with its id."}},
            "required": ["resource"],
        },
    },
    {
        "name": "finish",
        "description": "End the task with your answer, in the form the instructions ask for.",
        "parameters": {
            "type": "object",
            "properties": {"answer": {"description": "The answer (any JSON value: number, text, list)."}},
            "required": ["answer"],
        },
    },
]
TOOL_NAMES = tuple(spec["name"] for spec in TOOL_SPECS)
WRITE_TOOLS = frozenset({"create", "update"})  # the rest only read (finish changes nothing in the chart)
WRITES_DISABLED = "writes are disabled against this server; the run was started without --allow-writes"


class FhirTools:
    """The tool set of one episode, bound to the session's FHIR base; records every call."""

    def __init__(
        self,
        client: FhirClient,
        max_steps: int,
        max_tool_errors: int | None = None,
        deadline: float | None = None,
        allow_writes: bool = True,
        tag: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        calls: list[ToolCall] | None = None,
    ):
        """``deadline`` is a ``time.monotonic()`` instant after which no further call runs. Without
        ``allow_writes``, create and update fail with WRITES_DISABLED and send nothing. ``tag`` is a Coding
        (system and code) or (system, code) pairs, added to the ``meta.tag`` of every resource the tools write.
        ``calls`` is the list to record the calls in (the session handle's, for targets that read it)."""
        self.client = client
        self.max_steps = max_steps
        self.max_tool_errors = max_tool_errors
        self.deadline = deadline
        self.allow_writes = allow_writes
        self.tags = _codings(tag)
        self.calls: list[ToolCall] = calls if calls is not None else []
        self.answer: Any = None
        self.finished = False

    @property
    def errors(self) -> int:
        return sum(not call.ok for call in self.calls)

    @property
    def steps_left(self) -> int:
        return self.max_steps - len(self.calls)

    def call(self, tool: str, args: Mapping[str, Any] | None = None) -> ToolResult:
        """Run ``tool`` with ``args``; a bad call is an error result for the agent, not an exception.

        Raises:
            StepLimitReached: the agent has no tool calls left.
            ToolErrorLimitReached: too many of its calls failed.
            TimeLimitReached: the episode's wall time is over.
        """
        if self.finished:
            return ToolResult(ok=False, content="the task is already finished")
        if self.steps_left <= 0:
            raise StepLimitReached(f"the step limit of {self.max_steps} tool calls was reached")
        if self.max_tool_errors is not None and self.errors >= self.max_tool_errors:
            raise ToolErrorLimitReached(f"{self.errors} tool calls failed (the limit is {self.max_tool_errors})")
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise TimeLimitReached("the episode's wall-time limit was reached")
        args = dict(args or {})
        started = time.perf_counter()
        reply: FhirReply | None = None
        try:
            result, reply = self._dispatch(tool, args)
        except (OutsideBaseError, _BadCall) as exc:
            result = ToolResult(ok=False, content=f"error: {exc}")
        self.calls.append(
            ToolCall(
                step=len(self.calls) + 1,
                tool=tool,
                args=args,
                ok=result.ok,
                status=result.status,
                result=result.content,
                method=reply.method if reply else None,
                url=reply.url if reply else None,
                location=reply.location if reply and tool in WRITE_TOOLS else None,
                seconds=round(time.perf_counter() - started, 4),
            )
        )
        return result

    def _dispatch(self, tool: str, args: dict[str, Any]) -> tuple[ToolResult, FhirReply | None]:
        if tool == "finish":
            _only(args, {"answer"}, {"answer"})
            self.answer, self.finished = args["answer"], True
            return ToolResult(ok=True, content="finished"), None
        if tool == "search":
            _only(args, {"resource_type", "params", "url"}, set())
            if args.get("url"):
                reply = self.client.request("GET", str(args["url"]))
            else:
                params = args.get("params") or {}
                if not isinstance(params, Mapping):
                    raise _BadCall("params must be an object of parameter names to values")
                reply = self.client.search(_type(args), {str(k): _param(v) for k, v in params.items()})
        elif tool == "read":
            _only(args, {"resource_type", "id"}, {"resource_type", "id"})
            reply = self.client.read(_type(args), _segment(args["id"], "id"))
        elif tool in ("create", "update"):
            _only(args, {"resource"}, {"resource"})
            resource = args["resource"]
            if not isinstance(resource, Mapping) or not isinstance(resource.get("resourceType"), str):
                raise _BadCall("resource must be a FHIR resource object with a resourceType")
            _segment(resource["resourceType"], "resourceType")
            if tool == "update":
                _segment(resource.get("id"), "id")
            if not self.allow_writes:
                return ToolResult(ok=False, content=WRITES_DISABLED), None
            resource = _tagged(resource, self.tags)
            reply = self.client.update(resource) if tool == "update" else self.client.create(resource)
        else:
            raise _BadCall(f"unknown tool {tool!r}; the tools are {', '.join(TOOL_NAMES)}")
        return ToolResult(ok=reply.ok, status=reply.status, content=reply.body), reply


def langchain_tools(tools: FhirTools) -> list[Any]:
    """The episode's tools as LangChain ``StructuredTool``s (for your own LangChain or LangGraph agent): each
    returns the JSON text of the result and is tagged ``read`` or ``write`` in its metadata."""
    from langchain_core.tools import StructuredTool

    def bound(name: str) -> Any:
        def call(**args: Any) -> str:
            return tools.call(name, args).text()

        return call

    return [
        StructuredTool.from_function(
            func=bound(spec["name"]),
            name=spec["name"],
            description=spec["description"],
            args_schema=spec["parameters"],
            metadata={"kind": "write" if spec["name"] in WRITE_TOOLS else "read"},
        )
        for spec in TOOL_SPECS
    ]


class _BadCall(ValueError):
    pass


def _only(args: Mapping[str, Any], allowed: set[str], required: set[str]) -> None:
    unknown = sorted(set(args) - allowed)
    if unknown:
        raise _BadCall(f"unknown argument(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    missing = sorted(required - set(args))
    if missing:
        raise _BadCall(f"missing argument(s) {', '.join(missing)}")


def _type(args: Mapping[str, Any]) -> str:
    return _segment(args.get("resource_type"), "resource_type")


def _segment(value: Any, name: str) -> str:
    """A single URL path segment: a type or id cannot smuggle in a path ("../", "?")."""
    if not isinstance(value, str) or not value or any(c in value for c in "/?#%\\") or value in (".", ".."):
        raise _BadCall(f"{name} must be a plain FHIR {name.replace('_', ' ')}, not {value!r}")
    return value


def _codings(tag: Mapping[str, str] | Iterable[tuple[str, str]] | None) -> list[dict[str, str]]:
    if tag is None:
        return []
    if isinstance(tag, Mapping):
        return [{"system": str(tag["system"]), "code": str(tag["code"])}]
    return [{"system": system, "code": code} for system, code in tag]


def _tagged(resource: Mapping[str, Any], tags: list[dict[str, str]]) -> Mapping[str, Any]:
    """``resource`` with ``tags`` added to its meta.tag (those it lacks); the agent's own dict is left as it was
    (the trajectory records what the agent sent)."""
    if not tags:
        return resource
    meta = resource.get("meta")
    meta = dict(meta) if isinstance(meta, Mapping) else {}
    present = meta.get("tag")
    present = list(present) if isinstance(present, list) else []
    have = {(t.get("system"), t.get("code")) for t in present if isinstance(t, Mapping)}
    meta["tag"] = present + [t for t in tags if (t["system"], t["code"]) not in have]
    return {**resource, "meta": meta}


def _param(value: Any) -> str | list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    return str(value)
