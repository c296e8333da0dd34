"""FHIRPath evaluation for scenarios: conditions (``when``), computed expectations (``{"expr": ...}``) and field
paths, with the scenario's values as ``%name``, ``%now`` and ``%patient``."""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from typing import Any

from antlr4 import CommonTokenStream, InputStream, Token
from antlr4.error.ErrorListener import ErrorListener
from fhirpathpy import compile as compile_fhirpath
from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

from ..scenarios.model import Expr

__all__ = ["ExpressionError", "evaluate", "is_true", "resolve", "single"]


class ExpressionError(ValueError):
    """A FHIRPath expression that does not parse or fails to evaluate."""


class _RaiseOnSyntaxError(ErrorListener):  # type: ignore[misc]
    def syntaxError(self, recognizer: Any, offendingSymbol: Any, line: int, column: int, msg: str, e: Any) -> None:
        raise SyntaxError(f"column {column + 1}: {msg}")


def _check_syntax(expression: str) -> None:
    """fhirpathpy's parser recovers from syntax errors silently ("1 +* 1" gives 2, "1 2" gives 1): parse strictly,
    to the end of the text, first."""
    listener = _RaiseOnSyntaxError()
    lexer = FHIRPathLexer(InputStream(expression))
    lexer.removeErrorListeners()
    lexer.addErrorListener(listener)
    tokens = CommonTokenStream(lexer)
    parser = FHIRPathParser(tokens)
    parser.removeErrorListeners()
    parser.addErrorListener(listener)
    parser.expression()
    if tokens.LA(1) != Token.EOF:
        token = tokens.LT(1)
        raise SyntaxError(f"column {token.column + 1}: unexpected {token.text!r}")


@lru_cache(maxsize=4096)
def _compiled(expression: str) -> Any:
    try:
        _check_syntax(expression)
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
    if isinstance(value, dict) and set(value) == {"expr"} and isinstance(value["expr"], str):
        # inside a list, pydantic keeps {"expr": ...} as a plain dict (the union's list[Any] member)
        return single(evaluate(value["expr"], None, env))
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
