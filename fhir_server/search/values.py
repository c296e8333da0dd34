"""Parsing of search and stored values into comparable ranges: dates as [low, high) epoch milliseconds by
precision, numbers as [low, high) by their significant digits, and the prefixes that compare them.

R4 search.html: a date "2013-01" is the range [2013-01-01, 2013-02-01); a number "100" is [99.5, 100.5);
prefixes compare the search range S with the target range T.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

from ..errors import InvalidSearch

__all__ = [
    "MAX_MS",
    "MIN_MS",
    "PREFIXES",
    "DateRange",
    "NumberRange",
    "parse_date_range",
    "parse_number_range",
    "split_prefix",
]

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
MIN_MS = -62135596800000  # 0001-01-01T00:00:00Z
MAX_MS = 253402300800000  # 10000-01-01T00:00:00Z, exclusive

_DATE_RE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2})(?::(?P<M>\d{2})(?::(?P<S>\d{2})(?P<f>\.\d+)?)?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


@dataclass(frozen=True, slots=True)
class DateRange:
    """A half-open range [low, high) of epoch milliseconds."""

    low: int
    high: int


@dataclass(frozen=True, slots=True)
class NumberRange:
    """A search number: its value and the half-open range [low, high) its written precision implies."""

    value: float
    low: float
    high: float


def split_prefix(value: str) -> tuple[str, str]:
    """Split ``ge2020`` into (``ge``, ``2020``); no prefix means ``eq``."""
    if len(value) > 2 and value[:2] in PREFIXES and not value[2:3].isalpha():
        return value[:2], value[2:]
    return "eq", value


def parse_date_range(text: str, *, default_tz: timedelta = timedelta(0), what: str = "date") -> DateRange:
    """Parse a FHIR date, dateTime or instant into the range its precision covers.

    Raises:
        InvalidSearch: when ``text`` is not a FHIR date.
    """
    if len(text) == 25 and text[10] == "T" and text[19] in "+-":  # the common "2023-11-13T10:15:00+00:00"
        try:
            low = _ms(datetime.fromisoformat(text))
            return DateRange(low, low + 1000)
        except ValueError:
            pass  # fall through to the full parser and its message
    match = _DATE_RE.match(text.strip())
    if not match:
        raise InvalidSearch(f"{what} value {text!r} is not a FHIR date (YYYY, YYYY-MM, YYYY-MM-DD or a dateTime)")
    g = match.groupdict()
    try:
        year = int(g["y"])
        month = int(g["m"] or 1)
        day = int(g["d"] or 1)
        hour = int(g["H"] or 0)
        minute = int(g["M"] or 0)
        second = int(g["S"] or 0)
        if g["H"] is not None and g["M"] is None:
            raise InvalidSearch(f"{what} value {text!r} has an hour without minutes")
        start = datetime(year, month, day, hour, minute, min(second, 59), tzinfo=UTC)
    except ValueError as exc:
        raise InvalidSearch(f"{what} value {text!r} is not a valid date: {exc}") from None
    tz = g["tz"]
    offset = default_tz
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        offset = sign * timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6]))
    elif tz == "Z":
        offset = timedelta(0)
    low = _ms(start - offset)
    if g["f"]:
        digits = g["f"][1:]
        low += int(digits[:3].ljust(3, "0"))
        width = 10 ** max(0, 3 - len(digits))
        return DateRange(low, low + max(1, width))
    if g["S"] is not None:
        return DateRange(low, low + 1000)
    if g["M"] is not None:
        return DateRange(low, low + 60_000)
    if g["d"] is not None:
        return DateRange(low, low + 86_400_000)
    if g["m"] is not None:
        days = calendar.monthrange(year, month)[1]
        return DateRange(low, low + days * 86_400_000)
    return DateRange(low, _ms(datetime(year + 1, 1, 1, tzinfo=UTC) - offset) if year < 9999 else MAX_MS)


def _ms(moment: datetime) -> int:
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def parse_number_range(text: str, *, what: str = "number") -> NumberRange:
    """Parse a search number; its implicit range is half a unit of its last significant digit either side.

    Raises:
        InvalidSearch: when ``text`` is not a number.
    """
    try:
        number = Decimal(text.strip())
    except InvalidOperation:
        raise InvalidSearch(f"{what} value {text!r} is not a number") from None
    if not number.is_finite():
        raise InvalidSearch(f"{what} value {text!r} is not a finite number")
    exponent = number.as_tuple().exponent
    assert isinstance(exponent, int)
    half = Decimal(5) * Decimal(10) ** (exponent - 1)
    return NumberRange(float(number), float(number - half), float(number + half))
