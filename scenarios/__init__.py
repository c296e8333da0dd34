"""The scenario format (pydantic models with a published JSON Schema), the loader, and the bundled suites."""

from .loader import LoadedScenarios, ScenarioError, ScenarioProblem, load_scenario, load_scenarios
from .model import Scenario

__all__ = ["LoadedScenarios", "Scenario", "ScenarioError", "ScenarioProblem", "load_scenario", "load_scenarios"]
