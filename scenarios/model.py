"""The scenario format: one JSON file per scenario, validated by these models (``schema.json`` is generated from
them). A scenario says what a physician asks, as of when, about which patient; what the chart holds beforehand
(``setup``); what is expected (named values computed from the chart, and checks); which checks count
(``reward_basis``); and how a correct agent does it (``reference``).

Expressions (``when``, ``expr``, field paths) are FHIRPath, evaluated with fhirpathpy. A check's expression sees
the scenario's values as ``%name``, plus ``%now`` (the scenario's instant, as text) and ``%patient`` (the Patient
resource); a field path is evaluated on the written resource.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from ..fixtures import MRN_SYSTEM

__all__ = [
    "CHECK_TYPES",
    "AnswerCheck",
    "Check",
    "Expectations",
    "Expr",
    "FieldAssertion",
    "Limits",
    "PatientRef",
    "Reference",
    "Scenario",
    "ToolStep",
    "ValueSpec",
]

NAME = r"^[a-z][a-z0-9_]*$"
SCENARIO_ID = r"^[a-z0-9][a-z0-9._-]*$"
TOOLS = ("search", "read", "create", "update", "finish")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Expr(_Strict):
    """A value computed when grading: a FHIRPath expression over ``%values``, ``%now`` and ``%patient``."""

    expr: str = Field(description='FHIRPath, e.g. "%mg.value" or "iif(%k.exists(), %k.value, -1)".')


# A literal JSON value, or {"expr": ...}
Value = Expr | bool | int | float | str | list[Any] | None


class PatientRef(_Strict):
    mrn: str = Field(description='The medical record number, e.g. "S1234567".')
    system: str = Field(MRN_SYSTEM, description="The MRN's identifier system.")


# -- values computed from the chart --------------------------------------------------------------------------------


class _ValueBase(_Strict):
    description: str | None = Field(None, description="What the value means, for people reading the scenario.")


class _PatientValue(_ValueBase):
    patient: PatientRef | None = Field(
        None, description="Another patient than the scenario's (for questions across several patients)."
    )


class LatestValue(_PatientValue):
    """The patient's most recent Observation of a code, effective at or before ``now`` (optionally within a
    window): ``{value, unit, time, id}``, or empty when there is none."""

    kind: Literal["latest"]
    code: str = Field(description='The code as an agent would search it: "MG" or "http://loinc.org|2823-3".')
    within_hours: float | None = Field(None, gt=0, description="Only values from the last N hours before now.")


class MeanValue(_PatientValue):
    """The mean of the patient's Observation values of a code within a window before ``now``; empty if none."""

    kind: Literal["mean"]
    code: str = Field(description='The code as an agent would search it: "GLU" or "http://loinc.org|2345-7".')
    within_hours: float = Field(gt=0, description="The window: the last N hours before now.")


class SeriesValue(_PatientValue):
    """The patient's Observation values of a code effective at or before ``now``, oldest first: a list of
    ``{value, unit, time, id}`` (the last ``last`` of them, within the window if one is given)."""

    kind: Literal["series"]
    code: str = Field(description='The code as an agent would search it: "CREAT" or "http://loinc.org|2160-0".')
    within_hours: float | None = Field(None, gt=0)
    last: int | None = Field(None, ge=1, description="Keep only the most recent N.")


class CountValue(_PatientValue):
    """How many of the patient's resources of a type match search parameters (the patient is added)."""

    kind: Literal["count"]
    resource: str = Field(description="The resource type, e.g. MedicationRequest.")
    params: dict[str, str] = Field(default_factory=dict, description="FHIR search parameters, e.g. status=active.")


class ExistsValue(_PatientValue):
    """Whether the patient has any resource of a type matching search parameters."""

    kind: Literal["exists"]
    resource: str
    params: dict[str, str] = Field(default_factory=dict)


class AgeValue(_PatientValue):
    """The patient's age in whole years at ``now``."""

    kind: Literal["age"]


class FormulaValue(_ValueBase):
    """A FHIRPath expression over the values declared before it, e.g. a dose formula."""

    kind: Literal["formula"]
    expression: str = Field(description='FHIRPath, e.g. "((3.5 - %k.value) / 0.1 * 10).round(0)".')


class TableRow(_Strict):
    below: float | None = Field(None, description="Applies when the input is < this (rows are tried in order).")
    at_most: float | None = Field(None, description="Applies when the input is <= this.")
    value: Any = Field(description="The table's answer for this row.")

    @model_validator(mode="after")
    def _one_bound(self) -> TableRow:
        if (self.below is None) == (self.at_most is None):
            raise ValueError("a table row needs exactly one of 'below' or 'at_most'")
        return self


class TableValue(_ValueBase):
    """A lookup table (a dose table): the first row whose bound the input meets; ``otherwise`` if none does,
    ``missing`` if there is no input."""

    kind: Literal["table"]
    input: str = Field(description='FHIRPath giving a number, e.g. "%mg.value".')
    rows: list[TableRow] = Field(min_length=1)
    otherwise: Any = Field(None, description="The value when no row applies.")
    missing: Any = Field(None, description="The value when the input is empty (e.g. no lab result).")


ValueSpec = Annotated[
    LatestValue | MeanValue | SeriesValue | CountValue | ExistsValue | AgeValue | FormulaValue | TableValue,
    Field(discriminator="kind"),
]


# -- checks ---------------------------------------------------------------------------------------------------------


class _CheckBase(_Strict):
    name: str = Field(pattern=NAME, description="Unique in the scenario; reward_basis names checks by it.")
    when: str | None = Field(
        None, description="FHIRPath over the values: the check applies only when it is true (else it passes as n/a)."
    )
    description: str | None = None


class _AnswerBase(_CheckBase):
    item: int | None = Field(
        None, ge=0, description="Check this element of a list answer (e.g. 1 for the date in [value, date])."
    )


class AnswerExact(_AnswerBase):
    """The answer equals the expected JSON value (numbers compare by value: 69 == 69.0)."""

    type: Literal["answer_exact"]
    expected: Value


class AnswerNumber(_AnswerBase):
    """The answer is a number within ``tolerance`` of the expected one. "191 mg/dL" counts as 191 when ``unit``
    is mg/dL (the unit the instruction asked for); a one-element list counts as its element."""

    type: Literal["answer_number"]
    expected: Value
    tolerance: float = Field(0.0, ge=0)
    unit: str | None = Field(None, description="The unit the instruction asked for; other units fail.")


class AnswerDatetime(_AnswerBase):
    """The answer is the same instant as expected, whatever its offset notation ("Z" or "+00:00")."""

    type: Literal["answer_datetime"]
    expected: Value
    tolerance_seconds: float = Field(0.0, ge=0)


class AnswerSet(_AnswerBase):
    """The answer is a list with the same elements as expected, in any order (strings compared normalised)."""

    type: Literal["answer_set"]
    expected: Value


class AnswerOneOf(_AnswerBase):
    """The answer equals one of the options (strings compared normalised)."""

    type: Literal["answer_one_of"]
    options: list[Value] = Field(min_length=1)


class AnswerText(_AnswerBase):
    """The answer is the expected text, ignoring case, accents, surrounding punctuation and repeated spaces."""

    type: Literal["answer_text"]
    expected: Value


class FieldAssertion(_Strict):
    """One assertion on a written resource: ``path`` (FHIRPath on the resource) and exactly one test."""

    path: str = Field(description='FHIRPath on the written resource, e.g. "dosageInstruction[0].route.text".')
    equals: Value = Field(None, description="The path's single value equals this (numbers by value).")
    approx: Value = Field(None, description="The path's single value is a number within `tolerance` of this.")
    tolerance: float = Field(0.0, ge=0)
    same_instant: Value = Field(None, description="The path's value is the same instant as this.")
    tolerance_minutes: float = Field(0.0, ge=0)
    contains: str | None = Field(None, description="The path's text contains this (case-insensitive).")
    one_of: list[Any] | None = Field(None, description="The path's single value is one of these.")
    exists: bool | None = Field(None, description="The path has (true) or has no (false) value.")

    @model_validator(mode="before")
    @classmethod
    def _exactly_one_test(cls, data: Any) -> Any:
        if isinstance(data, dict):
            tests = [k for k in ("equals", "approx", "same_instant", "contains", "one_of", "exists") if k in data]
            if len(tests) != 1:
                raise ValueError(
                    "a field assertion needs exactly one of equals, approx, same_instant, contains, one_of, exists"
                    + (f" (it has {', '.join(tests)})" if tests else "")
                )
        return data

    @property
    def test(self) -> str:
        return next(
            k
            for k in ("equals", "approx", "same_instant", "contains", "one_of", "exists")
            if k in self.model_fields_set
        )


class WriteCount(_CheckBase):
    """Exactly ``count`` successful writes (of ``resource``, by ``methods``) in the episode."""

    type: Literal["write_count"]
    count: Annotated[int, Field(ge=0)] | Expr = Field(
        description='A number, or {"expr": ...} computed from the values.'
    )
    resource: str | None = Field(None, description="Count only writes of this resource type.")
    methods: list[Literal["create", "update", "patch", "delete"]] | None = Field(
        None, description="Count only these kinds of write (default: all)."
    )


class WriteFields(_CheckBase):
    """A resource the episode wrote (its final state) of type ``resource`` satisfies every field assertion."""

    type: Literal["write_fields"]
    resource: str
    where: str | None = Field(None, description="FHIRPath on the resource selecting which writes to look at.")
    fields: list[FieldAssertion] = Field(min_length=1)


class WritesForPatient(_CheckBase):
    """Every resource the episode wrote refers to the scenario's patient (subject or patient)."""

    type: Literal["writes_for_patient"]


class NoWrites(_CheckBase):
    """The episode wrote nothing."""

    type: Literal["no_writes"]


class NoForeignWrites(_CheckBase):
    """No write touched a resource of another patient."""

    type: Literal["no_foreign_writes"]


class NoDeletes(_CheckBase):
    """The episode deleted nothing."""

    type: Literal["no_deletes"]


class Unchanged(_CheckBase):
    """No resource of type ``resource`` that existed before the episode was updated, patched or deleted, except
    those whose final state matches ``except_where``."""

    type: Literal["unchanged"]
    resource: str
    except_where: str | None = Field(None, description="FHIRPath on the final resource: changes allowed here.")


class PythonCheck(_CheckBase):
    """A named grader function (the escape hatch), see graders/custom.py."""

    type: Literal["python"]
    function: str
    args: dict[str, Any] = Field(default_factory=dict)


AnswerCheck = AnswerExact | AnswerNumber | AnswerDatetime | AnswerSet | AnswerOneOf | AnswerText
Check = Annotated[
    AnswerExact
    | AnswerNumber
    | AnswerDatetime
    | AnswerSet
    | AnswerOneOf
    | AnswerText
    | WriteCount
    | WriteFields
    | WritesForPatient
    | NoWrites
    | NoForeignWrites
    | NoDeletes
    | Unchanged
    | PythonCheck,
    Field(discriminator="type"),
]
CHECK_TYPES = (
    "answer_exact",
    "answer_number",
    "answer_datetime",
    "answer_set",
    "answer_one_of",
    "answer_text",
    "write_count",
    "write_fields",
    "writes_for_patient",
    "no_writes",
    "no_foreign_writes",
    "no_deletes",
    "unchanged",
    "python",
)


class Expectations(_Strict):
    values: dict[str, ValueSpec] = Field(
        default_factory=dict,
        description="Named values computed from the chart as of now, before the agent acts (in order).",
    )
    checks: list[Check] = Field(min_length=1)

    @field_validator("values")
    @classmethod
    def _value_names(cls, values: dict[str, Any]) -> dict[str, Any]:
        for name in values:
            if not re.match(NAME, name) or name in ("now", "patient"):
                raise ValueError(f"value name {name!r} must match {NAME} and not be 'now' or 'patient'")
        return values

    @field_validator("checks")
    @classmethod
    def _unique_names(cls, checks: list[Any]) -> list[Any]:
        names = [check.name for check in checks]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"check names must be unique; repeated: {', '.join(duplicates)}")
        return checks


# -- the rest of the scenario ---------------------------------------------------------------------------------------


class Limits(_Strict):
    max_steps: int = Field(20, ge=1, le=200, description="Most tool calls the agent may make.")


class ToolStep(_Strict):
    """A tool call of the reference solution. In string arguments ``${patient.id}``, ``${patient.mrn}`` and
    ``${now}`` are replaced by the episode's values."""

    tool: Literal["search", "read", "create", "update", "finish"]
    args: dict[str, Any] = Field(default_factory=dict)


class Reference(_Strict):
    """How a correct agent does it: tool calls in order (the last one ``finish``), or a named function."""

    steps: list[ToolStep] | None = None
    function: str | None = Field(None, description="A reference solution registered in scenarios/solutions.py.")
    expects_writes: bool | None = Field(
        None, description="Whether a correct agent writes; required with a function (steps show it themselves)."
    )

    @model_validator(mode="after")
    def _one_form(self) -> Reference:
        if (self.steps is None) == (self.function is None):
            raise ValueError("a reference needs exactly one of 'steps' or 'function'")
        if self.steps is not None and (not self.steps or self.steps[-1].tool != "finish"):
            raise ValueError("the reference steps must end with a 'finish' call")
        if self.function is not None and self.expects_writes is None:
            raise ValueError("a reference function needs 'expects_writes' (does a correct agent write here?)")
        return self

    @property
    def writes(self) -> bool:
        if self.expects_writes is not None:
            return self.expects_writes
        return any(step.tool in ("create", "update") for step in self.steps or ())


class Scenario(_Strict):
    """One task for an agent, with everything needed to grade it."""

    id: str = Field(pattern=SCENARIO_ID, description="Unique in a suite, e.g. core.mg-replacement.07.")
    version: int = Field(1, ge=1, description="Bump when the scenario's meaning or grading changes.")
    category: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    title: str = Field(min_length=1)
    tags: list[str] = Field(default_factory=list)
    instruction: str = Field(min_length=1, description="The request, as a physician would write it.")
    context: str = Field("", description="What the agent is told besides: codes, dosing rules, conventions.")
    now: datetime = Field(description="The scenario's instant, with an offset: the session's clock.")
    patient: PatientRef | None = Field(None, description="The patient the scenario is about (none for look-ups).")
    setup: list[dict[str, Any]] = Field(
        default_factory=list,
        description="FHIR resources added to the session before the agent starts, as one transaction. "
        "Refer to the patient with a conditional reference: Patient?identifier=SYSTEM|MRN.",
    )
    expectations: Expectations
    reward_basis: list[str] = Field(min_length=1, description="The checks whose product is the score.")
    limits: Limits = Field(default_factory=Limits)
    reference: Reference

    @field_validator("now")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.utcoffset() is None:
            raise ValueError("now needs an offset, e.g. 2023-11-13T10:15:00+00:00")
        return value

    @field_validator("setup")
    @classmethod
    def _resources(cls, setup: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for index, resource in enumerate(setup):
            if not isinstance(resource.get("resourceType"), str):
                raise ValueError(f"setup[{index}] has no resourceType")
        return setup

    # field validators (not a model validator) so that a problem's location is /reward_basis, not the file's root
    @field_validator("reward_basis")
    @classmethod
    def _basis_names_checks(cls, basis: list[str], info: ValidationInfo) -> list[str]:
        expectations = info.data.get("expectations")
        if expectations is None:  # invalid itself: already reported
            return basis
        names = [check.name for check in expectations.checks]
        unknown = [n for n in basis if n not in names]
        if unknown:
            raise ValueError(f"reward_basis names no check {unknown}; the checks are {names}")
        return basis

    @property
    def expects_action(self) -> bool:
        """Whether a correct agent writes to the chart (the reference solution does)."""
        return self.reference.writes
