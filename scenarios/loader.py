"""Reading scenario files: every problem is reported as file, JSON pointer, what is wrong and what is valid."""

from __future__ import annotations

import re
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from .model import Scenario

__all__ = [
    "SUITES_DIR",
    "LoadedScenarios",
    "ScenarioError",
    "ScenarioProblem",
    "load_scenario",
    "load_scenarios",
    "scenario_files",
]

SUITES_DIR = Path(__file__).resolve().parent  # the bundled suites: core/, extended/


@dataclass(frozen=True)
class ScenarioProblem:
    file: str
    pointer: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.pointer or '/'}: {self.message}"


class ScenarioError(ValueError):
    """One or more problems in scenario files."""

    def __init__(self, problems: list[ScenarioProblem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def scenario_files(paths: Iterable[Path | str]) -> list[Path]:
    """The scenario files of ``paths``: files as given, folders searched recursively for ``*.json``; a bundled
    suite may be named by its name (``core``, ``extended``)."""
    found: list[Path] = []
    for item in paths:
        path = Path(item)
        if not path.exists() and (SUITES_DIR / str(item)).is_dir():
            path = SUITES_DIR / str(item)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*.json") if p.name != "schema.json"))
        else:
            found.append(path)
    return found


def load_scenario(path: Path | str) -> Scenario:
    """The scenario in ``path``.

    Raises:
        ScenarioError: the file cannot be read, is not JSON, or is not a valid scenario.
    """
    path = Path(path)
    try:
        data = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise ScenarioError([ScenarioProblem(str(path), "", f"cannot read: {exc.strerror or exc}")]) from None
    except orjson.JSONDecodeError as exc:
        raise ScenarioError([ScenarioProblem(str(path), "", f"not valid JSON: {exc}")]) from None
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(_merged([_problem(str(path), data, error) for error in exc.errors()])) from None


@dataclass
class LoadedScenarios:
    scenarios: list[Scenario] = field(default_factory=list)
    problems: list[ScenarioProblem] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # scenario id -> the file it came from

    def file(self, scenario: Scenario) -> str:
        return self.files.get(scenario.id, scenario.id)


def load_scenarios(paths: Iterable[Path | str]) -> LoadedScenarios:
    """Every valid scenario under ``paths``, and every problem found (ids must be unique across files)."""
    paths = list(paths)
    loaded = LoadedScenarios()
    files = scenario_files(paths)
    for path in files:
        try:
            scenario = load_scenario(path)
        except ScenarioError as exc:
            loaded.problems.extend(exc.problems)
            continue
        if scenario.id in loaded.files:
            used = f"id {scenario.id!r} is already used by {loaded.files[scenario.id]}"
            loaded.problems.append(ScenarioProblem(str(path), "/id", used))
            continue
        loaded.files[scenario.id] = str(path)
        loaded.scenarios.append(scenario)
    if not files:
        loaded.problems.append(ScenarioProblem(", ".join(map(str, paths)), "", "no scenario files (*.json) found"))
    return loaded


# -- pydantic errors as file/pointer/what is valid ------------------------------------------------------------------


def _problem(file: str, data: Any, error: Any) -> ScenarioProblem:
    path = _data_path(data, error["loc"])
    pointer = "".join(f"/{str(part).replace('~', '~0').replace('/', '~1')}" for part in path)
    message = error["msg"]
    kind = error["type"]
    if kind == "extra_forbidden":
        valid = _fields_at(path[:-1], data)
        message = f"unknown field {path[-1]!r}" + (f"; valid fields: {', '.join(valid)}" if valid else "")
    elif kind == "union_tag_invalid":
        tag = str(error["ctx"]["discriminator"]).strip("'")
        pointer += f"/{tag}"
        message = f"unknown {tag} {error['ctx']['tag']!r}; valid: {error['ctx']['expected_tags']}"
    elif kind == "missing":
        message = f"required field {path[-1]!r} is missing"
    elif "input" in error and kind not in ("value_error", "assertion_error"):
        message = f"{message} (got {_short(error['input'])})"
    return ScenarioProblem(file, pointer, message.removeprefix("Value error, "))


_TYPE_ERROR = re.compile(r"^Input should be a valid (\w+)(?: \(got (.*)\))?$")


def _merged(problems: list[ScenarioProblem]) -> list[ScenarioProblem]:
    """One line per location for a value that matches none of a union's types ("should be a valid boolean,
    integer, ... (got X)"), instead of one line per type."""
    merged: list[ScenarioProblem] = []
    types: dict[tuple[str, str], tuple[int, list[str], str]] = {}  # location -> (line, type names, "got")
    for problem in problems:
        match = _TYPE_ERROR.match(problem.message)
        if not match:
            merged.append(problem)
            continue
        key = (problem.file, problem.pointer)
        if key not in types:
            types[key] = (len(merged), [], f" (got {match.group(2)})" if match.group(2) else "")
            merged.append(problem)
        line, names, got = types[key]
        names.append(match.group(1))
        listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
        merged[line] = ScenarioProblem(problem.file, problem.pointer, f"Input should be a valid {listed}{got}")
    return merged


def _data_path(data: Any, loc: tuple[Any, ...]) -> list[Any]:
    """pydantic's location without the union tags it inserts (e.g. 'answer_number'): a path into the data."""
    path: list[Any] = []
    node = data
    for part in loc:
        inside = (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        )
        if inside:
            node = node[part]
            path.append(part)
        elif _is_tag(node, part):
            continue
        else:  # a field that is missing or unknown: the last part of the path
            path.append(part)
            node = None
    return path


def _is_tag(node: Any, part: Any) -> bool:
    """A location part pydantic adds for a union member (its tag, or a type name like 'list[any]')."""
    if isinstance(node, dict) and part in (node.get("type"), node.get("kind")):
        return True
    return isinstance(part, str) and (part in ("Expr", "bool", "int", "float", "str") or part.endswith("]"))


def _fields_at(path: list[Any], data: Any) -> list[str]:
    """The field names of the model at ``path`` of the data (best effort: for the 'unknown field' message)."""
    model: Any = Scenario
    node = data
    for part in path:
        node = node[part] if isinstance(node, dict | list) else None
        model = _child_model(model, part, node)
        if model is None:
            return []
    return sorted(model.model_fields) if isinstance(model, type) and issubclass(model, BaseModel) else []


def _child_model(model: Any, part: Any, node: Any) -> Any:
    if isinstance(model, type) and issubclass(model, BaseModel):
        field = model.model_fields.get(str(part))
        return _concrete(field.annotation, node) if field else None
    origin = typing.get_origin(model)
    if origin in (list, dict):
        return _concrete(typing.get_args(model)[-1], node)
    return None


def _concrete(annotation: Any, node: Any) -> Any:
    """Unwrap Annotated/Optional/unions; for a tagged union pick the variant that ``node``'s tag names."""
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    args = typing.get_args(annotation)
    if args and typing.get_origin(annotation) not in (list, dict):
        candidates = [a for a in args if a is not type(None)]
        tag = (node.get("type") or node.get("kind")) if isinstance(node, dict) else None
        for candidate in candidates:
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                literal = candidate.model_fields.get("type") or candidate.model_fields.get("kind")
                if tag is None or (literal and tag in typing.get_args(literal.annotation)):
                    return candidate
        return candidates[0] if len(candidates) == 1 else None
    return annotation


def _short(value: Any) -> str:
    text = orjson.dumps(value).decode() if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
