"""String search (R4 search.html#string): starts-with ignoring case and accents, ``:exact``, ``:contains``,
``:missing``, every part of a HumanName and of an Address, escaping.
"""

from __future__ import annotations

import pytest

from .search_support import SearchSession, SessionFactory

RESOURCES = [
    {
        "resourceType": "Patient",
        "id": "nunez",
        "name": [
            {
                "use": "official",
                "family": "Núñez",
                "given": ["María", "José"],
                "prefix": ["Dr."],
                "suffix": ["Jr."],
                "text": "Dr. María José Núñez Jr.",
            }
        ],
        "address": [
            {
                "line": ["12 Main Street", "Apt 4"],
                "city": "Springfield",
                "district": "Sangamon",
                "state": "IL",
                "postalCode": "62701",
                "country": "USA",
            }
        ],
    },
    {
        "resourceType": "Patient",
        "id": "smith",
        "name": [{"family": "Smith", "given": ["Eve"]}, {"use": "maiden", "family": "Straße"}],
        "address": [{"line": ["1 Elm Road"], "city": "Boston", "state": "MA", "postalCode": "02115", "country": "USA"}],
    },
    {
        "resourceType": "Patient",
        "id": "smithers",
        "name": [{"family": "Smithers", "given": ["Waylon"]}],
        "address": [{"city": "Springfield", "state": "OR", "country": "USA"}],
    },
    {"resourceType": "Patient", "id": "comma", "name": [{"family": "O,Brien", "given": ["Eve"]}]},
    {"resourceType": "Patient", "id": "anonymous", "gender": "unknown"},
    {"resourceType": "Organization", "id": "acme", "name": "ACME Général Hospital"},
]


@pytest.fixture(scope="module")
def s(new_session: SessionFactory) -> SearchSession:
    return new_session(RESOURCES)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"family": "smith"}, {"smith", "smithers"}),  # starts-with
        ({"family": "SMITH"}, {"smith", "smithers"}),  # case-insensitive
        ({"family": "mith"}, set()),  # not a substring match without :contains
        ({"family": "nunez"}, {"nunez"}),  # accent-insensitive
        ({"family": "NÚÑ"}, {"nunez"}),
        ({"family": "strasse"}, {"smith"}),  # full case folding: ß folds to ss
        ({"family": "smithers"}, {"smithers"}),
        ({"family": "smithersx"}, set()),
        ({"given": "maria"}, {"nunez"}),
        ({"given": "jose"}, {"nunez"}),  # the second given name
        ({"given": "eve"}, {"smith", "comma"}),
        ({"family": "smith,nunez"}, {"smith", "smithers", "nunez"}),  # comma is OR
        ({"family": "o\\,brien"}, {"comma"}),  # an escaped comma is part of the value
        ({"family:exact": "O\\,Brien"}, {"comma"}),
        ({"family:exact": "O,Brien"}, set()),  # unescaped: "O" OR "Brien", neither the whole name
    ],
)
def test_starts_with_ignoring_case_and_accents(s: SearchSession, params: dict[str, str], expected: set[str]) -> None:
    assert s.ids("Patient", params) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("núñez", {"nunez"}),  # family
        ("maría", {"nunez"}),  # given
        ("dr", {"nunez"}),  # prefix
        ("jr", {"nunez"}),  # suffix
        ("dr. maria jose", {"nunez"}),  # text
        ("stras", {"smith"}),  # a second HumanName
        ("waylon", {"smithers"}),
        ("smith", {"smith", "smithers"}),
        ("zzz", set()),
    ],
)
def test_name_matches_any_part_of_any_human_name(s: SearchSession, value: str, expected: set[str]) -> None:
    assert s.ids("Patient", {"name": value}) == expected


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"address": "12 main"}, {"nunez"}),  # a line
        ({"address": "apt"}, {"nunez"}),  # the second line
        ({"address": "springfield"}, {"nunez", "smithers"}),  # city
        ({"address": "sangamon"}, {"nunez"}),  # district
        ({"address": "il"}, {"nunez"}),  # state
        ({"address": "627"}, {"nunez"}),  # postal code
        ({"address": "usa"}, {"nunez", "smith", "smithers"}),  # country
        ({"address": "main"}, set()),  # starts-with of a part, not of a word inside it
        ({"address-city": "SPRING"}, {"nunez", "smithers"}),
        ({"address-city": "boston"}, {"smith"}),
        ({"address-city": "usa"}, set()),  # address-city looks only at the city
        ({"address-state": "ma"}, {"smith"}),
        ({"address-postalcode": "021"}, {"smith"}),
        ({"address-country": "us"}, {"nunez", "smith", "smithers"}),
    ],
)
def test_address_parts(s: SearchSession, params: dict[str, str], expected: set[str]) -> None:
    assert s.ids("Patient", params) == expected


def test_exact_is_whole_string_case_and_accent_sensitive(s: SearchSession) -> None:
    assert s.ids("Patient", {"family:exact": "Núñez"}) == {"nunez"}
    assert s.ids("Patient", {"family:exact": "Nunez"}) == set()  # accents matter
    assert s.ids("Patient", {"family:exact": "núñez"}) == set()  # case matters
    assert s.ids("Patient", {"family:exact": "Smith"}) == {"smith"}  # not Smithers: the whole string
    assert s.ids("Patient", {"family:exact": "Smith,Smithers"}) == {"smith", "smithers"}
    assert s.ids("Patient", {"given:exact": "José"}) == {"nunez"}
    assert s.ids("Organization", {"name:exact": "ACME Général Hospital"}) == {"acme"}
    assert s.ids("Organization", {"name:exact": "ACME Général"}) == set()


def test_contains_matches_anywhere_ignoring_case_and_accents(s: SearchSession) -> None:
    assert s.ids("Patient", {"family:contains": "mith"}) == {"smith", "smithers"}
    assert s.ids("Patient", {"family:contains": "UÑE"}) == {"nunez"}
    assert s.ids("Patient", {"family:contains": "une"}) == {"nunez"}
    assert s.ids("Patient", {"name:contains": "ylo"}) == {"smithers"}
    assert s.ids("Patient", {"address:contains": "main"}) == {"nunez"}
    assert s.ids("Organization", {"name:contains": "general"}) == {"acme"}
    assert s.ids("Patient", {"family:contains": "%"}) == set()  # SQL wildcards are literal text
    assert s.ids("Patient", {"family:contains": "_"}) == set()


def test_missing(s: SearchSession) -> None:
    assert s.ids("Patient", {"name:missing": "true"}) == {"anonymous"}
    assert s.ids("Patient", {"address:missing": "false"}) == {"nunez", "smith", "smithers"}
    assert s.ids("Patient", {"address-city:missing": "true"}) == {"comma", "anonymous"}


def test_repeated_string_parameters_are_and(s: SearchSession) -> None:
    assert s.ids("Patient", [("family", "smith"), ("given", "eve")]) == {"smith"}
    assert s.ids("Patient", [("name", "smith"), ("name", "stras")]) == {"smith"}


def test_string_modifiers_of_other_types_are_rejected(s: SearchSession) -> None:
    for modifier in ("text", "not", "below", "identifier", "Patient"):
        s.error("Patient", {f"family:{modifier}": "smith"})
