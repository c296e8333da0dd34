"""What grading produces: each check's verdict with a one-line reason, and the score."""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = ["CheckResult", "Grade", "Verdict"]


class Verdict(BaseModel):
    """A check's verdict before it is named: passed or not, and why in one line."""

    passed: bool
    reason: str

    @classmethod
    def ok(cls, reason: str) -> Verdict:
        return cls(passed=True, reason=reason)

    @classmethod
    def fail(cls, reason: str) -> Verdict:
        return cls(passed=False, reason=reason)


class CheckResult(BaseModel):
    name: str
    type: str
    passed: bool
    reason: str
    applicable: bool = Field(True, description="False when the check's `when` was false (it then passes).")
    counted: bool = Field(description="Whether the check is in reward_basis (else a diagnostic).")


class Grade(BaseModel):
    score: float = Field(description="The product of the counted checks: 1.0 or 0.0.")
    checks: list[CheckResult]

    @property
    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if c.counted and not c.passed]
