"""The official TypeScript client against a server with ELECTRIC_SECRET: with `?secret=` in
its URL it follows every change as without one; without it, it gets the 401 and stops."""

from __future__ import annotations

import pytest

from tests.e2e.test_ts_client import STEPS, TsShapeClient, _query, create_items, expected_rows

pytestmark = pytest.mark.e2e

SECRET = "e2e secret/+&="


@pytest.fixture
def secured(server_factory):
    return server_factory(env={"ELECTRIC_SECRET": SECRET}).start()


def test_ts_client_with_the_secret_in_its_url(secured, db):
    create_items(db)
    client = TsShapeClient(secured.url, "items", {"secret": SECRET})
    try:
        client.wait_rows(expected_rows(db, "items"), "initial snapshot")
        for label, statements in STEPS:
            with db.transaction():
                for statement in statements:
                    db.execute(statement)
            client.wait_rows(expected_rows(db, "items"), label)
        requests = [e for e in client.events if e.get("event") == "request"]
        assert requests and all(_query(e["url"]).get("secret") == SECRET for e in requests)
        assert any(_query(e["url"]).get("live") == "true" for e in requests)
        errors = [e for e in client.events
                  if e.get("event") not in ("request", "response", "update")]
        assert not errors, errors
    finally:
        client.close()


def test_ts_client_without_the_secret_gets_401(secured, db):
    create_items(db)
    client = TsShapeClient(secured.url, "items", {"secret": "wrong"})
    try:
        response = client.wait_event(lambda e: e.get("event") == "response", "first response")
        assert response["status"] == 401
        assert response["headers"]["access-control-allow-origin"]
        client.wait_event(lambda e: e.get("event") == "error" and e.get("status") == 401,
                          "the client reports the 401")
        assert client.rows is None
    finally:
        client.close()
