"""Reference search (R4 search.html#reference): ``[id]``, ``[type]/[id]`` and the absolute URL all find the
same references; ``:[type]`` narrows the type; ``:identifier`` matches ``Reference.identifier``; ``:missing``.
"""

from __future__ import annotations

from typing import Any

import pytest

from .search_support import SearchSession, SessionFactory

MRN = "http://hospital.example.org/mrn"
OTHER_SERVER = "http://other.example.org/fhir"


def _observation(oid: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": "final", "code": {"text": "x"}, **extra}


def _resources() -> list[dict[str, Any]]:
    return [
        {"resourceType": "Patient", "id": "123"},
        {"resourceType": "Patient", "id": "456"},
        {"resourceType": "Group", "id": "123", "type": "person", "actual": True},
        {"resourceType": "Practitioner", "id": "dr"},
        {"resourceType": "Organization", "id": "org"},
        _observation("relative", subject={"reference": "Patient/123"}),
        _observation("group", subject={"reference": "Group/123"}),
        _observation("other-patient", subject={"reference": "Patient/456"}),
        _observation("external", subject={"reference": f"{OTHER_SERVER}/Patient/123"}),
        _observation("identifier-only", subject={"identifier": {"system": MRN, "value": "MRN-1"}}),
        _observation(
            "identifier-and-reference",
            subject={"reference": "Patient/456", "identifier": {"system": MRN, "value": "MRN-2"}},
        ),
        _observation("performers", performer=[{"reference": "Practitioner/dr"}, {"reference": "Organization/org"}]),
        _observation("no-subject"),
    ]


@pytest.fixture(scope="module")
def s(new_session: SessionFactory) -> SearchSession:
    session = new_session()
    session.put_all(_resources())
    # a reference written as this server's own absolute URL is the same reference (search.html#reference);
    # stored with a plain PUT, as a transaction would rewrite it to Patient/123 (its entries' fullUrls)
    absolute = _observation("absolute", subject={"reference": f"{session.base}/Patient/123"})
    response = session.http.put("Observation/absolute", json=absolute)
    assert response.status_code == 201, response.text
    assert response.json()["subject"]["reference"] == f"{session.base}/Patient/123"
    return session


PATIENT_123 = {"relative", "absolute"}


def test_id_type_id_and_absolute_url_are_the_same_reference(s: SearchSession) -> None:
    for value in ("123", "Patient/123", f"{s.base}/Patient/123"):
        assert s.ids("Observation", {"patient": value}) == PATIENT_123, value
    for value in ("Patient/123", f"{s.base}/Patient/123"):
        assert s.ids("Observation", {"subject": value}) == PATIENT_123, value


def test_a_bare_id_matches_every_target_type_with_that_id(s: SearchSession) -> None:
    # subject may refer to a Patient or a Group: "123" means either (search.html#reference)
    assert s.ids("Observation", {"subject": "123"}) == PATIENT_123 | {"group"}
    assert s.ids("Observation", {"subject": "Group/123"}) == {"group"}


def test_type_modifier(s: SearchSession) -> None:
    assert s.ids("Observation", {"subject:Patient": "123"}) == PATIENT_123
    assert s.ids("Observation", {"subject:Group": "123"}) == {"group"}
    assert s.ids("Observation", {"subject:Device": "123"}) == set()
    assert s.ids("Observation", {"performer:Practitioner": "dr"}) == {"performers"}
    assert s.ids("Observation", {"performer:Organization": "dr"}) == set()


def test_a_type_the_parameter_cannot_refer_to_is_rejected(s: SearchSession) -> None:
    s.error("Observation", {"subject:Medication": "123"})
    s.error("Observation", {"patient:Group": "123"})
    s.error("Observation", {"subject:NotAType": "123"})


def test_external_absolute_references_match_only_their_url(s: SearchSession) -> None:
    assert s.ids("Observation", {"subject": f"{OTHER_SERVER}/Patient/123"}) == {"external"}
    assert "external" not in s.ids("Observation", {"subject": "Patient/123"})


def test_identifier_modifier(s: SearchSession) -> None:
    assert s.ids("Observation", {"subject:identifier": f"{MRN}|MRN-1"}) == {"identifier-only"}
    assert s.ids("Observation", {"subject:identifier": "MRN-2"}) == {"identifier-and-reference"}
    assert s.ids("Observation", {"subject:identifier": f"{MRN}|"}) == {"identifier-only", "identifier-and-reference"}
    assert s.ids("Observation", {"subject:identifier": "http://elsewhere|MRN-1"}) == set()
    # the identifier does not stand in for the reference, nor the reference for the identifier
    assert s.ids("Observation", {"subject": "MRN-1"}) == set()
    assert s.ids("Observation", {"subject:identifier": "456"}) == set()


def test_several_references(s: SearchSession) -> None:
    assert s.ids("Observation", {"performer": "Practitioner/dr"}) == {"performers"}
    assert s.ids("Observation", {"performer": "org"}) == {"performers"}
    assert s.ids("Observation", {"subject": "Patient/123,Patient/456"}) == PATIENT_123 | {
        "other-patient",
        "identifier-and-reference",
    }
    assert s.ids("Observation", [("subject", "Patient/123"), ("subject", "Patient/456")]) == set()
    assert s.ids("Observation", {"subject": "Patient/999"}) == set()


def test_missing(s: SearchSession) -> None:
    assert s.ids("Observation", {"subject:missing": "true"}) == {"performers", "no-subject"}
    assert s.ids("Observation", {"performer:missing": "false"}) == {"performers"}


def test_reference_modifiers_outside_the_set_are_rejected(s: SearchSession) -> None:
    for modifier in ("exact", "contains", "text", "not", "below", "above"):
        s.error("Observation", {f"subject:{modifier}": "Patient/123"})
