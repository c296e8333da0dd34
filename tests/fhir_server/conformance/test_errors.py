"""Bad input (R4 http.html#errors): each kind of mistake gets its own status and an OperationOutcome whose
diagnostics name the problem, and nothing is stored. Odd inputs never make the server answer 500.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhir_sandbox.fhir_server.settings import ServerSettings
from fhir_sandbox.server import LocalServer

from .rest_support import (
    FHIR_JSON,
    JSON_PATCH,
    assert_outcome,
    count,
    create,
    observation,
    patient,
    post_bundle,
    read,
    write_log,
)

BODY_LIMIT = 1024  # the smallest limit ServerSettings allows


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """A second live server whose body limit is ``BODY_LIMIT`` bytes."""
    database = tmp_path_factory.mktemp("small") / "fhir.db"
    with LocalServer(ServerSettings(database=str(database), max_body_bytes=BODY_LIMIT)) as server:
        yield server


@pytest.fixture
def small(small_server: LocalServer) -> Iterator[httpx.Client]:
    """A client bound to a fresh session of ``small_server``."""
    created = httpx.post(f"{small_server.url}/sessions", verify=False)
    assert created.status_code == 201
    with httpx.Client(base_url=created.json()["fhir_base_url"] + "/", timeout=30, verify=False) as client:
        yield client
        client.delete(f"{small_server.url}/sessions/{created.json()['id']}")


# -- 400: malformed or invalid bodies -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b'{"resourceType": "Patient"',
        b"{'resourceType': 'Patient'}",
        b'{"resourceType": "Patient"} extra',
        b"\xff\xfe{}",
    ],
    ids=["truncated", "single-quotes", "trailing-data", "not-utf8"],
)
def test_malformed_json_is_400(fhir: httpx.Client, body: bytes) -> None:
    response = fhir.post("Patient", content=body, headers={"Content-Type": FHIR_JSON})
    assert_outcome(response, 400, "not valid JSON")
    assert write_log(fhir) == []


def test_json_that_is_not_json_numbers_is_400(fhir: httpx.Client) -> None:
    body = b'{"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "valueQuantity": {"value": NaN}}'
    assert_outcome(fhir.post("Observation", content=body, headers={"Content-Type": FHIR_JSON}), 400, "NaN")
    assert write_log(fhir) == []


def test_an_empty_body_is_400(fhir: httpx.Client) -> None:
    assert_outcome(fhir.post("Patient", content=b"", headers={"Content-Type": FHIR_JSON}), 400, "body")
    assert_outcome(fhir.put("Patient/x", content=b" ", headers={"Content-Type": FHIR_JSON}), 400, "body")
    assert write_log(fhir) == []


@pytest.mark.parametrize("body", [[], "Patient", 42, None], ids=["array", "string", "number", "null"])
def test_a_body_that_is_not_an_object_is_400(fhir: httpx.Client, body: Any) -> None:
    response = fhir.post("Patient", content=json.dumps(body).encode(), headers={"Content-Type": FHIR_JSON})
    assert_outcome(response, 400, "JSON object")
    assert write_log(fhir) == []


@pytest.mark.parametrize(
    ("resource", "path"),
    [
        ({"resourceType": "Patient", "gender": 1}, "Patient.gender"),
        ({"resourceType": "Patient", "active": "true"}, "Patient.active"),
        ({"resourceType": "Patient", "multipleBirthInteger": "2"}, "Patient.multipleBirthInteger"),
        ({"resourceType": "Patient", "birthDate": "03/04/1970"}, "Patient.birthDate"),
        ({"resourceType": "Patient", "name": {"family": "NotAList"}}, "Patient.name"),
        ({"resourceType": "Patient", "name": [{"given": "NotAList"}]}, "Patient.name[0].given"),
        ({"resourceType": "Patient", "favouriteColour": "blue"}, "Patient.favouriteColour"),
        ({"resourceType": "Patient", "meta": "not an object"}, "Patient.meta"),
        ({"resourceType": "Observation", "code": {"text": "x"}}, "Observation.status"),
        (
            {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "valueQuantity": {"value": "7"}},
            "Observation.valueQuantity.value",
        ),
    ],
    ids=[
        "wrong-type",
        "string-for-boolean",
        "string-for-integer",
        "bad-date",
        "object-for-list",
        "string-for-list",
        "unknown-element",
        "meta",
        "missing-required",
        "string-for-decimal",
    ],
)
def test_a_resource_failing_r4_validation_is_400_naming_the_element(
    fhir: httpx.Client, resource: dict[str, Any], path: str
) -> None:
    outcome = assert_outcome(fhir.post(resource["resourceType"], json=resource), 400, path)
    assert path in outcome["issue"][0]["expression"]
    assert write_log(fhir) == []


def test_every_validation_problem_is_reported(fhir: httpx.Client) -> None:
    resource = {"resourceType": "Patient", "gender": 1, "birthDate": "soon", "active": []}
    outcome = assert_outcome(fhir.post("Patient", json=resource), 400, "Patient.gender", "Patient.birthDate")
    assert {"Patient.gender", "Patient.birthDate", "Patient.active"} <= set(outcome["issue"][0]["expression"])


def test_an_unknown_contained_resource_type_is_400(fhir: httpx.Client) -> None:
    resource = patient("e1", contained=[{"resourceType": "Unicorn", "id": "u"}])
    assert_outcome(fhir.post("Patient", json=resource), 400, "Unicorn")
    assert write_log(fhir) == []


def test_invalid_resources_are_rejected_by_update_too(fhir: httpx.Client) -> None:
    stored = create(fhir, patient("e2"))
    response = fhir.put(f"Patient/{stored['id']}", json={**stored, "birthDate": "1970-13-01"})
    assert_outcome(response, 400, "Patient.birthDate")
    assert read(fhir, f"Patient/{stored['id']}") == stored


# -- 404, 405, 410, 412 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "Unicorn"), ("GET", "Unicorn/1"), ("POST", "Unicorn"), ("PUT", "Unicorn/1"), ("GET", "patient/1")],
)
def test_an_unknown_resource_type_is_404(fhir: httpx.Client, method: str, path: str) -> None:
    body = {"resourceType": path.split("/")[0], "id": "1"} if method in ("POST", "PUT") else None
    response = fhir.request(method, path, json=body)
    assert_outcome(response, 404, repr(path.split("/")[0]))


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "Patient/123"),
        ("DELETE", ""),
        ("GET", ""),
        ("PATCH", ""),
        ("PUT", "Patient/123/_history/1"),
        ("DELETE", "Patient/123/_history"),
        ("DELETE", "metadata"),
        ("POST", "metadata"),
        ("PUT", "_history"),
        ("OPTIONS", "Patient"),
    ],
)
def test_a_method_the_url_does_not_allow_is_405(fhir: httpx.Client, method: str, path: str) -> None:
    body = json.dumps(patient("e3", id="123")).encode() if method in ("POST", "PUT", "PATCH") else None
    response = fhir.request(method, path, content=body, headers={"Content-Type": FHIR_JSON})
    assert_outcome(response, 405, code="not-supported")
    assert write_log(fhir) == []


def test_gone_and_precondition_failed(fhir: httpx.Client) -> None:
    stored = create(fhir, patient("e4"))
    pid = stored["id"]
    assert_outcome(fhir.put(f"Patient/{pid}", json=stored, headers={"If-Match": 'W/"5"'}), 412, 'W/"5"')
    assert fhir.delete(f"Patient/{pid}").status_code == 200
    assert_outcome(fhir.get(f"Patient/{pid}"), 410, pid, code="deleted")


# -- 413: the body limit ---------------------------------------------------------------------------------------


def test_a_body_over_the_limit_is_413(small: httpx.Client) -> None:
    big = patient("e5", name=[{"family": "x" * BODY_LIMIT}])
    assert_outcome(small.post("Patient", json=big), 413, str(BODY_LIMIT))
    assert write_log(small) == []
    assert small.post("Patient", json=patient("e5")).status_code == 201  # under the limit is fine


def test_a_chunked_body_over_the_limit_is_413(small: httpx.Client) -> None:
    """Without a Content-Length the server counts what it reads and stops at the limit."""

    def chunks() -> Iterator[bytes]:
        yield b'{"resourceType": "Patient", "name": [{"family": "'
        for _ in range(8):
            yield b"y" * 512
        yield b'"}]}'

    response = small.post("Patient", content=chunks(), headers={"Content-Type": FHIR_JSON})
    assert "content-length" not in response.request.headers
    assert_outcome(response, 413, str(BODY_LIMIT))
    assert write_log(small) == []


def test_a_bundle_over_the_limit_is_413_and_runs_nothing(small: httpx.Client) -> None:
    entries = [{"resource": patient("e6"), "request": {"method": "POST", "url": "Patient"}}] * 20
    assert_outcome(post_bundle(small, "transaction", entries), 413)
    assert count(small, "Patient", "e6") == 0


# -- 415 and 406: media types ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "media", ["text/plain", "application/xml", "application/fhir+xml", "application/x-www-form-urlencoded"]
)
def test_a_body_in_another_media_type_is_415(fhir: httpx.Client, media: str) -> None:
    body = json.dumps(patient("e7")).encode()
    assert_outcome(fhir.post("Patient", content=body, headers={"Content-Type": media}), 415, media)
    assert_outcome(fhir.put("Patient/e7", content=body, headers={"Content-Type": media}), 415, media)
    assert write_log(fhir) == []


def test_json_patch_is_only_for_patch(fhir: httpx.Client) -> None:
    body = json.dumps(patient("e8")).encode()
    assert_outcome(fhir.post("Patient", content=body, headers={"Content-Type": JSON_PATCH}), 415, JSON_PATCH)


def test_search_by_post_takes_a_form_not_json(fhir: httpx.Client) -> None:
    response = fhir.post("Patient/_search", json={"name": "x"})
    assert_outcome(response, 415, "application/x-www-form-urlencoded")


@pytest.mark.parametrize(
    ("headers", "params"),
    [
        ({"Accept": "application/fhir+xml"}, {}),
        ({"Accept": "application/xml"}, {}),
        ({"Accept": "application/fhir+xml, text/xml"}, {}),
        ({}, {"_format": "xml"}),
        ({}, {"_format": "application/fhir+xml"}),
        ({"Accept": "application/fhir+json"}, {"_format": "xml"}),  # _format overrides Accept
    ],
)
def test_asking_for_xml_is_406(fhir: httpx.Client, headers: dict[str, str], params: dict[str, str]) -> None:
    assert_outcome(fhir.get("metadata", headers=headers, params=params), 406, "JSON")
    response = fhir.post("Patient", json=patient("e9"), headers=headers, params=params)
    assert_outcome(response, 406, "JSON")
    assert write_log(fhir) == []


def test_xml_among_acceptable_json_types_is_fine(fhir: httpx.Client) -> None:
    response = fhir.get("metadata", headers={"Accept": "application/fhir+xml;q=0.9, application/fhir+json"})
    assert response.status_code == 200
    response = fhir.get("metadata", headers={"Accept": "application/fhir+xml"}, params={"_format": "json"})
    assert response.status_code == 200


# -- odd inputs --------------------------------------------------------------------------------------------------


def _nested(depth: int) -> str:
    """A Patient whose extension holds an extension ... ``depth`` deep, as JSON text (too deep for json.dumps)."""
    leaf = '{"url": "http://example.org/leaf", "valueString": "leaf"}'
    node = '{"url": "http://example.org/node", "extension": ['
    return '{"resourceType": "Patient", "extension": [' + node * depth + leaf + "]}" * depth + "]}"


def _in_bundle(kind: str, resource: str) -> bytes:
    entry = '{"request": {"method": "POST", "url": "Patient"}, "resource": ' + resource + "}"
    return ('{"resourceType": "Bundle", "type": "' + kind + '", "entry": [' + entry + "]}").encode()


def _odd_requests() -> list[tuple[str, str, dict[str, str], dict[str, str], Any]]:
    """(method, path, query, headers, body): a body that is not bytes is sent as JSON."""
    long_id = "a" * 5000
    tx = "transaction"
    return [
        ("GET", f"Patient/{long_id}", {}, {}, None),
        ("GET", "Patient/%00", {}, {}, None),
        ("GET", "Patient/..%2F..%2Fmetadata", {}, {}, None),
        ("GET", "Patient/a%20b/_history/1", {}, {}, None),
        ("GET", "Patient/x/_history/-1", {}, {}, None),
        ("GET", "Patient/x/_history/99999999999999999999999999", {}, {}, None),
        ("GET", "Patient/x/_history/1/extra/segments", {}, {}, None),
        ("GET", "Patient/$everything", {}, {}, None),
        ("GET", "_history/x", {}, {}, None),
        ("GET", "metadata/x", {}, {}, None),
        ("GET", "Patient", {"_count": "99999999999999999999"}, {}, None),
        ("GET", "Patient", {"_count": "1e5"}, {}, None),
        ("GET", "Patient", {"_offset": "-3"}, {}, None),
        ("GET", "Patient", {"_sort": "no-such"}, {}, None),
        ("GET", "Patient", {"_sort": ""}, {}, None),
        ("GET", "Patient", {"birthdate": "gt"}, {}, None),
        ("GET", "Patient", {"birthdate": "2020-13-45"}, {}, None),
        ("GET", "Patient", {"_lastUpdated": "x" * 3000}, {}, None),
        ("GET", "Patient", {"name:nonsense": "x"}, {}, None),
        ("GET", "Patient", {"name": "\x00"}, {}, None),
        ("GET", "Patient", {"_id": "a,,b,"}, {}, None),
        ("GET", "Patient", {"_include": "nonsense"}, {}, None),
        ("GET", "Patient", {"_revinclude": "Unicorn:horn"}, {}, None),
        ("GET", "Patient", {"_summary": "maybe"}, {}, None),
        ("GET", "Patient", {"_elements": ",,,"}, {}, None),
        ("GET", "Patient", {"_total": "lots"}, {}, None),
        ("GET", "Patient", {"_has": "broken"}, {}, None),
        ("GET", "Patient", {"general-practitioner": "Practitioner?x"}, {}, None),
        ("GET", "Observation", {"value-quantity": "abc"}, {}, None),
        ("GET", "Observation", {"value-quantity": "gt5|||"}, {}, None),
        ("GET", "Observation", {"code-value-quantity": "x$y"}, {}, None),
        ("GET", "Observation", {"subject:Unicorn": "1"}, {}, None),
        ("GET", "Observation", {"subject.name": "x"}, {}, None),
        ("GET", "Observation", {"patient": ""}, {}, None),
        ("GET", "Observation", {"date": "ge2020-01-01T25:00"}, {}, None),
        ("GET", "RiskAssessment", {"probability": "abc"}, {}, None),
        ("GET", "_history", {"_since": "2020-01-01T00:00:00+99:00"}, {}, None),
        ("GET", "_history", {"_count": "99999999999999999999"}, {}, None),
        ("GET", "Patient/x", {}, {"If-None-Match": "*"}, None),
        ("GET", "Patient", {}, {"Prefer": "handling=strict"}, None),
        ("GET", "Patient", {}, {"Prefer": "=;=,;;return"}, None),
        ("POST", "Patient/_search", {}, {"Content-Type": "application/x-www-form-urlencoded"}, b"name=%ZZ&&=&"),
        ("POST", "Patient", {}, {}, {"resourceType": "Patient", "id": 123}),
        ("POST", "Patient", {}, {}, {"resourceType": "Patient", "active": "yes"}),
        ("POST", "Patient", {}, {}, {"resourceType": "Patient", "active": 1, "multipleBirthInteger": 2.0}),
        ("PUT", "Patient/x", {}, {}, {"resourceType": "Patient", "id": "x", "deceasedBoolean": "false"}),
        ("POST", "Patient", {}, {}, {"resourceType": "Patient", "meta": []}),
        ("POST", "Patient", {}, {}, {"resourceType": "Patient", "meta": {"versionId": 5, "lastUpdated": 7}}),
        ("POST", "Patient", {}, {}, {"resourceType": "Patient", "meta": {"tag": "x"}}),
        ("POST", "Patient", {}, {}, {"resourceType": "Patient", "contained": [1]}),
        ("POST", "Patient", {}, {}, {"resourceType": "Patient", "contained": [{"resourceType": None}]}),
        (
            "POST",
            "Patient",
            {},
            {},
            {"resourceType": "Patient", "contained": [{"resourceType": "Patient", "meta": "x"}]},
        ),
        ("POST", "Patient", {}, {}, {"resourceType": "Patient", "extension": [{"url": "http://x", "valueUnicorn": 1}]}),
        ("POST", "Patient", {}, {}, {"resourceType": "Patient", "multipleBirthInteger": 10**30}),
        (
            "POST",
            "Patient",
            {},
            {"Content-Type": FHIR_JSON},
            b'{"resourceType":"Patient","multipleBirthInteger":1e999}',
        ),
        (
            "POST",
            "Patient",
            {},
            {"Content-Type": FHIR_JSON},
            b'{"resourceType":"Patient","name":[{"family":"\\ud800"}]}',
        ),
        ("POST", "Patient", {}, {"Content-Type": FHIR_JSON}, b"[" * 100_000 + b"]" * 100_000),
        ("POST", "Patient", {}, {"Content-Type": FHIR_JSON}, b'{"a":' * 50_000 + b"1" + b"}" * 50_000),
        ("POST", "Patient", {}, {}, _nested(300).encode()),
        ("POST", "Patient", {}, {}, _nested(480).encode()),
        ("POST", "Patient", {}, {}, {"resourceType": "Patient", "resourceType ": "Patient"}),
        ("POST", "Patient", {}, {"If-None-Exist": ""}, {"resourceType": "Patient"}),
        ("POST", "Patient", {}, {"If-None-Exist": "?"}, {"resourceType": "Patient"}),
        ("POST", "Patient", {}, {"If-None-Exist": "birthdate=notadate"}, {"resourceType": "Patient"}),
        ("PUT", "Patient/x", {}, {"If-Match": "garbage"}, {"resourceType": "Patient", "id": "x"}),
        ("PUT", "Patient/x", {}, {}, {"resourceType": "Patient", "id": ["x"]}),
        ("PUT", "Patient/x", {}, {}, {"resourceType": "Patient", "id": "x", "meta": "x"}),
        ("PUT", f"Patient/{long_id}", {}, {}, {"resourceType": "Patient", "id": long_id}),
        ("PUT", "Patient", {"_id": "x"}, {}, {"resourceType": "Patient", "meta": 5}),
        ("PUT", "Patient", {"no-such": "1"}, {}, {"resourceType": "Patient"}),
        ("PATCH", "Patient/x", {}, {"Content-Type": JSON_PATCH}, [{"op": "add", "path": "/meta", "value": "x"}]),
        ("PATCH", "Patient/x", {}, {"Content-Type": JSON_PATCH}, [{"op": "remove", "path": ""}]),
        ("PATCH", "Patient/x", {}, {"Content-Type": JSON_PATCH}, [{"op": "replace", "path": "", "value": []}]),
        ("PATCH", "Patient/x", {}, {"Content-Type": JSON_PATCH}, [1, "two", None]),
        ("PATCH", "Patient/x", {}, {"Content-Type": JSON_PATCH}, [{"op": "move", "from": "/id", "path": "/x"}]),
        ("PATCH", "Patient/x", {}, {"Content-Type": "application/merge-patch+json"}, {"meta": "x"}),
        ("PATCH", "Patient/x", {}, {"Content-Type": "application/merge-patch+json"}, {"resourceType": None}),
        ("PATCH", "Patient/x", {}, {"Content-Type": "application/merge-patch+json"}, ["not", "an", "object"]),
        ("PATCH", "Patient", {}, {"Content-Type": "application/merge-patch+json"}, {"gender": "male"}),
        ("DELETE", "Patient", {"no-such": "1"}, {}, None),
        ("DELETE", "Patient/x/_history/1", {}, {}, None),
        ("HEAD", "Patient/nobody", {}, {}, None),
        ("TRACE", "Patient", {}, {}, None),
        ("POST", "", {}, {}, {"resourceType": "Bundle"}),
        ("POST", "", {}, {}, {"resourceType": "Bundle", "type": "batch", "entry": {}}),
        ("POST", "", {}, {}, {"resourceType": "Bundle", "type": "batch", "entry": [1, "x", None]}),
        (
            "POST",
            "",
            {},
            {},
            {"resourceType": "Bundle", "type": "batch", "entry": [{"request": {"method": "GET", "url": 5}}]},
        ),
        (
            "POST",
            "",
            {},
            {},
            {
                "resourceType": "Bundle",
                "type": "batch",
                "entry": [
                    {"request": {"method": "GET", "url": "http://elsewhere.example/x"}},
                    {"request": {"method": "GET", "url": "metadata"}},
                    {"request": {"method": "GET", "url": "Unicorn?x=1"}},
                ],
            },
        ),
        (
            "POST",
            "",
            {},
            {},
            {
                "resourceType": "Bundle",
                "type": "batch",
                "entry": [
                    {
                        "request": {"method": "PATCH", "url": "Patient/x"},
                        "resource": {"resourceType": "Binary", "data": "!!!"},
                    },
                    {
                        "request": {"method": "POST", "url": "Patient"},
                        "resource": {"resourceType": "Patient", "meta": "x"},
                    },
                    {"request": {"method": "POST", "url": ""}, "resource": {"resourceType": "Bundle", "type": "batch"}},
                ],
            },
        ),
        (
            "POST",
            "",
            {},
            {},
            {
                "resourceType": "Bundle",
                "type": tx,
                "entry": [{"request": {"method": "POST", "url": "Patient"}, "resource": {"resourceType": "Unicorn"}}],
            },
        ),
        (
            "POST",
            "",
            {},
            {},
            {
                "resourceType": "Bundle",
                "type": tx,
                "entry": [{"request": {"method": "POST", "url": "Patient"}, "resource": {"resourceType": 5}}],
            },
        ),
        (
            "POST",
            "",
            {},
            {},
            {
                "resourceType": "Bundle",
                "type": tx,
                "entry": [
                    {
                        "request": {"method": "PUT", "url": "Patient/z"},
                        "resource": {"resourceType": "Patient", "id": "z", "meta": "x"},
                    }
                ],
            },
        ),
        (
            "POST",
            "",
            {},
            {},
            {
                "resourceType": "Bundle",
                "type": tx,
                "entry": [
                    {
                        "request": {"method": "POST", "url": "Patient"},
                        "resource": {
                            "resourceType": "Patient",
                            "generalPractitioner": [{"reference": "Practitioner?"}],
                        },
                    }
                ],
            },
        ),
        (
            "POST",
            "",
            {},
            {},
            {
                "resourceType": "Bundle",
                "type": tx,
                "entry": [
                    {
                        "request": {"method": "POST", "url": "Patient"},
                        "resource": {"resourceType": "Patient", "generalPractitioner": [{"reference": "Unicorn?x=1"}]},
                    }
                ],
            },
        ),
        (
            "POST",
            "",
            {},
            {},
            {
                "resourceType": "Bundle",
                "type": tx,
                "entry": [
                    {
                        "request": {"method": "POST", "url": "Patient", "ifNoneExist": "no-such=1"},
                        "resource": {"resourceType": "Patient"},
                    }
                ],
            },
        ),
        (
            "POST",
            "",
            {},
            {},
            {
                "resourceType": "Bundle",
                "type": tx,
                "entry": [
                    {"request": {"method": "PATCH", "url": "Patient/x"}, "resource": {"resourceType": "Parameters"}}
                ],
            },
        ),
        (
            "POST",
            "",
            {},
            {},
            {"resourceType": "Bundle", "type": tx, "entry": [{"request": {"method": "DELETE", "url": "Patient?"}}]},
        ),
        (
            "POST",
            "",
            {},
            {},
            {
                "resourceType": "Bundle",
                "type": tx,
                "entry": [
                    {"request": {"method": "GET", "url": "Patient/$x"}},
                    {"request": {"method": "DELETE", "url": "/"}},
                ],
            },
        ),
        (
            "POST",
            "",
            {},
            {},
            {
                "resourceType": "Bundle",
                "type": tx,
                "entry": [
                    {
                        "fullUrl": 7,
                        "request": {"method": "POST", "url": "Patient"},
                        "resource": {"resourceType": "Patient"},
                    }
                ],
            },
        ),
        ("POST", "", {}, {}, _in_bundle(tx, _nested(300))),
        ("POST", "", {}, {}, _in_bundle(tx, _nested(480))),
        ("POST", "", {}, {}, _in_bundle("batch", _nested(480))),
    ]


def send_odd_requests(fhir: httpx.Client) -> list[str]:
    """Send every odd request to ``fhir``'s session; returns what went wrong (500s, 4xx without an outcome)."""
    problems = []
    # a connection per request: after a 500 the server drops the connection, which would fail the next request
    with httpx.Client(base_url=fhir.base_url, headers={"Connection": "close"}, timeout=30, verify=False) as client:
        for method, path, query, headers, body in _odd_requests():
            content = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
            sent_headers = {"Content-Type": FHIR_JSON, **headers} if content is not None else headers
            where = f"{method} {path[:60]} {query} {headers} {(content or b'')[:80]!r}"
            try:
                response = client.request(method, path, params=query, headers=sent_headers, content=content)
            except httpx.HTTPError as exc:  # the server dropped the connection: as bad as a 500
                problems.append(f"{where}: {type(exc).__name__} {exc}")
                continue
            if response.status_code >= 500:
                problems.append(f"{where}: {response.status_code} {response.text[:200]}")
            elif response.status_code >= 400 and method != "HEAD":
                try:
                    outcome = response.json()
                except ValueError:
                    problems.append(f"{where}: {response.status_code} without JSON")
                    continue
                issues = outcome.get("issue") or [{}]
                if outcome.get("resourceType") != "OperationOutcome" or not issues[0].get("diagnostics"):
                    problems.append(f"{where}: {response.status_code} without an OperationOutcome: {outcome}")
            elif response.status_code == 200 and method == "POST" and not path:
                # a batch that ran: every failed entry still explains itself
                for entry in response.json().get("entry", []):
                    status = entry["response"]["status"]
                    if status.startswith("5") or (status.startswith("4") and "outcome" not in entry["response"]):
                        problems.append(f"{where}: entry {status}")
    return problems


@pytest.fixture(scope="module")
def after_odd_requests(live_server: LocalServer) -> Iterator[tuple[httpx.Client, list[str]]]:
    """A session that got every odd request once, and the problems they showed."""
    with httpx.Client(base_url=live_server.url, timeout=30, verify=False) as admin:
        info = admin.post("/sessions").json()
        with httpx.Client(base_url=info["fhir_base_url"] + "/", timeout=30, verify=False) as client:
            yield client, send_odd_requests(client)
        admin.delete(f"/sessions/{info['id']}")


def test_odd_inputs_never_get_a_500_and_4xx_always_carries_an_outcome(
    after_odd_requests: tuple[httpx.Client, list[str]],
) -> None:
    client, problems = after_odd_requests
    assert problems == []
    assert client.get("metadata").status_code == 200  # and the server is still up


def test_what_odd_inputs_stored_is_valid_r4(after_odd_requests: tuple[httpx.Client, list[str]]) -> None:
    """Whatever the odd inputs managed to store reads back as valid R4 (the lax models coerce, this must not)."""
    client, _ = after_odd_requests
    stored = [e for e in write_log(client) if e["method"] != "DELETE"]
    assert stored  # some odd inputs are valid (an id in the body of a create is ignored, ...)
    for entry in stored:
        resource = read(client, f"{entry['type']}/{entry['id']}/_history/{entry['version']}")
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
        assert validate_strictly(resource) == []


def validate_strictly(resource: dict[str, Any]) -> list[str]:
    """Primitives of the wrong JSON type (the R4B models accept "true" for a boolean): their paths."""
    wrong = []
    for key, value in resource.items():
        if key in ("active", "deceasedBoolean", "multipleBirthBoolean") and not isinstance(value, bool):
            wrong.append(key)
        if key == "multipleBirthInteger" and (isinstance(value, bool) or not isinstance(value, int)):
            wrong.append(key)
    return wrong


def test_an_observation_with_an_unknown_subject_type_is_still_stored_as_given(fhir: httpx.Client) -> None:
    """References are not resolved on write (R4 lets servers accept dangling references)."""
    stored = create(fhir, observation("Patient/does-not-exist"))
    assert stored["subject"] == {"reference": "Patient/does-not-exist"}
