"""The scenario format and its loader: the checked-in schema is current, and every problem in a file is reported
as file, JSON pointer and a message saying what is valid."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
import pytest
from fhir_sandbox.fixtures import MRN_SYSTEM
from fhir_sandbox.scenarios.loader import (
    SUITES_DIR,
    ScenarioError,
    ScenarioProblem,
    load_scenario,
    load_scenarios,
    scenario_files,
)
from fhir_sandbox.scenarios.model import CHECK_TYPES, Check, FieldAssertion, Scenario
from fhir_sandbox.scenarios.schema import SCHEMA_PATH, schema_text
from pydantic import TypeAdapter, ValidationError

GOOD: dict[str, Any] = {
    "id": "test.potassium.01",
    "category": "lab-lookup",
    "title": "Latest potassium",
    "instruction": "What is the latest potassium of patient S1234567?",
    "now": "2023-11-13T10:15:00+00:00",
    "patient": {"mrn": "S1234567"},
    "expectations": {
        "values": {"k": {"kind": "latest", "code": "K"}},
        "checks": [
            {"name": "answer", "type": "answer_number", "expected": {"expr": "%k.value"}, "tolerance": 0.05},
            {"name": "read_only", "type": "no_writes"},
        ],
    },
    "reward_basis": ["answer", "read_only"],
    "reference": {"steps": [{"tool": "finish", "args": {"answer": 3.2}}]},
}


def scenario_data(**changes: Any) -> dict[str, Any]:
    return copy.deepcopy(GOOD) | changes


def write(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else orjson.dumps(data))
    return path


def problems(tmp_path: Path, data: Any) -> list[ScenarioProblem]:
    path = write(tmp_path / "scenario.json", data)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert all(p.file == str(path) for p in caught.value.problems)
    assert str(path) in str(caught.value)
    return caught.value.problems


def only(tmp_path: Path, data: Any) -> ScenarioProblem:
    found = problems(tmp_path, data)
    assert len(found) == 1, found
    return found[0]


# -- the schema -------------------------------------------------------------------------------------------------------


def test_checked_in_schema_is_current() -> None:
    assert SCHEMA_PATH.read_text(encoding="utf-8") == schema_text(), (
        "scenarios/schema.json is stale: regenerate it with `python -m fhir_sandbox.scenarios.schema`"
    )


def test_schema_describes_the_format() -> None:
    schema = orjson.loads(schema_text())
    assert schema["$schema"].endswith("2020-12/schema")
    assert set(schema["required"]) >= {"id", "now", "expectations", "reward_basis", "reference"}
    assert schema["additionalProperties"] is False
    described = {
        definition["properties"]["type"]["const"]
        for definition in schema["$defs"].values()
        if "type" in definition.get("properties", {}) and "const" in definition["properties"]["type"]
    }
    assert described == set(CHECK_TYPES)


def test_check_types_match_the_union() -> None:
    adapter = TypeAdapter(Check)
    for kind in CHECK_TYPES:
        with pytest.raises(ValidationError) as caught:
            adapter.validate_python({"name": "x", "type": kind, "unknown_field_for_test": 1})
        assert "union_tag_invalid" not in str(caught.value)


# -- a good file --------------------------------------------------------------------------------------------------


def test_good_file_loads(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path / "good.json", GOOD))
    assert scenario.id == "test.potassium.01"
    assert scenario.patient is not None and scenario.patient.system == MRN_SYSTEM
    assert scenario.limits.max_steps == 20
    assert scenario.expects_action is False
    assert scenario.now.utcoffset() is not None


def test_expects_action_when_the_reference_writes() -> None:
    steps = [{"tool": "create", "args": {"resource": {"resourceType": "Flag"}}}, {"tool": "finish"}]
    scenario = Scenario.model_validate(scenario_data(reference={"steps": steps}))
    assert scenario.expects_action is True


# -- problems: file + pointer + what is valid ---------------------------------------------------------------------


def test_invalid_json(tmp_path: Path) -> None:
    problem = only(tmp_path, b'{"id": "x",,}')
    assert problem.pointer == ""
    assert "not valid JSON" in problem.message
    assert str(problem).endswith(f":/: {problem.message}")


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError) as caught:
        load_scenario(tmp_path / "missing.json")
    assert "cannot read" in caught.value.problems[0].message


def test_unknown_field_lists_the_valid_fields(tmp_path: Path) -> None:
    data = scenario_data()
    data["expectations"]["checks"][0]["tolerence"] = 0.1
    problem = only(tmp_path, data)
    assert problem.pointer == "/expectations/checks/0/tolerence"
    assert "unknown field 'tolerence'" in problem.message
    assert "valid fields: description, expected, item, name, tolerance, type, unit, when" in problem.message


def test_unknown_top_level_and_value_fields(tmp_path: Path) -> None:
    problem = only(tmp_path, scenario_data(patients=[]))
    assert problem.pointer == "/patients" and "patient," in problem.message and "reward_basis" in problem.message
    data = scenario_data()
    data["expectations"]["values"]["k"]["window_hours"] = 4
    problem = only(tmp_path, data)
    assert problem.pointer == "/expectations/values/k/window_hours"
    assert "within_hours" in problem.message


def test_unknown_check_type_lists_the_valid_types(tmp_path: Path) -> None:
    data = scenario_data()
    data["expectations"]["checks"][1]["type"] = "no_write"
    problem = only(tmp_path, data)
    assert problem.pointer == "/expectations/checks/1/type"
    assert "unknown type 'no_write'" in problem.message
    assert all(kind in problem.message for kind in CHECK_TYPES)


def test_unknown_value_kind_lists_the_valid_kinds(tmp_path: Path) -> None:
    data = scenario_data()
    data["expectations"]["values"]["k"]["kind"] = "newest"
    problem = only(tmp_path, data)
    assert problem.pointer == "/expectations/values/k/kind"
    assert "unknown kind 'newest'" in problem.message and "'latest'" in problem.message


def test_missing_required_field(tmp_path: Path) -> None:
    data = scenario_data()
    del data["instruction"]
    problem = only(tmp_path, data)
    assert (problem.pointer, problem.message) == ("/instruction", "required field 'instruction' is missing")
    data = scenario_data()
    del data["expectations"]["checks"][0]["expected"]
    problem = only(tmp_path, data)
    assert problem.pointer == "/expectations/checks/0/expected" and "is missing" in problem.message


def test_reward_basis_naming_no_check(tmp_path: Path) -> None:
    problem = only(tmp_path, scenario_data(reward_basis=["answer", "answr"]))
    assert problem.pointer == "/reward_basis"
    assert "reward_basis names no check ['answr']" in problem.message
    assert "the checks are ['answer', 'read_only']" in problem.message


def test_duplicate_check_names(tmp_path: Path) -> None:
    data = scenario_data()
    data["expectations"]["checks"].append({"name": "answer", "type": "no_deletes"})
    problem = only(tmp_path, data)
    assert problem.pointer == "/expectations/checks"
    assert "check names must be unique; repeated: answer" in problem.message


def test_field_assertion_needs_exactly_one_test(tmp_path: Path) -> None:
    data = scenario_data()
    both = {"path": "status", "equals": "active", "exists": True}
    data["expectations"]["checks"].append({"name": "w", "type": "write_fields", "resource": "X", "fields": [both]})
    problem = only(tmp_path, data)
    assert problem.pointer == "/expectations/checks/2/fields/0"
    assert "exactly one of equals, approx, same_instant, contains, one_of, exists (it has equals, exists)" in (
        problem.message
    )
    assert FieldAssertion.model_validate({"path": "status", "exists": False}).test == "exists"
    assert FieldAssertion.model_validate({"path": "status", "equals": None}).test == "equals"
    with pytest.raises(ValidationError, match="exactly one of"):
        FieldAssertion.model_validate({"path": "status"})


def test_reference_without_finish(tmp_path: Path) -> None:
    problem = only(tmp_path, scenario_data(reference={"steps": [{"tool": "search", "args": {}}]}))
    assert problem.pointer == "/reference"
    assert "must end with a 'finish' call" in problem.message
    problem = only(tmp_path, scenario_data(reference={"steps": [{"tool": "finish"}], "function": "x"}))
    assert "exactly one of 'steps' or 'function'" in problem.message


def test_reference_with_unknown_tool(tmp_path: Path) -> None:
    problem = only(tmp_path, scenario_data(reference={"steps": [{"tool": "delete"}, {"tool": "finish"}]}))
    assert problem.pointer == "/reference/steps/0/tool"
    assert "'finish'" in problem.message and "(got 'delete')" in problem.message


def test_now_without_offset(tmp_path: Path) -> None:
    problem = only(tmp_path, scenario_data(now="2023-11-13T10:15:00"))
    assert problem.pointer == "/now"
    assert "offset" in problem.message and "2023-11-13T10:15:00+00:00" in problem.message


def test_several_problems_are_all_reported(tmp_path: Path) -> None:
    data = scenario_data(now="2023-11-13T10:15:00", title="")
    data["expectations"]["checks"][0]["tolerance"] = -1
    pointers = {p.pointer for p in problems(tmp_path, data)}
    assert pointers == {"/now", "/title", "/expectations/checks/0/tolerance"}


@pytest.mark.parametrize(
    ("change", "pointer"),
    [
        ({"id": "Has Spaces"}, "/id"),
        ({"limits": {"max_steps": 0}}, "/limits/max_steps"),
        ({"setup": [{"id": "x"}]}, "/setup"),
    ],
)
def test_other_field_problems_have_pointers(tmp_path: Path, change: dict[str, Any], pointer: str) -> None:
    assert only(tmp_path, scenario_data(**change)).pointer == pointer


def test_value_names_are_checked(tmp_path: Path) -> None:
    data = scenario_data()
    data["expectations"]["values"]["now"] = {"kind": "age"}
    problem = only(tmp_path, data)
    assert problem.pointer == "/expectations/values" and "'now'" in problem.message


# -- several files --------------------------------------------------------------------------------------------------


def test_duplicate_ids_across_files(tmp_path: Path) -> None:
    first = write(tmp_path / "a" / "first.json", GOOD)
    second = write(tmp_path / "b" / "second.json", GOOD)
    loaded = load_scenarios([tmp_path])
    assert [s.id for s in loaded.scenarios] == ["test.potassium.01"]
    assert loaded.file(loaded.scenarios[0]) == str(first)
    assert len(loaded.problems) == 1
    problem = loaded.problems[0]
    assert (problem.file, problem.pointer) == (str(second), "/id")
    assert f"id 'test.potassium.01' is already used by {first}" in problem.message


def test_load_scenarios_keeps_the_good_and_reports_the_bad(tmp_path: Path) -> None:
    write(tmp_path / "good.json", GOOD)
    write(tmp_path / "other.json", scenario_data(id="test.other"))
    bad = write(tmp_path / "sub" / "bad.json", scenario_data(now="soon"))
    loaded = load_scenarios([tmp_path])
    assert sorted(s.id for s in loaded.scenarios) == ["test.other", "test.potassium.01"]
    assert [(p.file, p.pointer) for p in loaded.problems] == [(str(bad), "/now")]


def test_no_files_is_a_problem(tmp_path: Path) -> None:
    loaded = load_scenarios([tmp_path])
    assert loaded.scenarios == []
    assert [p.message for p in loaded.problems] == ["no scenario files (*.json) found"]


def test_scenario_files_recurse_and_skip_schema(tmp_path: Path) -> None:
    expected = [
        write(tmp_path / "a.json", {}),
        write(tmp_path / "deep" / "er" / "b.json", {}),
        write(tmp_path / "z" / "c.json", {}),
    ]
    write(tmp_path / "schema.json", {})
    write(tmp_path / "notes.txt", b"x")
    single = write(tmp_path.parent / f"{tmp_path.name}-single.json", {})
    assert scenario_files([tmp_path]) == sorted(expected)
    assert scenario_files([tmp_path, single]) == [*sorted(expected), single]
    assert scenario_files([str(single)]) == [single]


def test_suite_names_resolve_to_the_bundled_suites(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no ./core here
    for suite in ("core", "extended"):
        assert (SUITES_DIR / suite).is_dir()
        bundled = sorted(p for p in (SUITES_DIR / suite).rglob("*.json") if p.name != "schema.json")
        assert scenario_files([suite]) == bundled
    # a folder of that name in the working directory wins over the bundled suite
    local = write(tmp_path / "core" / "mine.json", GOOD)
    assert scenario_files(["core"]) == [Path("core") / local.name]
    # an unknown name is kept as a path (and reported when read)
    assert scenario_files(["no-such-suite"]) == [Path("no-such-suite")]
    loaded = load_scenarios(["no-such-suite"])
    assert loaded.problems and "cannot read" in loaded.problems[0].message
