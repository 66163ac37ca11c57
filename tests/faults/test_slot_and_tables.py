"""Things that change behind the server's back: a table dropped and created again, a
publication dropped, a replication slot invalidated by Postgres. Shapes that can no longer
be exact are dropped (clients get 409 with a reason, never a stale 200) and new shapes work."""

from __future__ import annotations

import time

import httpx
import psycopg
import pytest

from tests.conftest import ServerProcess, start_cluster
from tests.helpers import ShapeFollower, table_rows


def resume(server, follower: ShapeFollower, table: str) -> httpx.Response:
    return httpx.get(f"{server.url}/v1/shape/{table}", timeout=30, params={
        "offset": follower.offset, "shape_id": follower.shape_id})


def wait_for_409(server, follower: ShapeFollower, table: str, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while (r := resume(server, follower, table)).status_code != 409:
        assert r.status_code == 200, r.text
        assert time.monotonic() < deadline, "the shape was never dropped"
        time.sleep(0.2)
    return r.json()[0]


def test_a_table_dropped_and_created_again_gets_new_shapes_with_its_own_rows(server, db):
    db.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
    db.execute("INSERT INTO t VALUES (1, 'old')")
    follower = ShapeFollower(server.url, "t")
    assert follower.sync() == table_rows(db, "t")
    db.execute("DROP TABLE t")
    db.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
    db.execute("INSERT INTO t VALUES (2, 'new')")
    message = wait_for_409(server, follower, "t")
    assert "dropped" in message["reason"]
    fresh = ShapeFollower(server.url, "t")
    assert fresh.sync() == table_rows(db, "t")
    db.execute("INSERT INTO t VALUES (3, 'newer')")
    expected = table_rows(db, "t")
    assert fresh.wait_for(lambda rows: rows == expected) == expected


def test_a_dropped_publication_drops_the_shapes_and_new_ones_work(server, db):
    db.execute("CREATE TABLE p (id int PRIMARY KEY, v text)")
    db.execute("INSERT INTO p VALUES (1, 'a')")
    follower = ShapeFollower(server.url, "p")
    follower.sync()
    publication = db.execute("SELECT pubname FROM pg_publication").fetchone()[0]
    db.execute(f'DROP PUBLICATION "{publication}"')
    message = wait_for_409(server, follower, "p")
    assert message["reason"]
    deadline = time.monotonic() + 20
    while True:
        fresh = ShapeFollower(server.url, "p")
        try:
            fresh.sync()
            break
        except AssertionError:
            assert time.monotonic() < deadline, "no new shape after the publication was dropped"
            time.sleep(0.5)
    db.execute("INSERT INTO p VALUES (2, 'b')")
    expected = table_rows(db, "p")
    assert fresh.wait_for(lambda rows: rows == expected, timeout=30) == expected


@pytest.mark.slow
def test_an_invalidated_slot_is_created_again_and_its_shapes_dropped(tmp_path):
    cluster = start_cluster("shapesync-test-lost-", settings={
        "max_slot_wal_keep_size": "1MB", "wal_keep_size": "0"})
    try:
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            conn.execute("CREATE TABLE s (id int PRIMARY KEY, v text)")
            conn.execute("INSERT INTO s VALUES (1, 'a')")
        server = ServerProcess(cluster.dsn(), tmp_path / "storage").start()
        follower = ShapeFollower(server.url, "s")
        follower.sync()
        server.stop()
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            for i in range(6):  # WAL beyond what the slot may keep, then removed
                conn.execute("INSERT INTO s SELECT g, repeat('x', 500) FROM "
                             "generate_series(%s::int, %s::int) g", (i * 5000 + 10, i * 5000 + 4000))
                conn.execute("SELECT pg_switch_wal()")
                conn.execute("CHECKPOINT")
            status = conn.execute("SELECT wal_status FROM pg_replication_slots").fetchone()[0]
        assert status == "lost", status
        server.start()
        r = resume(server, follower, "s")
        assert r.status_code == 409 and "slot" in r.json()[0]["reason"], r.text
        assert "invalidated" in server.logs()
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            fresh = ShapeFollower(server.url, "s")
            assert fresh.sync() == table_rows(conn, "s")
            conn.execute("INSERT INTO s VALUES (100000, 'after')")
            expected = table_rows(conn, "s")
        assert fresh.wait_for(lambda rows: rows == expected) == expected
        server.stop()
    finally:
        cluster.stop("immediate")


def test_a_second_server_on_the_same_slot_waits_and_takes_over(server, database, db, tmp_path):
    db.execute("CREATE TABLE h (id int PRIMARY KEY, v text)")
    db.execute("INSERT INTO h VALUES (1, 'a')")
    assert ShapeFollower(server.url, "h").sync()
    second = ServerProcess(database, tmp_path / "second").start(wait=False)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                health = httpx.get(f"{second.url}/v1/health", params={"database_id": "test_db"},
                                   timeout=2)
                if health.status_code == 503 and health.json()["status"] == "waiting":
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the second server never reported waiting"
            time.sleep(0.2)
        assert httpx.get(f"{server.url}/v1/health").status_code == 200
        server.kill()
        second.wait_healthy(timeout=30)
        follower = ShapeFollower(second.url, "h")
        assert follower.sync() == table_rows(db, "h")
        db.execute("INSERT INTO h VALUES (2, 'b')")
        expected = table_rows(db, "h")
        assert follower.wait_for(lambda rows: rows == expected) == expected
    finally:
        second.stop()
