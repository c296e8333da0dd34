"""What a grader reads: the answer, the episode's writes with the final state of what they wrote, and the values
computed from the chart before the agent acted. Plain data, stored with the episode, so a run can be re-graded
without a server or a model."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = ["GradingInput", "Write"]

WriteKind = Literal["create", "update", "patch", "delete"]


class Write(BaseModel):
    """One successful write of the episode, in order."""

    seq: int
    kind: WriteKind
    type: str
    id: str
    version: int
    status: int
    resource: dict[str, Any] | None = Field(None, description="The resource's final state (None once deleted).")
    prior: dict[str, Any] | None = Field(None, description="The version the write replaced (updates, deletes).")

    @property
    def existed_before(self) -> bool:
        return self.kind != "create" and self.prior is not None


class GradingInput(BaseModel):
    answer: Any = None
    writes: list[Write] = Field(default_factory=list)
    values: dict[str, Any] = Field(default_factory=dict, description="The scenario's values, computed at start.")
    patient: dict[str, Any] | None = Field(None, description="The scenario's Patient resource, if it has one.")
    now: str = Field(description="The scenario's instant, as FHIR dateTime text.")

    def env(self) -> dict[str, Any]:
        """The %variables of FHIRPath expressions."""
        return {**self.values, "now": self.now, "patient": self.patient}
