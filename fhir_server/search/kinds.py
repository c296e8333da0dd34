"""The parameter types by name: the one place that maps a SearchParameter ``type`` to its implementation."""

from __future__ import annotations

from ..storage.schema import idx_reference
from .date import DateType
from .number import NumberType
from .quantity import QuantityType
from .reference import ReferenceType
from .string import StringType
from .token import TokenType
from .types import ParamType
from .uri import UriType

__all__ = ["PARAM_TYPES", "REFERENCE"]

REFERENCE = ReferenceType(idx_reference)

PARAM_TYPES: dict[str, ParamType] = {
    "token": TokenType(),
    "string": StringType(),
    "date": DateType(),
    "number": NumberType(),
    "quantity": QuantityType(),
    "reference": REFERENCE,
    "uri": UriType(),
}
