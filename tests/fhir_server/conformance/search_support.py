"""Helpers for the search conformance tests (R4 search.html): a client bound to one seeded session that
asserts on searchset Bundles. Tests name resources by the ids they were given, and assert exact result sets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

__all__ = ["Params", "SearchSession", "SessionFactory", "link"]

Params = dict[str, str] | list[tuple[str, str]] | None


class SearchSession:
    """An HTTP client bound to one session's FHIR base, with helpers that assert on searchset Bundles."""

    def __init__(self, origin: str, session_id: str, base: str):
        self.origin = origin
        self.session_id = session_id
        self.base = base
        self.http = httpx.Client(base_url=base + "/", headers={"Accept": "application/fhir+json"}, timeout=30)

    def get(self, path: str, params: Params = None, **kwargs: Any) -> httpx.Response:
        return self.http.get(path, params=params, **kwargs)

    def search(self, path: str, params: Params = None, **kwargs: Any) -> dict[str, Any]:
        """One page of a search; it must succeed with a searchset Bundle."""
        response = self.get(path, params, **kwargs)
        assert response.status_code == 200, response.text
        bundle: dict[str, Any] = response.json()
        assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
        return bundle

    def ids(self, path: str, params: Params = None) -> set[str]:
        """The ids of every match of a search, following ``next`` links to the end."""
        return set(self.match_ids(path, params))

    def match_ids(self, path: str, params: Params = None) -> list[str]:
        """Ids of every match in page order, following ``next``; a resource on two pages fails the test."""
        bundle = self.search(path, params)
        found: list[str] = []
        for _ in range(100):
            found += [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]
            following = link(bundle, "next")
            if following is None:
                break
            bundle = self.search(following)
        assert len(found) == len(set(found)), f"a resource came back twice: {found}"
        return found

    def error(self, path: str, params: Params = None, status: int = 400, **kwargs: Any) -> dict[str, Any]:
        """A search that must fail with ``status`` and an OperationOutcome that says why."""
        response = self.get(path, params, **kwargs)
        assert response.status_code == status, response.text
        outcome: dict[str, Any] = response.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["severity"] in ("error", "fatal")
        assert outcome["issue"][0].get("diagnostics")
        return outcome

    def put_all(self, resources: list[dict[str, Any]]) -> None:
        """Store ``resources`` (each with its id) in one transaction."""
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "fullUrl": f"{self.base}/{r['resourceType']}/{r['id']}",
                    "resource": r,
                    "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
                }
                for r in resources
            ],
        }
        response = self.http.post("", json=bundle)
        assert response.status_code == 200, response.text
        statuses = [e["response"]["status"] for e in response.json()["entry"]]
        assert all(s.startswith("201") for s in statuses), statuses

    def delete(self, path: str) -> None:
        response = self.http.delete(path)
        assert response.status_code in (200, 204), response.text

    @staticmethod
    def link(bundle: dict[str, Any], relation: str) -> str | None:
        """The URL of a Bundle link, or None."""
        return link(bundle, relation)


def link(bundle: dict[str, Any], relation: str) -> str | None:
    urls = [item["url"] for item in bundle.get("link", []) if item["relation"] == relation]
    return urls[0] if urls else None


# new_session(resources=None, now=None): a fresh session seeded with ``resources`` in one transaction
SessionFactory = Callable[..., SearchSession]
