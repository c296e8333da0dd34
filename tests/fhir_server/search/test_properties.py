"""Property tests of date, number and quantity search against brute-force matchers written from the R4 spec.

Each example stores random values in a fresh session (one transaction Bundle through the HTTP API), runs a few
random search values with every prefix, and asserts that the server returns exactly the resources the matcher
below selects. The matchers are written from the text of R4 search.html (quoted beside them), not from the
server's code. Stored and searched values are drawn so that they often meet exactly at range edges.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

PREFIXES = ["", "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"]  # no prefix means eq
NOW = datetime(2025, 6, 15, tzinfo=UTC)  # the sessions' clock: dates lie before and after it
UCUM = "http://unitsofmeasure.org"
INF = float("inf")

PROPERTY = settings(
    max_examples=30,
    deadline=None,
    database=None,  # no example database: each run draws afresh, and a failure prints its example
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# -- the server, through HTTP -----------------------------------------------------------------------------------


@dataclass
class Session:
    id: str
    base: str
    created: datetime  # server wall clock when the session began: its clock is NOW + (wall - created)


class Server:
    def __init__(self, origin: str):
        self.origin = origin
        self.http = httpx.Client(timeout=30)

    def open(self, resources: list[dict[str, Any]]) -> Session:
        session_id = f"prop-{uuid.uuid4().hex[:12]}"
        response = self.http.post(f"{self.origin}/sessions", json={"id": session_id, "now": NOW.isoformat()})
        assert response.status_code == 201, response.text
        info = response.json()
        session = Session(session_id, info["fhir_base_url"], datetime.fromisoformat(info["created"]))
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
                for r in resources
            ],
        }
        loaded = self.http.post(session.base, json=bundle)
        assert loaded.status_code == 200, loaded.text
        assert all(e["response"]["status"].startswith("201") for e in loaded.json()["entry"])
        return session

    def close(self, session: Session) -> None:
        self.http.delete(f"{self.origin}/sessions/{session.id}")

    def ids(self, session: Session, resource_type: str, param: str, value: str) -> tuple[set[str], int, int]:
        """The ids that match, and the session clock (epoch ms) just before and just after the search."""
        before = _session_now_ms(session)
        response = self.http.get(f"{session.base}/{resource_type}", params={param: value, "_count": "200"})
        after = _session_now_ms(session)
        assert response.status_code == 200, f"{param}={value}: {response.text}"
        bundle = response.json()
        assert bundle["total"] <= 200
        return {e["resource"]["id"] for e in bundle.get("entry", [])}, before, after


def _session_now_ms(session: Session) -> int:
    wall = datetime.now(UTC)
    return _epoch_ms(NOW + (wall - session.created))


def _epoch_ms(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


@pytest.fixture(scope="module")
def server(live_server: Any) -> Iterator[Server]:
    client = Server(live_server.url)
    yield client
    client.http.close()


# -- dates: the spec's matcher ----------------------------------------------------------------------------------

_DATE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<mo>\d{2})(?:-(?P<d>\d{2})(?:T(?P<h>\d{2}):(?P<mi>\d{2})"
    r"(?::(?P<s>\d{2})(?:\.(?P<f>\d{1,3}))?)?(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


def spec_date_range(text: str) -> tuple[int, int]:
    """[low, high) in epoch ms: "the precision of the value defines the range" (search.html#date); a value
    without a zone is in the server's zone, which is UTC here."""
    m = _DATE.match(text)
    assert m, text
    y, mo, d = int(m["y"]), int(m["mo"] or 1), int(m["d"] or 1)
    start = datetime(y, mo, d, int(m["h"] or 0), int(m["mi"] or 0), int(m["s"] or 0), tzinfo=UTC)
    if m["f"]:
        start += timedelta(milliseconds=int(m["f"].ljust(3, "0")))
    if m["tz"] and m["tz"] != "Z":
        sign = 1 if m["tz"][0] == "+" else -1
        start -= sign * timedelta(hours=int(m["tz"][1:3]), minutes=int(m["tz"][4:6]))
    if m["f"]:
        end = start + timedelta(milliseconds=10 ** (3 - len(m["f"])))
    elif m["s"]:
        end = start + timedelta(seconds=1)
    elif m["mi"]:
        end = start + timedelta(minutes=1)
    elif m["d"]:
        end = start + timedelta(days=1)
    elif m["mo"]:
        end = start.replace(year=y + mo // 12, month=mo % 12 + 1)
    else:
        end = start.replace(year=y + 1)
    return _epoch_ms(start), _epoch_ms(end)


def spec_date_matches(prefix: str, s: tuple[int, int], t: tuple[float, float], slack: float) -> bool:
    """search.html#prefix, with S the search range and T the target range."""
    prefix = prefix or "eq"
    (s_low, s_high), (t_low, t_high) = s, t
    contains = s_low <= t_low and t_high <= s_high  # "the range of the search value fully contains" T
    above = t_high > s_high  # "the range above the search value intersects (i.e. overlaps) with" T
    below = t_low < s_low  # "the range below the search value intersects (i.e. overlaps) with" T
    return {
        "eq": contains,
        "ne": not contains,  # "does not fully contain"
        "gt": above,
        "lt": below,
        "ge": above or contains,
        "le": below or contains,
        "sa": t_low >= s_high,  # no overlap, and "the range above the search value contains" T
        "eb": t_high <= s_low,
        # "the range of the search value overlaps with the range of the target value", S widened by the slack
        "ap": t_low < s_high + slack and t_high > s_low - slack,
    }[prefix]


def _ap_slack(s_low: int, now_ms: int) -> float:
    # "10% of the gap between now and the date" (search.html#prefix), the date being where S starts
    return abs(now_ms - s_low) / 10


def expected_dates(
    prefix: str, value: str, stored: dict[str, tuple[float, float]], now: tuple[int, int]
) -> tuple[set[str], set[str]]:
    """(must match, may match): the same set unless ``ap`` makes it depend on when exactly the server ran."""
    s = spec_date_range(value)
    if prefix != "ap":
        found = {rid for rid, t in stored.items() if spec_date_matches(prefix, s, t, 0)}
        return found, found
    slacks = [_ap_slack(s[0], now[0]), _ap_slack(s[0], now[1])]
    least = 0.0 if now[0] <= s[0] <= now[1] else min(slacks)
    must = {rid for rid, t in stored.items() if spec_date_matches(prefix, s, t, least - 1)}  # ms rounding
    may = {rid for rid, t in stored.items() if spec_date_matches(prefix, s, t, max(slacks) + 1)}
    return must, may


# -- dates: strategies ------------------------------------------------------------------------------------------

ZONES = ["Z", "+02:00", "-05:00", "+05:30", "+14:00", "-12:00"]
STORED_PRECISIONS = ["year", "month", "day", "second", "ms1", "ms2", "ms3"]
SEARCH_PRECISIONS = ["year", "month", "day", "minute", "second", "ms1", "ms3"]
# hypothesis takes naive bounds; timezones= makes every drawn moment aware (UTC)
moments = st.datetimes(
    min_value=datetime(1995, 1, 1),  # noqa: DTZ001
    max_value=datetime(2035, 12, 31),  # noqa: DTZ001
    timezones=st.just(UTC),
)


def render(moment: datetime, precision: str, zone: str | None) -> str:
    """``moment`` written with ``precision`` in ``zone`` (None: no zone, i.e. the server's)."""
    offset = timedelta(0)
    if zone not in (None, "Z"):
        sign = 1 if zone[0] == "+" else -1
        offset = sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
    local = (moment + offset).replace(tzinfo=None)
    day = f"{local.year:04d}-{local.month:02d}-{local.day:02d}"
    if precision == "year":
        return f"{local.year:04d}"
    if precision == "month":
        return day[:7]
    if precision == "day":
        return day
    time = f"{local.hour:02d}:{local.minute:02d}"
    if precision != "minute":
        time += f":{local.second:02d}"
    if precision.startswith("ms"):
        digits = int(precision[2:])
        time += "." + f"{local.microsecond:06d}"[:digits]
    return f"{day}T{time}{zone or ''}"


@st.composite
def stored_dates(draw: st.DrawFn) -> dict[str, Any]:
    """An Observation.effective[x]: a date/dateTime of random precision and zone, or a Period (maybe open)."""

    def point(moment: datetime) -> str:
        precision = draw(st.sampled_from(STORED_PRECISIONS))
        zone = draw(st.sampled_from(ZONES)) if precision not in ("year", "month", "day") else None
        return render(moment, precision, zone)

    first = draw(moments)
    if draw(st.booleans()):
        return {"effectiveDateTime": point(first)}
    second = draw(moments)
    start, end = sorted([first, second])
    shape = draw(st.sampled_from(["closed", "no-end", "no-start"]))
    period = {}
    if shape != "no-start":
        period["start"] = point(start)
    if shape != "no-end":
        period["end"] = point(end)
    return {"effectivePeriod": period}


def target_range(effective: dict[str, Any]) -> tuple[float, float]:
    """T: a dateTime's range, or a Period's from its start's low to its end's high ("open" when absent)."""
    if "effectiveDateTime" in effective:
        return spec_date_range(effective["effectiveDateTime"])
    period = effective["effectivePeriod"]
    low = spec_date_range(period["start"])[0] if "start" in period else -INF
    high = spec_date_range(period["end"])[1] if "end" in period else INF
    return low, high


def _texts(effective: dict[str, Any]) -> list[str]:
    return (
        [effective["effectiveDateTime"]]
        if "effectiveDateTime" in effective
        else [*effective["effectivePeriod"].values()]
    )


def _moment(ms: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)


def _neighbour(text: str, before: bool) -> str:
    """The unit of the same precision and zone that ends where ``text`` starts (or starts where it ends)."""
    m = _DATE.match(text)
    assert m, text
    if m["f"]:
        precision = f"ms{len(m['f'])}"
    elif m["s"]:
        precision = "second"
    elif m["d"]:
        precision = "day"
    else:
        precision = "month" if m["mo"] else "year"
    low, high = spec_date_range(text)
    return render(_moment(low - 1 if before else high), precision, m["tz"])


@st.composite
def date_case(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    stored = draw(st.lists(stored_dates(), min_size=1, max_size=10))
    texts = [text for effective in stored for text in _texts(effective)]
    # the instants where stored ranges start and end, and the milliseconds either side of those
    edges = [
        _moment(ms) for text in texts for low, high in [spec_date_range(text)] for ms in (low - 1, low, high - 1, high)
    ]
    values = []
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        # most searches meet stored ranges at their edges: a stored value verbatim, the unit just before or
        # after it, or one of its edges written with any precision and zone; the rest are anywhere
        source = draw(st.sampled_from(["verbatim", "before", "after", "edge", "edge", "anywhere"]))
        if source == "verbatim":
            value = draw(st.sampled_from(texts))
        elif source in ("before", "after"):
            value = _neighbour(draw(st.sampled_from(texts)), before=source == "before")
        else:
            moment = draw(st.sampled_from(edges) if source == "edge" else moments)
            precision = draw(st.sampled_from(SEARCH_PRECISIONS))
            zone = draw(st.sampled_from([None, *ZONES])) if precision not in ("year", "month", "day") else None
            value = render(moment, precision, zone)
        values.append(value)
    return stored, [(prefix, value) for value in values for prefix in PREFIXES]  # each value with every prefix


@PROPERTY
@given(case=date_case())
def test_date_search_matches_the_spec(server: Server, case: tuple[list[dict[str, Any]], list[tuple[str, str]]]) -> None:
    stored, queries = case
    resources = [
        {"resourceType": "Observation", "id": f"o{i}", "status": "final", "code": {"text": "x"}, **effective}
        for i, effective in enumerate(stored)
    ]
    targets = {f"o{i}": target_range(effective) for i, effective in enumerate(stored)}
    session = server.open(resources)
    try:
        for prefix, value in queries:
            found, before, after = server.ids(session, "Observation", "date", f"{prefix}{value}")
            must, may = expected_dates(prefix, value, targets, (before, after))
            assert must <= found <= may, f"date={prefix}{value} over {stored}: got {found}, expected {must}"
    finally:
        server.close(session)


# -- numbers: the matcher ---------------------------------------------------------------------------------------


def spec_number_matches(prefix: str, search: str, value: Decimal) -> bool:
    """search.html#number: "the precision of the search value defines the range": 100 is [99.5, 100.5).
    The stored value is taken as the point it is; eq/ne test it against the range, gt/lt against the number
    ("the value for the parameter in the resource is greater/less than the provided value"), ge/le add eq,
    sa/eb lie wholly above/below the range, ap is eq or within "10% of the stated value"."""
    prefix = prefix or "eq"
    number = Decimal(search)
    exponent = number.as_tuple().exponent
    assert isinstance(exponent, int)
    half = Decimal(5) * Decimal(10) ** (exponent - 1)
    low, high = number - half, number + half
    eq = low <= value < high
    return {
        "eq": eq,
        "ne": not eq,
        "gt": value > number,
        "lt": value < number,
        "ge": value > number or eq,
        "le": value < number or eq,
        "sa": value >= high,
        "eb": value < low,
        "ap": eq or abs(value - number) <= abs(number) / 10,
    }[prefix]


# short decimals, as clinical values are: up to 3 significant digits, from 0.0001 to 99900, either sign
decimals = st.builds(
    lambda mantissa, exponent: Decimal(mantissa).scaleb(exponent),
    st.integers(min_value=-999, max_value=999),
    st.integers(min_value=-4, max_value=2),
)


@st.composite
def search_numbers(draw: st.DrawFn, near: list[Decimal]) -> str:
    """A search number near a stored one or not, with its precision kept, widened or narrowed, written plainly
    (``100``, ``100.0``, ``0.05``) or with an exponent (``1e2``, ``5e-2``)."""
    base = draw(st.one_of(st.sampled_from(near), decimals))
    exponent = base.as_tuple().exponent
    assert isinstance(exponent, int)
    exponent = max(-6, exponent + draw(st.integers(min_value=-2, max_value=3)))
    number = base.quantize(Decimal(1).scaleb(exponent))  # rounds when the precision is narrowed
    if exponent <= 0 and draw(st.booleans()):
        return f"{number:f}"
    return f"{number.scaleb(-exponent)}e{exponent}"


def edges(search: str) -> list[Decimal]:
    """The values a search number draws lines at: itself, the ends of its precision range, 10% either side."""
    number = Decimal(search)
    exponent = number.as_tuple().exponent
    assert isinstance(exponent, int)
    half, tenth = Decimal(5).scaleb(exponent - 1), abs(number) / 10
    return [number, number - half, number + half, number - tenth, number + tenth]


def stored_number(near: list[Decimal]) -> st.SearchStrategy[Decimal]:
    """A stored value: on one of the searches' edges half the time, so that every boundary gets tried."""
    return st.one_of(st.sampled_from(near), decimals)


def _json_number(value: Decimal) -> float | int:
    # sent as JSON numbers; the shortest repr of the float is the decimal we drew, so nothing is lost
    return int(value) if value == value.to_integral_value() else float(value)


@st.composite
def number_case(draw: st.DrawFn) -> tuple[list[list[Decimal]], list[tuple[str, str]]]:
    seeds = draw(st.lists(decimals, min_size=1, max_size=4))
    numbers = draw(st.lists(search_numbers(seeds), min_size=1, max_size=3))
    queries = [(prefix, number) for number in numbers for prefix in PREFIXES]
    near = [edge for number in numbers for edge in edges(number)]
    stored = draw(st.lists(st.lists(stored_number(near), min_size=1, max_size=2), min_size=1, max_size=10))
    return stored, queries


@PROPERTY
@given(case=number_case())
def test_number_search_matches_the_spec(
    server: Server, case: tuple[list[list[Decimal]], list[tuple[str, str]]]
) -> None:
    stored, queries = case
    resources = [
        {
            "resourceType": "RiskAssessment",
            "id": f"r{i}",
            "status": "final",
            "subject": {"reference": "Patient/p"},
            "prediction": [{"probabilityDecimal": _json_number(v)} for v in values],
        }
        for i, values in enumerate(stored)
    ]
    session = server.open(resources)
    try:
        for prefix, number in queries:
            found, _, _ = server.ids(session, "RiskAssessment", "probability", f"{prefix}{number}")
            # a resource matches when any of its values does
            expected = {
                f"r{i}"
                for i, values in enumerate(stored)
                if any(spec_number_matches(prefix, number, v) for v in values)
            }
            assert found == expected, f"probability={prefix}{number} over {stored}"
    finally:
        server.close(session)


# -- quantities -------------------------------------------------------------------------------------------------

UNITS = [  # (system, code, unit): a code always comes with its system (Quantity qty-3)
    (UCUM, "mg", "mg"),
    (UCUM, "mg", "milligram"),
    (UCUM, "g", "g"),
    ("http://example.org/units", "mg", "mg"),
    (None, None, "mg"),
    (None, None, None),
]
SEARCH_UNITS = ["", f"|{UCUM}|mg", f"|{UCUM}|g", "|http://example.org/units|mg", "||mg", "||milligram", "||g"]


def spec_unit_matches(search_unit: str, system: str | None, code: str | None, unit: str | None) -> bool:
    """search.html#quantity: ``|system|code`` matches "the system and code"; ``||code`` (no system) matches
    "either the unit or the code"; no unit part matches any unit."""
    if not search_unit:
        return True
    _, want_system, want_code = search_unit.split("|")
    if want_system:
        return system == want_system and code == want_code
    return want_code in (code, unit)


@st.composite
def quantity_case(draw: st.DrawFn) -> tuple[list[tuple[Decimal, int]], list[tuple[str, str, str]]]:
    seeds = draw(st.lists(decimals, min_size=1, max_size=4))
    searches = draw(st.lists(st.tuples(search_numbers(seeds), st.sampled_from(SEARCH_UNITS)), min_size=1, max_size=3))
    queries = [(prefix, number, unit) for number, unit in searches for prefix in PREFIXES]
    near = [edge for number, _ in searches for edge in edges(number)]
    units = st.integers(min_value=0, max_value=len(UNITS) - 1)
    stored = draw(st.lists(st.tuples(stored_number(near), units), min_size=1, max_size=10))
    return stored, queries


@PROPERTY
@given(case=quantity_case())
def test_quantity_search_matches_the_spec(
    server: Server, case: tuple[list[tuple[Decimal, int]], list[tuple[str, str, str]]]
) -> None:
    stored, queries = case
    resources = []
    for i, (value, unit_index) in enumerate(stored):
        system, code, unit = UNITS[unit_index]
        quantity = {"value": _json_number(value), "system": system, "code": code, "unit": unit}
        resources.append(
            {
                "resourceType": "Observation",
                "id": f"q{i}",
                "status": "final",
                "code": {"text": "x"},
                "valueQuantity": {k: v for k, v in quantity.items() if v is not None},
            }
        )
    session = server.open(resources)
    try:
        for prefix, number, unit_part in queries:
            found, _, _ = server.ids(session, "Observation", "value-quantity", f"{prefix}{number}{unit_part}")
            expected = {
                f"q{i}"
                for i, (value, unit_index) in enumerate(stored)
                if spec_number_matches(prefix, number, value) and spec_unit_matches(unit_part, *UNITS[unit_index])
            }
            assert found == expected, f"value-quantity={prefix}{number}{unit_part} over {stored}"
    finally:
        server.close(session)
