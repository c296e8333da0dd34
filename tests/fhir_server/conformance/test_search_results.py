"""Result parameters (R4 search.html#return): ``_count``, ``_sort``, paging links, ``_include`` and
``_revinclude`` (with ``:iterate``), ``_summary``, ``_total``, ``_elements``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from .search_support import SearchSession, SessionFactory

SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}


def _patient(pid: str, family: str | None, birth: str | None, **extra: Any) -> dict[str, Any]:
    patient: dict[str, Any] = {"resourceType": "Patient", "id": pid, **extra}
    if family is not None:
        patient["name"] = [{"family": family, "given": ["X"]}]
    if birth is not None:
        patient["birthDate"] = birth
    return patient


OBSERVATIONS = [f"obs-{n:02d}" for n in range(1, 24)]

RESOURCES = [
    {"resourceType": "Organization", "id": "org", "name": "Clinic"},
    {"resourceType": "Practitioner", "id": "dr", "name": [{"family": "House"}]},
    _patient(
        "a",
        "Adams",
        "1980-01-01",
        managingOrganization={"reference": "Organization/org"},
        generalPractitioner=[{"reference": "Practitioner/dr"}],
        maritalStatus={"text": "married"},
        communication=[{"language": {"text": "English"}}],
        text={"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">Adams</div>'},
    ),
    _patient("b", "Baker", "1975-06-15"),
    _patient("c", "baker", "1990"),
    _patient("cerny", "Černý", "1980-01-01"),
    _patient("davis", "Davis", "2000-02-29"),
    _patient("none", None, None),
    *(
        {
            "resourceType": "Observation",
            "id": oid,
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": "Patient/a" if n % 2 else "Patient/b"},
            "effectiveDateTime": f"2021-01-{n:02d}",
            **({"performer": [{"reference": "Practitioner/dr"}]} if n == 1 else {}),
        }
        for n, oid in enumerate(OBSERVATIONS, start=1)
    ),
    {
        "resourceType": "Provenance",
        "id": "prov",
        "target": [{"reference": "Observation/obs-01"}],
        "recorded": "2021-01-01T00:00:00Z",
        "agent": [{"who": {"reference": "Practitioner/dr"}}],
    },
]


@pytest.fixture(scope="module")
def s(new_session: SessionFactory) -> SearchSession:
    return new_session(RESOURCES)


def _entries(bundle: dict[str, Any], mode: str) -> list[str]:
    return [
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in bundle.get("entry", [])
        if e["search"]["mode"] == mode
    ]


# -- _sort ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("family", ["a", "b", "c", "cerny", "davis", "none"]),  # Baker and baker tie: then by id
        ("family,-birthdate", ["a", "c", "b", "cerny", "davis", "none"]),
        ("-family,birthdate", ["davis", "cerny", "b", "c", "a", "none"]),  # missing values last either way
        ("birthdate", ["b", "a", "cerny", "c", "davis", "none"]),
        ("birthdate,-family", ["b", "cerny", "a", "c", "davis", "none"]),
        ("-birthdate", ["davis", "c", "a", "cerny", "b", "none"]),
        ("_id", ["a", "b", "c", "cerny", "davis", "none"]),
        ("-_id", ["none", "davis", "cerny", "c", "b", "a"]),
    ],
)
def test_sort_by_several_keys(s: SearchSession, sort: str, expected: list[str]) -> None:
    assert s.match_ids("Patient", {"_sort": sort}) == expected
    # the order holds across pages
    assert s.match_ids("Patient", {"_sort": sort, "_count": "4"}) == expected


def test_sort_by_date_and_descending(s: SearchSession) -> None:
    assert s.match_ids("Observation", {"_sort": "-date", "_count": "200"}) == OBSERVATIONS[::-1]
    assert s.match_ids("Observation", {"_sort": "date"}) == OBSERVATIONS
    assert s.match_ids("Observation", {"_sort": "subject,-date", "_count": "6"}) == (
        OBSERVATIONS[0::2][::-1] + OBSERVATIONS[1::2][::-1]
    )


def test_sort_by_last_updated(s: SearchSession) -> None:
    for sort, descending in (("_lastUpdated", False), ("-_lastUpdated", True)):
        bundle = s.search("Observation", {"_sort": sort, "_count": "200"})
        stamps = [e["resource"]["meta"]["lastUpdated"] for e in bundle["entry"]]
        assert len(stamps) == 23 and stamps == sorted(stamps, reverse=descending)


def test_sort_by_an_unknown_parameter_is_an_error(s: SearchSession) -> None:
    s.error("Patient", {"_sort": "shoe-size"})


# -- _count and paging ----------------------------------------------------------------------------------------


def test_count_limits_the_page_and_total_counts_all(s: SearchSession) -> None:
    bundle = s.search("Observation", {"_count": "5"})
    assert len(_entries(bundle, "match")) == 5
    assert bundle["total"] == 23
    assert len(_entries(s.search("Observation", {"_count": "200"}), "match")) == 23


def test_paging_links_are_absolute_and_walk_every_match_once(s: SearchSession) -> None:
    bundle = s.search("Observation", {"code": "8867-4", "_count": "5", "_sort": "date"})
    pages: list[list[str]] = []
    previous_page: list[str] | None = None
    while True:
        for item in bundle["link"]:
            assert urlsplit(item["url"]).scheme == "http" and item["url"].startswith(s.base + "/Observation")
        assert bundle["total"] == 23
        page = [e["resource"]["id"] for e in bundle.get("entry", [])]
        assert len(page) <= 5
        if pages:  # previous leads back to the page before
            back = s.link(bundle, "previous")
            assert back is not None
            assert [e["resource"]["id"] for e in s.search(back).get("entry", [])] == previous_page
        else:
            assert s.link(bundle, "previous") is None
        pages.append(page)
        previous_page = page
        following = s.link(bundle, "next")
        if following is None:
            break
        assert dict(parse_qsl(urlsplit(following).query))["code"] == "8867-4"  # the criteria carry on
        bundle = s.search(following)
    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
    assert [oid for page in pages for oid in page] == OBSERVATIONS  # no gaps, no duplicates, in order
    first = s.search(s.link(bundle, "first"))
    assert [e["resource"]["id"] for e in first["entry"]] == pages[0]


def test_paging_without_sort_has_no_gaps_or_duplicates(s: SearchSession) -> None:
    assert sorted(s.match_ids("Observation", {"_count": "7"})) == OBSERVATIONS


def test_self_link_shows_the_parameters_used(s: SearchSession) -> None:
    bundle = s.search("Observation", [("subject", "Patient/a"), ("_count", "3"), ("_sort", "-date")])
    query = parse_qsl(urlsplit(s.link(bundle, "self")).query)
    assert ("subject", "Patient/a") in query and ("_count", "3") in query and ("_sort", "-date") in query


@pytest.mark.parametrize("value", ["-1", "abc", "1.5"])
def test_bad_count_is_an_error(s: SearchSession, value: str) -> None:
    s.error("Observation", {"_count": value})


# -- _summary=count, _count=0, _total -------------------------------------------------------------------------


@pytest.mark.parametrize("params", [{"_summary": "count"}, {"_count": "0"}])
def test_count_only(s: SearchSession, params: dict[str, str]) -> None:
    bundle = s.search("Observation", {"subject": "Patient/a", **params})
    assert bundle["total"] == 12
    assert "entry" not in bundle
    assert s.link(bundle, "next") is None and s.link(bundle, "previous") is None


def test_total(s: SearchSession) -> None:
    assert "total" not in s.search("Observation", {"_total": "none"})
    assert s.search("Observation", {"_total": "accurate", "_count": "1"})["total"] == 23
    assert s.search("Observation", {"_total": "estimate", "_count": "1"})["total"] >= 1
    s.error("Observation", {"_total": "some"})


# -- _include and _revinclude ---------------------------------------------------------------------------------


def test_include(s: SearchSession) -> None:
    bundle = s.search("Observation", {"_id": "obs-01", "_include": "Observation:patient"})
    assert _entries(bundle, "match") == ["Observation/obs-01"]
    assert _entries(bundle, "include") == ["Patient/a"]
    assert bundle["total"] == 1  # included resources are not counted
    for entry in bundle["entry"]:
        assert entry["fullUrl"] == f"{s.base}/{entry['resource']['resourceType']}/{entry['resource']['id']}"


def test_include_with_a_target_type_and_wildcard(s: SearchSession) -> None:
    params = {"_id": "obs-01", "_include": "Observation:subject:Patient"}
    assert _entries(s.search("Observation", params), "include") == ["Patient/a"]
    params = {"_id": "obs-01", "_include": "Observation:subject:Group"}
    assert _entries(s.search("Observation", params), "include") == []
    params = {"_id": "obs-01", "_include": "Observation:*"}
    assert sorted(_entries(s.search("Observation", params), "include")) == ["Patient/a", "Practitioner/dr"]
    params = [("_id", "obs-01"), ("_include", "Observation:patient"), ("_include", "Observation:performer")]
    assert sorted(_entries(s.search("Observation", params), "include")) == ["Patient/a", "Practitioner/dr"]


def test_a_resource_included_by_many_matches_appears_once(s: SearchSession) -> None:
    bundle = s.search("Observation", {"subject": "Patient/a", "_include": "Observation:subject", "_count": "200"})
    assert len(_entries(bundle, "match")) == 12
    assert _entries(bundle, "include") == ["Patient/a"]


def test_a_match_is_not_repeated_as_an_include(s: SearchSession) -> None:
    bundle = s.search("Patient", {"_id": "a", "_revinclude": "Patient:link", "_include": "Patient:link"})
    assert _entries(bundle, "match") == ["Patient/a"] and _entries(bundle, "include") == []


def test_includes_come_with_each_page(s: SearchSession) -> None:
    bundle = s.search("Observation", {"_sort": "date", "_count": "2", "_include": "Observation:patient"})
    assert _entries(bundle, "match") == ["Observation/obs-01", "Observation/obs-02"]
    assert sorted(_entries(bundle, "include")) == ["Patient/a", "Patient/b"]
    page2 = s.search(s.link(bundle, "next"))
    assert _entries(page2, "match") == ["Observation/obs-03", "Observation/obs-04"]
    assert sorted(_entries(page2, "include")) == ["Patient/a", "Patient/b"]


def test_revinclude(s: SearchSession) -> None:
    bundle = s.search("Observation", {"_id": "obs-01", "_revinclude": "Provenance:target"})
    assert _entries(bundle, "include") == ["Provenance/prov"]
    bundle = s.search("Patient", {"_id": "b", "_revinclude": "Observation:subject", "_count": "200"})
    assert _entries(bundle, "match") == ["Patient/b"]
    assert sorted(_entries(bundle, "include")) == [f"Observation/{oid}" for oid in OBSERVATIONS[1::2]]
    assert bundle["total"] == 1


def test_include_iterate_follows_included_resources(s: SearchSession) -> None:
    # _include:iterate (R4; STU3 called it :recurse) applies to included resources as well as matches
    params = [("_id", "obs-01"), ("_include", "Observation:patient"), ("_include:iterate", "Patient:organization")]
    bundle = s.search("Observation", params)
    assert sorted(_entries(bundle, "include")) == ["Organization/org", "Patient/a"]
    # without :iterate, Patient:organization applies only to matches, and the matches are Observations
    params = [("_id", "obs-01"), ("_include", "Observation:patient"), ("_include", "Patient:organization")]
    assert _entries(s.search("Observation", params), "include") == ["Patient/a"]
    # and _revinclude:iterate: the Provenance of Observations that were themselves reverse-included
    params = [("_id", "a"), ("_revinclude", "Observation:subject"), ("_revinclude:iterate", "Provenance:target")]
    included = _entries(s.search("Patient", params), "include")
    assert "Provenance/prov" in included and len(included) == 13  # a's 12 Observations and the Provenance
    params = [("_id", "a"), ("_revinclude", "Observation:subject"), ("_revinclude", "Provenance:target")]
    assert "Provenance/prov" not in _entries(s.search("Patient", params), "include")


@pytest.mark.parametrize(
    "value", ["Observation", "Observation:nothing", "Nope:patient", "Observation:status", "Observation:patient:Nope"]
)
def test_bad_includes_are_errors(s: SearchSession, value: str) -> None:
    s.error("Observation", {"_include": value})


# -- _summary and _elements -----------------------------------------------------------------------------------


def _only(bundle: dict[str, Any]) -> dict[str, Any]:
    [entry] = bundle["entry"]
    resource: dict[str, Any] = entry["resource"]
    return resource


def test_elements(s: SearchSession) -> None:
    resource = _only(s.search("Patient", {"_id": "a", "_elements": "birthDate,gender"}))
    assert set(resource) == {"resourceType", "id", "meta", "birthDate"}  # mandatory ones are always kept
    assert SUBSETTED in resource["meta"]["tag"]
    resource = _only(s.search("Observation", {"_id": "obs-01", "_elements": "status,subject"}))
    assert set(resource) == {"resourceType", "id", "meta", "status", "subject"}


def test_summary(s: SearchSession) -> None:
    full = _only(s.search("Patient", {"_id": "a"}))
    assert {"maritalStatus", "communication", "text"} <= set(full)
    assert _only(s.search("Patient", {"_id": "a", "_summary": "false"})) == full
    summary = _only(s.search("Patient", {"_id": "a", "_summary": "true"}))
    assert {"name", "birthDate", "managingOrganization"} <= set(summary)
    assert not {"maritalStatus", "communication", "generalPractitioner", "text"} & set(summary)
    assert SUBSETTED in summary["meta"]["tag"]
    text = _only(s.search("Patient", {"_id": "a", "_summary": "text"}))
    assert set(text) == {"resourceType", "id", "meta", "text"}
    data = _only(s.search("Patient", {"_id": "a", "_summary": "data"}))
    assert "text" not in data and {"name", "maritalStatus"} <= set(data)
    s.error("Patient", {"_summary": "some"})
