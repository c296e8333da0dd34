"""Date search (R4 search.html#date and #prefix): the search value and the stored value are both ranges set
by their precision; every prefix compares the search range S with the target range T. Periods are ranges, an
absent start or end is open. Times carry their zone; a date without a zone is read in the server's (UTC).
"""

from __future__ import annotations

from typing import Any

import pytest

from .search_support import SearchSession, SessionFactory


def _observation(oid: str, **effective: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": "final", "code": {"text": "x"}, **effective}


# id: stored value                                            -> T, in UTC
RESOURCES = [
    _observation("y2019", effectiveDateTime="2019"),  # [2019-01-01, 2020-01-01)
    _observation("feb", effectiveDateTime="2020-02"),  # [2020-02-01, 2020-03-01)
    _observation("day", effectiveDateTime="2020-03-15"),  # [03-15, 03-16)
    _observation("utc", effectiveDateTime="2020-03-15T10:30:00Z"),  # [10:30:00, 10:30:01)
    _observation("ms", effectiveDateTime="2020-03-15T10:30:00.250Z"),  # [10:30:00.250, 10:30:00.251)
    _observation("plus2", effectiveDateTime="2020-03-15T23:30:00+02:00"),  # 03-15 21:30:00Z
    _observation("plus5", effectiveDateTime="2020-03-16T01:00:00+05:00"),  # 03-15 20:00:00Z (03-16 locally)
    _observation("jan", effectivePeriod={"start": "2020-01-01", "end": "2020-01-31"}),  # [01-01, 02-01)
    _observation("open-end", effectivePeriod={"start": "2020-06-01"}),  # [06-01, +inf)
    _observation("open-start", effectivePeriod={"end": "2018-12-31"}),  # (-inf, 2019-01-01)
    _observation("none"),
]
WITH_VALUE = {r["id"] for r in RESOURCES} - {"none"}
IN_2020 = {"feb", "day", "utc", "ms", "plus2", "plus5", "jan"}
ON_0315 = {"day", "utc", "ms", "plus2", "plus5"}


@pytest.fixture(scope="module")
def s(new_session: SessionFactory) -> SearchSession:
    return new_session(RESOURCES)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # S = [2020-01-01, 2021-01-01)
        ("2020", IN_2020),
        ("eq2020", IN_2020),  # eq: S contains T; the open period is not contained
        ("ne2020", {"y2019", "open-end", "open-start"}),
        ("gt2020", {"open-end"}),  # the range above S overlaps T
        ("lt2020", {"y2019", "open-start"}),  # the range below S overlaps T
        ("ge2020", IN_2020 | {"open-end"}),
        ("le2020", IN_2020 | {"y2019", "open-start"}),
        ("sa2020", set()),  # T starts after S ends: the open period starts inside 2020
        ("eb2020", {"y2019", "open-start"}),
        # S = [2020-02-01, 2020-03-01)
        ("2020-02", {"feb"}),
        ("gt2020-02", ON_0315 | {"open-end"}),
        ("lt2020-02", {"y2019", "jan", "open-start"}),
        ("sa2020-02", ON_0315 | {"open-end"}),
        ("eb2020-02", {"y2019", "jan", "open-start"}),  # jan ends exactly where S starts: no overlap
        # S = [2020-03-15, 2020-03-16) in UTC
        ("2020-03-15", ON_0315),
        ("ne2020-03-15", WITH_VALUE - ON_0315),
        ("gt2020-03-15", {"open-end"}),  # "day" ends where S ends: nothing of it is above
        ("lt2020-03-15", {"y2019", "feb", "jan", "open-start"}),
        ("ge2020-03-15", ON_0315 | {"open-end"}),
        ("le2020-03-15", ON_0315 | {"y2019", "feb", "jan", "open-start"}),
        ("sa2020-03-15", {"open-end"}),
        ("eb2020-03-15", {"y2019", "feb", "jan", "open-start"}),
        # S = [10:30:00, 10:30:01) on 2020-03-15
        ("2020-03-15T10:30:00Z", {"utc", "ms"}),
        ("ne2020-03-15T10:30:00Z", WITH_VALUE - {"utc", "ms"}),
        ("gt2020-03-15T10:30:00Z", {"day", "plus2", "plus5", "open-end"}),
        ("lt2020-03-15T10:30:00Z", {"y2019", "feb", "day", "jan", "open-start"}),  # "day" starts before S
        ("ge2020-03-15T10:30:00Z", {"day", "plus2", "plus5", "open-end", "utc", "ms"}),
        ("le2020-03-15T10:30:00Z", {"y2019", "feb", "day", "jan", "open-start", "utc", "ms"}),
        ("sa2020-03-15T10:30:00Z", {"plus2", "plus5", "open-end"}),
        ("eb2020-03-15T10:30:00Z", {"y2019", "feb", "jan", "open-start"}),
        # sub-second and minute precision
        ("2020-03-15T10:30:00.250Z", {"ms"}),
        ("2020-03-15T10:30:00.25Z", {"ms"}),  # [.250, .260)
        ("2020-03-15T10:30Z", {"utc", "ms"}),  # a minute
        # Periods and open ends
        ("2020-01", {"jan"}),
        ("2020-01-15", set()),  # a day inside the period does not contain it
        ("ge2020-01-15", {"jan", "feb", "open-end"} | ON_0315),
        ("gt2030", {"open-end"}),  # an open end reaches past any date
        ("eq2030", set()),
        ("lt1900", {"open-start"}),  # an open start reaches before any date
        ("sa2019", IN_2020 | {"open-end"}),
        ("eb2019", {"open-start"}),
    ],
)
def test_prefixes_compare_ranges(s: SearchSession, value: str, expected: set[str]) -> None:
    assert s.ids("Observation", {"date": value}) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2020-03-15T21:30:00Z", {"plus2"}),  # 23:30+02:00 is 21:30Z
        ("2020-03-15T23:30:00+02:00", {"plus2"}),
        ("2020-03-15T14:30:00-07:00", {"plus2"}),
        ("2020-03-16T01:00:00+05:00", {"plus5"}),
        ("2020-03-15T20:00:00Z", {"plus5"}),
        ("2020-03-15T22:00+02:00", {"plus5"}),  # the minute [20:00Z, 20:01Z)
        ("2020-03-15T05:30:00-05:00", {"utc", "ms"}),
        ("2020-03-16", set()),  # plus5 is on the 16th locally but the 15th in UTC
        ("ge2020-03-15T22:00:00Z", {"day", "open-end"}),  # "day" runs to midnight UTC
    ],
)
def test_time_zones(s: SearchSession, value: str, expected: set[str]) -> None:
    assert s.ids("Observation", {"date": value}) == expected


def test_or_and_and(s: SearchSession) -> None:
    assert s.ids("Observation", {"date": "2019,2020-02"}) == {"y2019", "feb"}
    assert s.ids("Observation", [("date", "ge2020-03-15"), ("date", "lt2020-03-16")]) == ON_0315
    # AND of two conditions on a Period: it overlaps both
    assert s.ids("Observation", [("date", "gt2019"), ("date", "lt2020")]) == set()
    assert s.ids("Observation", [("date", "ge2020-06-01"), ("date", "gt2040")]) == {"open-end"}


def test_missing(s: SearchSession) -> None:
    assert s.ids("Observation", {"date:missing": "true"}) == {"none"}
    assert s.ids("Observation", {"date:missing": "false"}) == WITH_VALUE


@pytest.mark.parametrize(
    "value",
    [
        "2020-13",
        "2020-02-30",
        "20200315",
        "2020-03-15T25:00:00Z",
        "2020-03-15T10",  # an hour without minutes
        "xx2020",
        "eq",
        "2020-03-15T10:30:00+2",
        "yesterday",
    ],
)
def test_bad_dates_are_rejected(s: SearchSession, value: str) -> None:
    s.error("Observation", {"date": value})


def test_date_modifiers_other_than_missing_are_rejected(s: SearchSession) -> None:
    for modifier in ("exact", "not", "text", "below"):
        s.error("Observation", {f"date:{modifier}": "2020"})


def test_birthdate_of_different_precisions(new_session: SessionFactory) -> None:
    s = new_session(
        [
            {"resourceType": "Patient", "id": "year", "birthDate": "1970"},
            {"resourceType": "Patient", "id": "month", "birthDate": "1970-05"},
            {"resourceType": "Patient", "id": "day", "birthDate": "1970-05-12"},
            {"resourceType": "Patient", "id": "later", "birthDate": "1971-01-01"},
        ]
    )
    assert s.ids("Patient", {"birthdate": "1970"}) == {"year", "month", "day"}
    assert s.ids("Patient", {"birthdate": "1970-05"}) == {"month", "day"}
    assert s.ids("Patient", {"birthdate": "1970-05-12"}) == {"day"}
    # a year overlaps both sides of a day inside it
    assert s.ids("Patient", {"birthdate": "lt1970-05-12"}) == {"year", "month"}
    assert s.ids("Patient", {"birthdate": "gt1970-05-12"}) == {"year", "month", "later"}
    assert s.ids("Patient", {"birthdate": "sa1970-05-12"}) == {"later"}
    assert s.ids("Patient", {"birthdate": "eb1970-05-12"}) == set()
    assert s.ids("Patient", {"birthdate": "ne1970"}) == {"later"}


def test_ap_is_ten_percent_of_the_gap_to_now(new_session: SessionFactory) -> None:
    # now is 30.5 days after 2020-03-15: the slack is 3.05 days, so S becomes [03-11T22:48Z, 03-19T01:12Z)
    s = new_session(
        [_observation(f"d{day}", effectiveDateTime=f"2020-{day}") for day in ("03-10", "03-11", "03-15", "03-19")]
        + [_observation(f"d{day}", effectiveDateTime=f"2020-{day}") for day in ("03-20", "05-10", "05-12", "05-17")]
        + [_observation("d05-18", effectiveDateTime="2020-05-18")],
        now="2020-04-14T12:00:00Z",
    )
    assert s.ids("Observation", {"date": "ap2020-03-15"}) == {"d03-11", "d03-15", "d03-19"}
    # a future date: 29.5 days after now, slack 2.95 days: [05-11T01:12Z, 05-17T22:48Z)
    assert s.ids("Observation", {"date": "ap2020-05-14"}) == {"d05-12", "d05-17"}
