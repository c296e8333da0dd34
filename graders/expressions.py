"""FHIRPath evaluation for scenarios: conditions (``when``), computed expectations (``{"expr": ...}``) and field
paths, with the scenario's values as ``%name``, ``%now`` and ``%patient``."""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from typing import Any

from fhirpathpy import compile as compile_fhirpath

from ..scenarios.model import Expr

__all__ = ["ExpressionError", "evaluate", "is_true", "resolve", "single"]


class ExpressionError(ValueError):
    """A FHIRPath expression that does not parse or fails to evaluate."""


@lru_cache(maxsize=4096)
def _compiled(expression: str) -> Any:
    try:
        return compile_fhirpath(expression)
    except Exception as exc:  # fhirpathpy raises bare Exceptions for syntax errors
        raise ExpressionError(f"invalid FHIRPath {expression!r}: {exc}") from None


def evaluate(expression: str, resource: Any = None, env: dict[str, Any] | None = None) -> list[Any]:
    """The FHIRPath collection ``expression`` gives on ``resource`` with ``env`` as %variables (plain JSON)."""
    try:
        result = _compiled(expression)(resource if resource is not None else {}, dict(env or {}))
    except ExpressionError:
        raise
    except Exception as exc:
        raise ExpressionError(f"FHIRPath {expression!r} failed: {exc}") from None
    return [_plain(item) for item in result]


def is_true(expression: str, env: dict[str, Any]) -> bool:
    """A condition: true only when the expression gives exactly ``true`` (empty is false, as in FHIRPath)."""
    return evaluate(expression, None, env) == [True]


def single(collection: list[Any]) -> Any:
    """A collection as one value: None when empty, the item when one, else the list."""
    if not collection:
        return None
    return collection[0] if len(collection) == 1 else collection


def resolve(value: Any, env: dict[str, Any]) -> Any:
    """A scenario value: literal JSON as it is, ``{"expr": ...}`` evaluated."""
    if isinstance(value, Expr):
        return single(evaluate(value.expr, None, env))
    if isinstance(value, list):
        return [resolve(item, env) for item in value]
    return value


def _plain(item: Any) -> Any:
    """fhirpathpy's Decimals and FP types as plain JSON values."""
    if isinstance(item, Decimal):
        return int(item) if item == item.to_integral_value() and "." not in str(item) else float(item)
    if isinstance(item, bool | int | float | str | dict | list) or item is None:
        return item
    return str(item)
