"""Hostile or unlucky shape requests against a real server: system tables, relations that
are not tables, NUL bytes, missing privileges, tables locked by another session, and a
database that went away. The server must answer each with a clear 4xx (or a 503 with
Retry-After when trying again can help), alter nothing it should not, and stay responsive.
"""

from __future__ import annotations

import threading
import time

import httpx
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.conftest import ServerProcess, start_cluster
from tests.helpers import ShapeFollower, table_rows


def get(server, table: str, **params) -> httpx.Response:
    return httpx.get(f"{server.url}/v1/shape/{table}", params={"offset": "-1", **params},
                     timeout=30)


def published(db) -> set[str]:
    rows = db.execute("SELECT schemaname || '.' || tablename FROM pg_publication_tables").fetchall()
    return {r[0] for r in rows}


def assert_healthy(server, within: float = 1.0) -> None:
    started = time.monotonic()
    r = httpx.get(f"{server.url}/v1/health", timeout=within)
    assert r.status_code == 200 and time.monotonic() - started < within


@pytest.mark.parametrize("table", [
    "pg_catalog.pg_class", "pg_class", "information_schema.sql_features",
    "information_schema.tables", "pg_toast.pg_toast_1255",
])
def test_system_relations_are_refused_and_never_published(server, db, table):
    r = get(server, table)
    assert r.status_code == 400, r.text
    assert list(r.json()) == ["root_table"]
    assert not any(t.startswith(("pg_", "information_schema")) for t in published(db))
    assert_healthy(server)


def test_views_sequences_and_materialized_views_are_not_tables(server, db):
    db.execute("CREATE TABLE base (id int PRIMARY KEY, v text)")
    db.execute("CREATE VIEW a_view AS SELECT * FROM base")
    db.execute("CREATE MATERIALIZED VIEW a_matview AS SELECT * FROM base")
    db.execute("CREATE SEQUENCE a_seq")
    for name in ("a_view", "a_matview", "a_seq"):
        r = get(server, name)
        assert (r.status_code, r.json()) == (400, {"root_table": ["table not found"]}), name
    relreplident = db.execute(
        "SELECT relreplident FROM pg_class WHERE relname = 'base'").fetchone()[0]
    assert relreplident == "d" and published(db) == set()


@pytest.mark.parametrize("path", ["%22a%00b%22", "public.%22x%00%22", "%22x%22.%22%00%22"])
def test_nul_bytes_in_names_are_a_400(server, path):
    r = get(server, path)
    assert r.status_code == 400 and "root_table" in r.json(), r.text


def test_partitioned_tables_sync_through_their_root_and_partitions_are_refused(server, db):
    db.execute("CREATE TABLE parted (id int PRIMARY KEY, v text) PARTITION BY RANGE (id)")
    db.execute("CREATE TABLE parted_low PARTITION OF parted FOR VALUES FROM (0) TO (100)")
    db.execute("CREATE TABLE parted_high PARTITION OF parted FOR VALUES FROM (100) TO (200)")
    db.execute("INSERT INTO parted VALUES (1, 'a'), (150, 'b')")
    r = get(server, "parted_low")
    assert r.status_code == 400 and "partition" in r.json()["root_table"][0]
    follower = ShapeFollower(server.url, "parted")
    assert follower.sync() == table_rows(db, "parted")
    identities = dict(db.execute(
        "SELECT relname, relreplident FROM pg_class WHERE relname LIKE 'parted%' "
        "AND relkind IN ('r', 'p')").fetchall())
    assert set(identities.values()) == {"f"}, identities
    db.execute("INSERT INTO parted VALUES (2, 'c'), (151, 'd')")
    db.execute("UPDATE parted SET v = 'moved' WHERE id = 150")
    db.execute("DELETE FROM parted WHERE id = 1")
    expected = table_rows(db, "parted")
    assert follower.wait_for(lambda rows: rows == expected) == expected


def _role_dsn(dsn: str, role: str) -> str:
    params = conninfo_to_dict(dsn)
    params["user"] = role
    return make_conninfo("", **params)


def test_a_role_without_select_or_ownership_gets_4xx_and_prepared_tables_need_no_ddl(
        database, db, tmp_path):
    """The server runs as a role that may replicate but owns no table: a table it may not
    read is a 400; a readable table it may not alter is a 400 that says how to prepare
    it; once the owner prepared it, the shape works without any DDL by the server."""
    role = "limited_" + conninfo_to_dict(database)["dbname"]
    dbname = conninfo_to_dict(database)["dbname"]
    db.execute(f"CREATE ROLE {role} LOGIN REPLICATION")
    db.execute(f"GRANT CREATE ON DATABASE {dbname} TO {role}")
    db.execute("CREATE TABLE secret (id int PRIMARY KEY, v text)")
    db.execute("CREATE TABLE readable (id int PRIMARY KEY, v text)")
    db.execute("INSERT INTO readable VALUES (1, 'one')")
    db.execute(f"GRANT SELECT ON readable TO {role}")
    server = ServerProcess(_role_dsn(database, role), tmp_path / "storage").start()
    try:
        r = get(server, "secret")
        assert r.status_code == 400 and "permission denied" in r.json()["root_table"][0]
        r = get(server, "readable")
        assert r.status_code == 400, r.text
        message = r.json()["root_table"][0]
        assert "ALTER PUBLICATION" in message and "REPLICA IDENTITY FULL" in message
        publication = db.execute("SELECT pubname FROM pg_publication").fetchone()[0]
        db.execute(f'ALTER PUBLICATION "{publication}" ADD TABLE readable')
        db.execute("ALTER TABLE readable REPLICA IDENTITY FULL")
        follower = ShapeFollower(server.url, "readable")
        assert follower.sync() == table_rows(db, "readable")
        db.execute("INSERT INTO readable VALUES (2, 'two')")
        expected = table_rows(db, "readable")
        assert follower.wait_for(lambda rows: rows == expected) == expected
    finally:
        server.stop()


def test_a_locked_table_answers_503_without_holding_up_other_tables_or_the_app(
        server_factory, database, db):
    server = server_factory({"SHAPESYNC_DDL_LOCK_TIMEOUT": "500"}).start()
    db.execute("CREATE TABLE busy (id int PRIMARY KEY, v text)")
    db.execute("CREATE TABLE free (id int PRIMARY KEY, v text)")
    db.execute("INSERT INTO busy VALUES (1, 'a')")
    reader = psycopg.connect(database)  # idle in transaction, holding ACCESS SHARE on busy
    answers: list[httpx.Response] = []
    app_waited: list[float] = []

    def app_query() -> None:
        with psycopg.connect(database, autocommit=True) as conn:
            t0 = time.monotonic()
            conn.execute("SELECT count(*) FROM busy").fetchone()
            app_waited.append(time.monotonic() - t0)

    try:
        reader.execute("SELECT * FROM busy").fetchall()
        started = time.monotonic()
        request = threading.Thread(target=lambda: answers.append(get(server, "busy")))
        request.start()
        time.sleep(0.15)  # our lock request is queued now: the app's query lines up behind it
        app = threading.Thread(target=app_query)
        app.start()
        t0 = time.monotonic()
        assert get(server, "free").status_code == 200  # other tables meanwhile
        assert time.monotonic() - t0 < 3
        assert_healthy(server)
        request.join(10)
        app.join(10)
        assert answers[0].status_code == 503, answers[0].text
        assert answers[0].headers["retry-after"] and "locked" in answers[0].json()["message"]
        assert time.monotonic() - started < 5
        assert app_waited and app_waited[0] < 2.0, app_waited
        # retried at once: answered without another lock request while backing off
        t0 = time.monotonic()
        assert get(server, "busy").status_code == 503 and time.monotonic() - t0 < 0.3
    finally:
        reader.close()
    deadline = time.monotonic() + 15
    while (r := get(server, "busy")).status_code == 503:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert r.status_code == 200
    assert "public.busy" in published(db)


def test_too_many_snapshots_at_once_is_a_503(server_factory, database, db):
    server = server_factory({"SHAPESYNC_MAX_CONCURRENT_SNAPSHOTS": "1"}).start()
    db.execute("CREATE TABLE slow (id int PRIMARY KEY, v text)")
    db.execute("CREATE TABLE other (id int PRIMARY KEY, v text)")
    assert get(server, "slow").status_code == 200  # prepared: later shapes need no DDL
    holder = psycopg.connect(database)
    try:
        holder.execute("LOCK TABLE slow IN ACCESS EXCLUSIVE MODE")  # the next snapshot waits
        pending = threading.Thread(target=get, args=(server, "slow"), kwargs={"where": "id > 0"})
        pending.start()
        deadline = time.monotonic() + 10
        while True:  # until the server's snapshot waits for the lock
            waiting = db.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE 'COPY%'").fetchone()[0]
            if waiting or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert waiting
        r = get(server, "other")
        assert r.status_code == 503 and r.headers["retry-after"], r.text
        assert_healthy(server)
    finally:
        holder.close()
    pending.join(20)
    assert get(server, "other").status_code == 200


def test_a_database_that_went_away_is_a_503_that_names_no_host(tmp_path):
    cluster = start_cluster("shapesync-test-gone-")
    try:
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
            conn.execute("CREATE TABLE u (id int PRIMARY KEY)")
        server = ServerProcess(cluster.dsn(), tmp_path / "storage").start()
        try:
            assert get(server, "t").status_code == 200
            cluster.stop("immediate")
            for table in ("u", "t"):
                r = get(server, table, where="id > 1")
                assert r.status_code == 503, r.text
                assert r.headers["retry-after"]
                assert "127.0.0.1" not in r.text and str(cluster.port) not in r.text
            deadline = time.monotonic() + 10
            while (health := httpx.get(f"{server.url}/v1/health", timeout=5)).status_code == 200:
                assert time.monotonic() < deadline, "health never noticed the database is gone"
                time.sleep(0.1)
            assert health.status_code == 503 and health.headers["retry-after"]
        finally:
            server.stop()
    finally:
        cluster.stop("immediate")


def test_a_writer_open_longer_than_the_lock_timeout_is_waited_for_on_every_attempt(
        server_factory, database, db):
    """The table joins the publication only together with the wait for writers in flight
    (one transaction): a timed-out attempt changes nothing, so the next one waits again,
    and the writer's rows are in the snapshot, never lost."""
    server = server_factory({"SHAPESYNC_DDL_LOCK_TIMEOUT": "300"}).start()
    db.execute("CREATE TABLE w (id int PRIMARY KEY, v text)")
    db.execute("ALTER TABLE w REPLICA IDENTITY FULL")  # only the publication is missing
    writer = psycopg.connect(database)
    try:
        writer.execute("INSERT INTO w VALUES (1, 'written before the shape')")
        r = get(server, "w")
        assert r.status_code == 503 and r.headers["retry-after"], r.text
        assert "public.w" not in published(db), "a timed-out attempt changed the publication"
        r = get(server, "w")  # at once again: no new lock request while backing off
        assert r.status_code == 503
        writer.commit()
    finally:
        writer.close()
    deadline = time.monotonic() + 15
    while (r := get(server, "w")).status_code == 503:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert r.status_code == 200
    follower = ShapeFollower(server.url, "w")
    assert follower.sync() == table_rows(db, "w")
    db.execute("INSERT INTO w VALUES (2, 'after')")
    expected = table_rows(db, "w")
    assert follower.wait_for(lambda rows: rows == expected) == expected


def test_unlogged_and_row_secured_tables_and_filtered_publications_are_400(
        server_factory, database, db, tmp_path):
    server = server_factory().start()
    db.execute("CREATE UNLOGGED TABLE scratch (id int PRIMARY KEY)")
    r = get(server, "scratch")
    assert r.status_code == 400 and "unlogged" in r.json()["root_table"][0]
    db.execute("CREATE TABLE filtered (id int PRIMARY KEY, v text)")
    assert get(server, "filtered").status_code == 200  # creates the publication
    publication = db.execute("SELECT pubname FROM pg_publication").fetchone()[0]
    db.execute(f'ALTER PUBLICATION "{publication}" SET TABLE filtered WHERE (id > 10)')
    r = get(server, "filtered", where="id > 0")
    assert r.status_code == 400 and "row filter" in r.json()["root_table"][0], r.text
    role = "rls_" + conninfo_to_dict(database)["dbname"]
    db.execute(f"CREATE ROLE {role} LOGIN REPLICATION")
    db.execute(f"GRANT CREATE ON DATABASE {conninfo_to_dict(database)['dbname']} TO {role}")
    db.execute("CREATE TABLE guarded (id int PRIMARY KEY)")
    db.execute("ALTER TABLE guarded ENABLE ROW LEVEL SECURITY")
    db.execute(f"GRANT SELECT ON guarded TO {role}")
    limited = ServerProcess(_role_dsn(database, role), tmp_path / "limited",
                            {"REPLICATION_STREAM_ID": "rls"}).start()
    try:
        r = get(limited, "guarded")
        assert r.status_code == 400 and "row-level security" in r.json()["root_table"][0]
    finally:
        limited.stop()
