"""The index rows of a CodeableConcept: one per coding, and one for its text unless a display repeats it."""

from fhir_sandbox.fhir_server.search.paths import Node
from fhir_sandbox.fhir_server.search.token import TokenType

LOINC = "http://loinc.org"


def rows(concept: dict) -> list[tuple]:
    return TokenType().extract([Node(concept)])


def test_text_that_a_display_repeats_adds_no_row() -> None:
    concept = {"coding": [{"system": LOINC, "code": "2823-3", "display": "Potassium"}], "text": "POTASSIUM"}
    assert rows(concept) == [("2823-3", LOINC, "potassium")]


def test_text_of_its_own_keeps_its_row() -> None:
    concept = {"coding": [{"system": LOINC, "code": "2823-3", "display": "Potassium SerPl-sCnc"}], "text": "K"}
    assert rows(concept) == [("2823-3", LOINC, "potassium serpl-scnc"), (None, None, "k")]


def test_text_without_codings() -> None:
    assert rows({"text": "Body weight"}) == [(None, None, "body weight")]
