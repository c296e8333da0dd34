"""Sessions (DESIGN.md §3): each episode's copy-on-write view with its own clock and an exact write log.

The tests that load base data or write to the default session use a private server, so that the shared test
server's population stays as the other tests expect it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pytest
from fhir_sandbox.fhir_server.settings import ServerSettings
from fhir_sandbox.server import LocalServer

from .rest_support import (
    JSON_PATCH,
    SYSTEM,
    assert_outcome,
    create,
    observation,
    patient,
    read,
    search_ids,
    session_url,
    write_log,
)

NOW = "2021-03-04T05:06:07+00:00"


@pytest.fixture(scope="module")
def private_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    database = tmp_path_factory.mktemp("sessions") / "fhir.db"
    with LocalServer(ServerSettings(database=str(database))) as server:
        yield server


SessionFactory = Callable[..., tuple[dict[str, Any], httpx.Client]]


@pytest.fixture
def admin(live_server: LocalServer) -> Iterator[httpx.Client]:
    """A client for the session admin API of the shared server; deletes the sessions created through it."""
    made: list[str] = []

    def remember(response: httpx.Response) -> None:
        if response.request.method == "POST" and response.url.path == "/sessions" and response.status_code == 201:
            response.read()
            made.append(response.json()["id"])

    with httpx.Client(base_url=live_server.url, timeout=30, verify=False) as client:
        client.event_hooks["response"] = [remember]
        yield client
        for session_id in made:
            client.delete(f"/sessions/{session_id}")


@pytest.fixture
def new_session(admin: httpx.Client) -> Iterator[SessionFactory]:
    """Create a session (body fields as keywords); returns its description and a FHIR client bound to it."""
    with ExitStack() as clients:

        def make(**body: Any) -> tuple[dict[str, Any], httpx.Client]:
            response = admin.post("/sessions", json=body)
            assert response.status_code == 201, response.text
            info = response.json()
            return info, clients.enter_context(fhir_client(info["fhir_base_url"]))

        yield make


def fhir_client(base: str) -> httpx.Client:
    return httpx.Client(base_url=base + "/", timeout=30, verify=False)


# -- creating and describing sessions -----------------------------------------------------------------------


def test_a_session_is_created_with_its_clock_label_and_base(admin: httpx.Client, live_server: LocalServer) -> None:
    session_id = f"s-{uuid.uuid4().hex[:10]}"
    response = admin.post("/sessions", json={"id": session_id, "now": NOW, "label": "scenario-7"})
    assert response.status_code == 201
    info = response.json()
    assert info["id"] == session_id and info["label"] == "scenario-7"
    assert datetime.fromisoformat(info["now"]) == datetime.fromisoformat(NOW)
    assert info["fhir_base_url"] == f"{live_server.url}/sessions/{session_id}/fhir"
    assert response.headers["location"] == f"{live_server.url}/sessions/{session_id}"
    assert admin.get(f"/sessions/{session_id}").json() == info
    assert session_id in [s["id"] for s in admin.get("/sessions").json()]


def test_a_session_without_an_id_gets_one(new_session: SessionFactory) -> None:
    first, _ = new_session()
    second, _ = new_session()
    assert first["id"] and first["id"] != second["id"]


def test_bad_session_requests_are_refused_with_an_outcome(admin: httpx.Client, new_session: SessionFactory) -> None:
    assert_outcome(admin.post("/sessions", json={"now": "2021-03-04T05:06:07"}), 400, "time zone")
    assert_outcome(admin.post("/sessions", json={"now": "half past nine"}), 400, "now")
    assert_outcome(admin.post("/sessions", json={"id": "no/slashes"}), 400, "no/slashes")
    info, _ = new_session()
    assert_outcome(admin.post("/sessions", json={"id": info["id"]}), 409, info["id"])


def test_an_unknown_session_is_404_everywhere(admin: httpx.Client) -> None:
    for method, path in [
        ("GET", "/sessions/no-such-session"),
        ("DELETE", "/sessions/no-such-session"),
        ("GET", "/sessions/no-such-session/writes"),
        ("GET", "/sessions/no-such-session/fhir/metadata"),
        ("GET", "/sessions/no-such-session/fhir/Patient"),
        ("POST", "/sessions/no-such-session/fhir/Patient"),
    ]:
        body = patient("x") if method == "POST" else None
        assert_outcome(admin.request(method, path, json=body), 404, "no-such-session")


def test_the_default_session_cannot_be_deleted(admin: httpx.Client) -> None:
    assert_outcome(admin.delete("/sessions/default"), 405, "default")
    assert admin.get("/fhir/metadata").status_code == 200


# -- the session clock ----------------------------------------------------------------------------------------


def test_writes_are_stamped_with_the_session_clock(new_session: SessionFactory) -> None:
    _, fhir = new_session(now=NOW)
    start = datetime.fromisoformat(NOW)
    response = fhir.post("Patient", json=patient("clock"))
    assert response.status_code == 201
    stamped = datetime.fromisoformat(response.json()["meta"]["lastUpdated"])
    assert start <= stamped < start + timedelta(minutes=5)
    assert parsedate_to_datetime(response.headers["last-modified"]) == stamped.replace(microsecond=0)
    [entry] = write_log(fhir)
    assert start <= datetime.fromisoformat(entry["at"]) < start + timedelta(minutes=5)
    # the clock runs on from ``now``: a later write is stamped later
    later = create(fhir, patient("clock-2"))
    assert datetime.fromisoformat(later["meta"]["lastUpdated"]) >= stamped


def test_searches_and_history_see_the_session_clock(new_session: SessionFactory) -> None:
    _, fhir = new_session(now=NOW)
    pid = create(fhir, patient("clock-3"))["id"]
    assert search_ids(fhir, "Patient", _lastUpdated="ge2021-03-04", identifier=f"{SYSTEM}|clock-3") == [pid]
    assert search_ids(fhir, "Patient", _lastUpdated="ge2021-03-05", identifier=f"{SYSTEM}|clock-3") == []
    entries = fhir.get(f"Patient/{pid}/_history", params={"_since": "2021-03-04T00:00:00Z"}).json()["entry"]
    assert len(entries) == 1
    assert fhir.get(f"Patient/{pid}/_history", params={"_since": "2021-03-05T00:00:00Z"}).json()["total"] == 0


# -- the write log ---------------------------------------------------------------------------------------------


def test_the_write_log_lists_every_write_in_order_with_its_request(fhir: httpx.Client) -> None:
    sent = patient("log", gender="male")
    pid = create(fhir, sent)["id"]
    update = {"resourceType": "Patient", "id": pid, "gender": "female"}
    assert fhir.put(f"Patient/{pid}", json=update).status_code == 200
    operations = [{"op": "add", "path": "/active", "value": True}]
    patched = fhir.patch(f"Patient/{pid}", json=operations, headers={"Content-Type": JSON_PATCH})
    assert patched.status_code == 200
    assert fhir.put("Patient/log-2", json=patient("log-2", id="log-2")).status_code == 201
    assert fhir.delete(f"Patient/{pid}").status_code == 200
    # none of these change anything, so none is logged
    assert fhir.post("Patient", json=patient("log", gender=7)).status_code == 400
    assert fhir.put(f"Patient/{pid}", json=update, headers={"If-Match": 'W/"1"'}).status_code == 412
    assert fhir.delete("Patient/never-was").status_code == 200
    assert fhir.get(f"Patient/{pid}/_history").status_code == 200

    log = write_log(fhir)
    assert [(e["method"], e["id"], e["version"], e["status"]) for e in log] == [
        ("POST", pid, 1, 201),
        ("PUT", pid, 2, 200),
        ("PATCH", pid, 3, 200),
        ("PUT", "log-2", 1, 201),
        ("DELETE", pid, 4, 200),
    ]
    assert [e["url"] for e in log] == ["Patient", f"Patient/{pid}", f"Patient/{pid}", "Patient/log-2", f"Patient/{pid}"]
    assert all(e["type"] == "Patient" for e in log)
    assert [e["seq"] for e in log] == sorted(e["seq"] for e in log)
    assert [e["at"] for e in log] == sorted(e["at"] for e in log)
    assert log[0]["request"]["gender"] == "male" and log[0]["request"]["identifier"] == sent["identifier"]
    assert log[1]["request"] == update
    assert log[2]["request"] == operations
    assert log[4]["request"] is None


def test_the_write_log_of_a_conditional_write_names_what_it_did(fhir: httpx.Client) -> None:
    pid = create(fhir, patient("log-3"))["id"]
    response = fhir.put("Patient", params={"identifier": f"{SYSTEM}|log-3"}, json=patient("log-3", active=True))
    assert response.status_code == 200
    entry = write_log(fhir)[-1]
    assert (entry["method"], entry["id"], entry["version"]) == ("PUT", pid, 2)
    assert "identifier=" in entry["url"]


# -- isolation ---------------------------------------------------------------------------------------------------


def test_sessions_do_not_see_each_others_writes(new_session: SessionFactory, fhir: httpx.Client) -> None:
    _, other = new_session()
    mine = create(fhir, patient("iso", gender="male"))
    obs = create(fhir, observation(f"Patient/{mine['id']}"))
    assert_outcome(other.get(f"Patient/{mine['id']}"), 404)
    assert search_ids(other, "Patient", identifier=f"{SYSTEM}|iso") == []
    assert search_ids(other, "Observation", subject=f"Patient/{mine['id']}") == []
    assert_outcome(other.get(f"Patient/{mine['id']}/_history"), 404)
    history_ids = [e["fullUrl"].rsplit("/", 1)[-1] for e in other.get("_history").json().get("entry", [])]
    assert mine["id"] not in history_ids and obs["id"] not in history_ids
    assert write_log(other) == []
    # the same id written in both sessions is two independent resources
    assert other.put("Patient/shared", json=patient("iso-b", id="shared", gender="female")).status_code == 201
    assert fhir.put("Patient/shared", json=patient("iso-a", id="shared", gender="male")).status_code == 201
    assert read(other, "Patient/shared")["gender"] == "female"
    assert read(fhir, "Patient/shared")["gender"] == "male"
    assert read(fhir, "Patient/shared")["meta"]["versionId"] == "1"
    assert other.delete("Patient/shared").status_code == 200
    assert read(fhir, "Patient/shared")["gender"] == "male"


def test_the_default_session_does_not_see_sessions(admin: httpx.Client, fhir: httpx.Client) -> None:
    mine = create(fhir, patient("iso-default"))
    assert_outcome(admin.get(f"/fhir/Patient/{mine['id']}"), 404)


def test_deleting_a_session_removes_its_writes_but_not_the_base_or_default_data(private_server: LocalServer) -> None:
    tag = uuid.uuid4().hex[:8]
    base_patient = patient(f"base-{tag}", id=f"base-{tag}", gender="male")
    private_server.repository.bulk_load([dict(base_patient)])
    with ExitStack() as clients:
        admin = clients.enter_context(httpx.Client(base_url=private_server.url, timeout=30, verify=False))

        def client(base: str) -> httpx.Client:
            return clients.enter_context(fhir_client(base))

        default = client(f"{private_server.url}/fhir")
        kept_default = create(default, patient(f"default-{tag}"))
        session = admin.post("/sessions", json={"id": f"doomed-{tag}"}).json()
        doomed = client(session["fhir_base_url"])
        survivor = client(admin.post("/sessions", json={"id": f"survivor-{tag}"}).json()["fhir_base_url"])

        # the session sees the base population, not the default session's writes
        assert read(doomed, f"Patient/base-{tag}")["gender"] == "male"
        assert_outcome(doomed.get(f"Patient/{kept_default['id']}"), 404)
        # its writes shadow the base copy-on-write: an update, a delete, a create
        changed = {**read(doomed, f"Patient/base-{tag}"), "gender": "female"}
        assert doomed.put(f"Patient/base-{tag}", json=changed).status_code == 200
        own = create(doomed, patient(f"own-{tag}"))
        assert doomed.delete(f"Patient/{own['id']}").status_code == 200
        assert read(doomed, f"Patient/base-{tag}")["meta"]["versionId"] == "2"
        # ... which nobody else sees
        assert read(default, f"Patient/base-{tag}")["gender"] == "male"
        assert read(survivor, f"Patient/base-{tag}")["meta"]["versionId"] == "1"
        kept_survivor = create(survivor, patient(f"survivor-{tag}"))

        assert admin.delete(f"/sessions/{session['id']}").status_code == 204
        assert_outcome(admin.get(f"/sessions/{session['id']}"), 404)
        assert_outcome(admin.get(f"/sessions/{session['id']}/writes"), 404)
        assert_outcome(doomed.get(f"Patient/base-{tag}"), 404, session["id"])
        assert session["id"] not in [s["id"] for s in admin.get("/sessions").json()]

        base_now = read(default, f"Patient/base-{tag}")
        assert base_now["gender"] == "male" and base_now["meta"]["versionId"] == "1"
        assert read(default, f"Patient/{kept_default['id']}") == kept_default
        assert read(survivor, f"Patient/{kept_survivor['id']}") == kept_survivor
        assert len(write_log(survivor)) == 1
        fresh = client(admin.post("/sessions", json={}).json()["fhir_base_url"])
        assert read(fresh, f"Patient/base-{tag}")["meta"]["versionId"] == "1"
        assert search_ids(fresh, "Patient", identifier=f"{SYSTEM}|base-{tag}") == [f"base-{tag}"]
        assert search_ids(fresh, "Patient", gender="female", identifier=f"{SYSTEM}|base-{tag}") == []
        # the session id can be used again, and starts empty
        again = admin.post("/sessions", json={"id": session["id"]})
        assert again.status_code == 201
        reborn = client(again.json()["fhir_base_url"])
        assert write_log(reborn) == []
        assert read(reborn, f"Patient/base-{tag}")["gender"] == "male"


def test_session_url_helper_matches_the_admin_api(fhir: httpx.Client, session_base: str) -> None:
    """The write-log helper these tests rely on reads the same session the ``fhir`` client writes to."""
    assert session_url(fhir) + "/fhir" == session_base
    create(fhir, patient("helper"))
    assert len(write_log(fhir)) == 1
