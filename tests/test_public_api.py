"""Each package's __all__ lists exactly its public names, sorted (as httpx's test_exported_members)."""

from __future__ import annotations

import importlib

import pytest

PACKAGES = ["fhir_sandbox.fhir_server"]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_sorted_and_complete(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert exported == sorted(exported)
    public = {n for n in vars(module) if not n.startswith("_") and not isinstance(getattr(module, n), type(module))}
    public -= {"annotations"}
    assert public <= set(exported) | {"__version__"}, public - set(exported)
    for item in exported:
        assert hasattr(module, item), item
