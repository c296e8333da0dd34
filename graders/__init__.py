"""Graders: turn (scenario, answer, writes, values) into checks with reasons and a score."""

from .grade import grade
from .inputs import GradingInput, Write
from .outcome import CheckResult, Grade

__all__ = ["CheckResult", "Grade", "GradingInput", "Write", "grade"]
