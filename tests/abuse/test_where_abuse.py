"""Hostile where clauses against a real server: each one is answered at once (a 400 naming
the problem, or a 200 when it is legitimately fine), the server stays healthy while and
after they are sent, and a clause accepted with a costly per-row expression cannot stall
replication (a row that would take huge work is simply not in the shape).
"""

from __future__ import annotations

import threading
import time

import httpx
import psycopg
import pytest

from tests.conftest import ServerProcess
from tests.helpers import ShapeFollower

FAST = 1.0  # seconds: "well under a second" for an answer, and for /v1/health


def nest(fmt: str, inner: str, n: int) -> str:
    for _ in range(n):
        inner = fmt.format(inner)
    return inner


# (clause, expected status, a fragment of the 400's message)
HOSTILE = [
    (nest("replace({}, 'a', 'aaaaaaaa')", "'aaaaaaaa'", 9) + " = title",
     400, "replace() result exceeds 1 MiB"),
    ("title = replace('" + "a" * 4000 + "', 'a', '" + "a" * 4000 + "')",
     400, "replace() result exceeds 1 MiB"),
    (nest("replace({}, 'a', 'aaaaaaaa')", "'aaaa'", 6) + " || 'x' = title",
     400, "|| result exceeds 1 MiB"),
    ("'" + "a" * 60 + "' LIKE '%a%a%a%a%a%a%a%b' OR title = 'x'", 200, None),
    ("'" + "a" * 3000 + "' LIKE '" + "%a" * 1500 + "b' OR title = 'x'", 200, None),
    ("title LIKE '" + "%a" * 2000 + "b'", 200, None),
    (nest("replace({}, 'a', 'aaaaaaaa')", "'aaaa'", 6) + " LIKE '%" + "_" * 2000 + "b%'",
     400, "exceeds its work limit"),
    ("title = " + nest("lower({})", nest("replace({}, 'a', 'aaaaaaaa')", "'aaaa'", 6), 60),
     400, "exceeds its work limit"),
    ("n = 1e5000::numeric / 3", 200, None),
    ("n = 1e131071 * 10", 400, "value overflows numeric format"),
    ("n = 1e131072", 400, "value overflows numeric format"),
    ("n = " + "+".join(["(1e130000::numeric/7)"] * 40), 400, "exceeds its work limit"),
    (nest("abs({})", "id", 500) + " = 1", 400, "nested too deeply"),
    ("NOT " * 1000 + "true", 400, "nested too deeply"),
    ("id = 1" + "+1" * 6000, 400, "too complex"),
    ("id IN (" + ",".join(["1"] * 3000) + ")", 200, None),
    ("'{" + ",".join(["1"] * 3000) + "}'::numeric[] @> '{" + ",".join(["2"] * 3000)
     + "}'::numeric[]", 400, "exceeds its work limit"),
    ("created_at AT TIME ZONE '" + "A" * 3000 + "' IS NULL", 400, "time zone"),
]


@pytest.fixture
def items(db: psycopg.Connection) -> str:
    db.execute("CREATE TABLE items (id int PRIMARY KEY, title text, n numeric, "
               "created_at timestamptz)")
    db.execute("INSERT INTO items VALUES (1, 'one', 1, now())")
    return "items"


def shape(url: str, table: str, where: str) -> tuple[httpx.Response, float]:
    t0 = time.monotonic()
    r = httpx.get(f"{url}/v1/shape/{table}", params={"offset": "-1", "where": where},
                  timeout=30)
    return r, time.monotonic() - t0


def health(url: str) -> float:
    t0 = time.monotonic()
    r = httpx.get(f"{url}/v1/health", params={"database_id": "test_db"}, timeout=10)
    elapsed = time.monotonic() - t0
    assert r.status_code in (200, 202), r.text
    return elapsed


def test_hostile_clauses_answered_at_once(server: ServerProcess, items: str):
    stop = threading.Event()
    slowest: list[float] = []

    def probe() -> None:  # /v1/health while the clauses are sent
        while not stop.is_set():
            slowest.append(health(server.url))
            time.sleep(0.02)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        for _round in range(2):
            for clause, status, fragment in HOSTILE:
                r, elapsed = shape(server.url, items, clause)
                assert r.status_code == status, (clause[:80], r.status_code, r.text[:300])
                assert elapsed < FAST, (clause[:80], elapsed)
                if status == 400:
                    body = r.json()
                    assert fragment in body["where"][0], (clause[:80], body)
    finally:
        stop.set()
        prober.join()
    assert slowest and max(slowest) < FAST, max(slowest)
    assert health(server.url) < FAST


def test_costly_rows_do_not_stall_replication(server: ServerProcess, db: psycopg.Connection,
                                              items: str):
    """``title LIKE '%a_..._b%'`` is fine on ordinary rows; on a 4 MB title its work is
    over the per-row budget, so that row is not in the shape, and the next ordinary
    change arrives at once."""
    clause = "title LIKE '%a" + "_" * 40 + "b%' OR (title || title) LIKE 'zz%'"
    follower = ShapeFollower(server.url, items, {"where": clause})
    follower.sync()
    assert follower.rows == {}
    db.execute("INSERT INTO items VALUES (2, %s, 2, now())", ("a" * 4_000_000,))
    db.execute("INSERT INTO items VALUES (3, %s, 3, now())", ("zz" + "q" * 700_000,))
    t0 = time.monotonic()
    db.execute("INSERT INTO items VALUES (4, %s, 4, now())", ("xa" + "c" * 40 + "bx",))
    deadline = t0 + 20
    while not any(k.endswith('/"4"') for k in follower.rows):
        assert time.monotonic() < deadline, follower.messages
        follower.request(live=True)
    assert time.monotonic() - t0 < 5
    assert sorted(follower.rows) == ['"public"."items"/"4"']
    assert health(server.url) < FAST
