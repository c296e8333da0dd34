"""The house rules that tools can check: lint, formatting, and the one-way dependencies of DESIGN.md §2."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# folder -> import name (pyproject's package-dir), and what each layer may import (DESIGN.md §2)
PACKAGES = {
    "sandbox": "fhir_sandbox",
    "fhir_server": "fhir_sandbox.fhir_server",
    "agents": "fhir_sandbox.agents",
    "graders": "fhir_sandbox.graders",
    "scenarios": "fhir_sandbox.scenarios",
    "fixtures": "fhir_sandbox.fixtures",
}
ALLOWED = {
    "fhir_sandbox.fhir_server": {"fhir_sandbox.fhir_server"},
    "fhir_sandbox.fixtures": {"fhir_sandbox.fixtures", "fhir_sandbox.fhir_server"},
    "fhir_sandbox.scenarios": {"fhir_sandbox.scenarios", "fhir_sandbox.fhir_server", "fhir_sandbox.fixtures"},
    "fhir_sandbox.graders": {
        "fhir_sandbox.graders",
        "fhir_sandbox.scenarios",
        "fhir_sandbox.fhir_server",
        "fhir_sandbox.fixtures",
    },
    "fhir_sandbox.agents": {"fhir_sandbox.agents", "fhir_sandbox.fhir_server", "fhir_sandbox.fixtures"},
}


def _imports(folder: str) -> list[tuple[Path, str]]:
    package = PACKAGES[folder]
    found = []
    for path in (ROOT / folder).rglob("*.py"):
        module_parts = [package, *path.relative_to(ROOT / folder).with_suffix("").parts]
        if module_parts[-1] == "__init__":
            module_parts.pop()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = ".".join(module_parts[: len(module_parts) - node.level + (path.name == "__init__.py")])
                    target = f"{base}.{node.module}" if node.module else base
                else:
                    target = node.module or ""
                found.append((path, target))
            elif isinstance(node, ast.Import):
                found.extend((path, alias.name) for alias in node.names)
    return found


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layers_import_only_downwards(layer: str) -> None:
    folder = next(f for f, p in PACKAGES.items() if p == layer)
    wrong = [
        f"{path.relative_to(ROOT)} imports {target}"
        for path, target in _imports(folder)
        if target.startswith("fhir_sandbox")
        and target != "fhir_sandbox"
        and not any(target == a or target.startswith(a + ".") for a in ALLOWED[layer])
    ]
    assert wrong == []


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, check=False)


def test_ruff_lint_is_clean() -> None:
    result = _run("ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_clean() -> None:
    result = _run("ruff", "format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_passes_on_the_server() -> None:
    result = _run("mypy", "fhir_server", "sandbox")
    assert result.returncode == 0, result.stdout + result.stderr
