"""history (R4 http.html#history): instance, type and system level, newest first, deletions included;
``_count`` and ``_since``.

The shared test server's base population may hold resources other tests loaded, so type- and system-level
assertions look at this session's own resources, and the tests that need this session's writes to be the newest
run in a session whose clock is set far ahead.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .rest_support import assert_outcome, base_url, create, history, observation, patient


@pytest.fixture
def ahead(live_server: Any) -> Iterator[httpx.Client]:
    """A client of a session whose clock starts in 2100: its writes are newer than anything in the base."""
    with httpx.Client(base_url=live_server.url, timeout=30, verify=False) as admin:
        info = admin.post("/sessions", json={"now": "2100-01-01T00:00:00Z"}).json()
        with httpx.Client(base_url=info["fhir_base_url"] + "/", timeout=30, verify=False) as client:
            yield client
        admin.delete(f"/sessions/{info['id']}")


def make_versions(fhir: httpx.Client) -> tuple[str, list[dict[str, Any]]]:
    """A Patient with versions 1-3 (create, update, update) and a deletion as version 4."""
    stored = create(fhir, patient("h", gender="male"))
    pid = stored["id"]
    versions = [stored]
    for gender in ("female", "other"):
        time.sleep(0.003)  # distinct lastUpdated instants (milliseconds) for the _since tests
        response = fhir.put(f"Patient/{pid}", json={**versions[-1], "gender": gender})
        assert response.status_code == 200
        versions.append(response.json())
    time.sleep(0.003)
    assert fhir.delete(f"Patient/{pid}").status_code == 200
    return pid, versions


def entry_ids(bundle: dict[str, Any]) -> list[str]:
    return [e["fullUrl"].rsplit("/", 1)[-1] for e in bundle.get("entry", [])]


def test_instance_history_is_newest_first_and_includes_the_deletion(fhir: httpx.Client) -> None:
    pid, versions = make_versions(fhir)
    bundle = history(fhir, f"Patient/{pid}")
    entries = bundle["entry"]
    assert bundle["total"] == 4
    assert [e["response"]["etag"] for e in entries] == ['W/"4"', 'W/"3"', 'W/"2"', 'W/"1"']
    assert [e["request"]["method"] for e in entries] == ["DELETE", "PUT", "PUT", "POST"]
    assert entries[0]["request"]["url"] == f"Patient/{pid}"
    assert "resource" not in entries[0]
    assert [e["resource"] for e in entries[1:]] == versions[::-1]
    assert all(e["fullUrl"] == f"{base_url(fhir)}/Patient/{pid}" for e in entries)
    assert entries[-1]["response"]["status"].startswith("201")
    assert entries[1]["response"]["status"].startswith("200")
    last_updated = [e["response"]["lastModified"] for e in entries]
    assert last_updated == sorted(last_updated, reverse=True)


def test_instance_history_of_an_unknown_resource_is_404(fhir: httpx.Client) -> None:
    assert_outcome(fhir.get("Patient/nobody/_history"), 404, "nobody")


def test_type_history_holds_only_that_type(fhir: httpx.Client) -> None:
    pid, _ = make_versions(fhir)
    oid = create(fhir, observation(f"Patient/{pid}"))["id"]
    patients = history(fhir, "Patient")
    assert all("/Patient/" in e["fullUrl"] for e in patients["entry"])
    assert entry_ids(patients).count(pid) == 4
    assert oid not in entry_ids(patients)
    observations = history(fhir, "Observation")
    assert all("/Observation/" in e["fullUrl"] for e in observations["entry"])
    assert oid in entry_ids(observations)


def test_system_history_holds_every_type(ahead: httpx.Client) -> None:
    pid, _ = make_versions(ahead)
    oid = create(ahead, observation(f"Patient/{pid}"))["id"]
    bundle = history(ahead, "")
    ids = entry_ids(bundle)
    assert ids.count(pid) == 4 and ids.count(oid) == 1
    assert ids[:5] == [oid, pid, pid, pid, pid]  # newest first: this session's writes, last one first
    assert bundle["entry"][0]["fullUrl"] == f"{base_url(ahead)}/Observation/{oid}"


def test_count_limits_the_entries_to_the_newest(ahead: httpx.Client) -> None:
    pid, _ = make_versions(ahead)
    bundle = history(ahead, f"Patient/{pid}", _count="2")
    assert [e["response"]["etag"] for e in bundle["entry"]] == ['W/"4"', 'W/"3"']
    # Bundle.total counts every version, not the page: here it is absent or 4, never 2
    assert bundle.get("total", 4) == 4
    assert history(ahead, f"Patient/{pid}", _count="4")["total"] == 4
    one = history(ahead, "", _count="1")
    assert entry_ids(one) == [pid]
    assert [e["request"]["method"] for e in history(ahead, "Patient", _count="2")["entry"]] == ["DELETE", "PUT"]


def test_since_keeps_the_versions_at_or_after_the_instant(fhir: httpx.Client) -> None:
    pid, versions = make_versions(fhir)
    since = versions[1]["meta"]["lastUpdated"]
    bundle = history(fhir, f"Patient/{pid}", _since=since)
    assert [e["response"]["etag"] for e in bundle["entry"]] == ['W/"4"', 'W/"3"', 'W/"2"']
    assert all(e["response"]["lastModified"] >= since for e in bundle["entry"])
    assert pid in entry_ids(history(fhir, "Patient", _since=since))
    future = history(fhir, f"Patient/{pid}", _since="2999-01-01T00:00:00Z")
    assert future.get("entry", []) == [] and future["total"] == 0


def test_bad_history_parameters_are_400(fhir: httpx.Client) -> None:
    assert_outcome(fhir.get("_history", params={"_since": "last tuesday"}), 400, "_since", "last tuesday")
    assert_outcome(fhir.get("_history", params={"_count": "many"}), 400, "_count", "many")
    assert_outcome(fhir.get("Patient/_history", params={"_count": "-1"}), 400, "_count")
