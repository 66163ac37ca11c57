"""Several databases in one server (spec 2, 11.4-11.5): Add / Remove Database, database_id
resolution, isolation, persistence across kill -9, and no password in logs or responses.

The server's default database lives in the session cluster; added ones live in a second
cluster started for this module and in another database of the session cluster (so two
databases share one Postgres cluster and must not share a slot)."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from shapesync.embedded_pg import EmbeddedPostgres
from shapesync.pg.session import session_conninfo
from tests.conftest import create_database, drop_database, start_cluster
from tests.helpers import ShapeFollower, table_rows

MULTIPLE = ("Database ID was not provided and there are multiple databases. Please specify a "
            "database ID using the `database_id` query parameter.")


@pytest.fixture(scope="module")
def cluster_b() -> Iterator[EmbeddedPostgres]:
    cluster = start_cluster("shapesync-test-b-")
    yield cluster
    cluster.stop("immediate")


def url_of(cluster: EmbeddedPostgres, dbname: str, password: str | None = None) -> str:
    auth = f"postgres:{password}" if password else "postgres"
    return f"postgresql://{auth}@127.0.0.1:{cluster.port}/{dbname}"


@pytest.fixture
def extra_databases(pg_cluster, cluster_b) -> Iterator[dict[str, tuple[EmbeddedPostgres, str]]]:
    """Two more databases: "b" in the second cluster, "c" in the session cluster."""
    made = {"b": (cluster_b, create_database(cluster_b)),
            "c": (pg_cluster, create_database(pg_cluster))}
    yield made
    for cluster, name in made.values():
        drop_database(cluster, name)


def connect(cluster: EmbeddedPostgres, dbname: str) -> psycopg.Connection:
    return psycopg.connect(session_conninfo(cluster.dsn(dbname)), autocommit=True)


def add(server, body: dict | None = None, **kw) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/admin/database", json=body, timeout=30, **kw)


def slots(cluster: EmbeddedPostgres) -> dict[str, str]:
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        return dict(conn.execute(
            "SELECT slot_name, database FROM pg_replication_slots").fetchall())


@pytest.mark.parametrize("body,expected", [
    (None, {"database_url": ["can't be blank"]}),
    ({"database_url": ""}, {"database_url": ["can't be blank"]}),
    ({"database_url": 5}, {"database_url": ["is invalid"]}),
    ({"database_url": "mysql://u@h/db"}, {"database_url": ['has invalid URL scheme: "mysql"']}),
    ({"database_url": "postgresql:///db"}, {"database_url": ["missing host"]}),
    ({"database_url": "postgresql://h:5432/db"}, {"database_url": ["has invalid or missing username"]}),
    ({"database_url": "postgresql://u@h/db?sslmode=bogus"},
     {"database_url": ['has invalid "sslmode" value: "bogus"']}),
    ({"database_url": "postgresql://u@h/db?sslmode=verify-full"},
     {"database_url": ['has unsupported "sslmode" value "verify-full". Consider using the '
                       "DATABASE_REQUIRE_SSL configuration option"]}),
    ({"database_url": "postgresql://u@h/db?replication=database"},
     {"database_url": ['has unsupported "replication" query option. Electric opens both a '
                       "replication connection and regular connections to Postgres as needed"]}),
    ({"database_url": "postgresql://u@h/db?zeta=1&alpha=2"},
     {"database_url": ['has unsupported query options: "alpha", "zeta"']}),
    ({"DATABASE_URL": "postgresql://u@h/db", "database_id": "../etc"},
     {"database_id": ["must be 1 to 64 characters: letters, digits, '_', '-' or '.', "
                      "not starting with '.' or '-'"]}),
    ({"database_url": "postgresql://u@h/db", "database_use_ipv6": "maybe"},
     {"database_use_ipv6": ["is invalid"]}),
    ({"database_url": "postgresql://postgres@127.0.0.1:1/x", "database_id": "x"},
     "could not connect"),
    ({"database_url": "postgresql://nobody_here@{A}/postgres", "database_id": "x"},
     "could not connect"),
    ({"database_url": "postgresql://weak@{A}/postgres", "database_id": "x"},
     "names a role without the REPLICATION attribute"),
    ({"database_url": "postgresql://postgres@{A}/{default}", "database_id": "x"},
     "The database 127.0.0.1:{port}/{default} is already in use by another tenant."),
    ({"database_url": "postgresql://postgres@{A}/postgres", "database_id": "test_db"},
     "Database test_db already exists."),
])
def test_add_database_rejects_bad_requests_with_clear_400s(server, pg_cluster, database, db,
                                                         body, expected):
    default = psycopg.conninfo.conninfo_to_dict(database)["dbname"]
    with psycopg.connect(pg_cluster.dsn(), autocommit=True) as conn:
        conn.execute("DO $$ BEGIN CREATE ROLE weak LOGIN; "
                     "EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    if body is not None:
        body = {k: v.format(A=f"127.0.0.1:{pg_cluster.port}", default=default)
                if isinstance(v, str) else v for k, v in body.items()}
    r = add(server, body)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/json")
    if isinstance(expected, dict):
        assert r.json() == expected
    elif expected == "could not connect" or expected.startswith("names a role"):
        assert list(r.json()) == ["database_url"]
        assert r.json()["database_url"][0].startswith(expected), r.json()
    else:
        assert r.json() == expected.format(port=pg_cluster.port, default=default)
    health = httpx.get(f"{server.url}/v1/health")  # still exactly one database
    assert health.status_code == 200


def test_add_database_needs_a_json_body(server):
    r = httpx.post(f"{server.url}/v1/admin/database", content=b"database_url=x",
                   headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415 and "JSON" in r.json()["message"]
    r = httpx.post(f"{server.url}/v1/admin/database", content=b"{nope",
                   headers={"content-type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["message"]


def test_several_databases_add_sync_remove_restart(server, db, pg_cluster, extra_databases,
                                                   tmp_path):
    (cluster_b, name_b), (cluster_c, name_c) = extra_databases["b"], extra_databases["c"]
    secret = "hunter2-" + os.urandom(4).hex()
    # the seed's upper-case keys, and the reference's lower-case ones
    r = add(server, {"DATABASE_URL": url_of(cluster_b, name_b, secret), "database_id": "b",
                     "DATABASE_USE_IPV6": False})
    assert (r.status_code, r.json()) == (200, "b"), r.text
    r = add(server, {"database_url": url_of(cluster_c, name_c)})
    assert r.status_code == 200, r.text
    c_id = r.json()
    assert isinstance(c_id, str) and len(c_id) == 36  # generated (a UUID) when not given
    assert secret not in r.text
    server.wait_healthy(database_id="b")
    server.wait_healthy(database_id=c_id)

    # database_id is now required, and an unknown one is a 404
    r = httpx.get(f"{server.url}/v1/shape/items", params={"offset": "-1"})
    assert (r.status_code, r.json()) == (400, MULTIPLE)
    r = httpx.get(f"{server.url}/v1/shape/items", params={"offset": "-1", "database_id": "zz"})
    assert (r.status_code, r.json()) == (404, "Database not found")
    assert httpx.get(f"{server.url}/v1/health").status_code == 400

    conns = {"test_db": db, "b": connect(cluster_b, name_b), c_id: connect(cluster_c, name_c)}
    followers = {}
    for database_id, conn in conns.items():
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, title text)")
        conn.execute("INSERT INTO items VALUES (1, %s)", (f"from {database_id}",))
        followers[database_id] = ShapeFollower(server.url, "items", {"database_id": database_id})
        assert followers[database_id].sync() == table_rows(conn, "items")
    for database_id, conn in conns.items():
        conn.execute("INSERT INTO items VALUES (2, %s)", (f"two from {database_id}",))
    for database_id, follower in followers.items():
        assert follower.wait_for(lambda rows, c=conns[database_id]: rows == table_rows(c, "items"))

    # two databases in one cluster: distinct slots, each in its own database
    slots_a = slots(pg_cluster)
    default_name = psycopg.conninfo.conninfo_to_dict(server.dsn)["dbname"]
    assert sorted(slots_a.values()).count(default_name) == 1
    assert sorted(slots_a.values()).count(name_c) == 1
    assert list(slots(cluster_b).values()).count(name_b) == 1

    # remove c while clients long-poll on b and c: c's waiter gets 404, b keeps flowing
    outcomes = {}

    def long_poll(database_id):
        follower = followers[database_id]
        outcomes[database_id] = follower.client.get("/v1/shape/items", params={
            "offset": follower.offset, "shape_id": follower.shape_id, "live": "true",
            "database_id": database_id}, timeout=30)

    pollers = [threading.Thread(target=long_poll, args=(d,)) for d in ("b", c_id)]
    for t in pollers:
        t.start()
    import time
    time.sleep(0.5)
    r = httpx.delete(f"{server.url}/v1/admin/database/{c_id}", timeout=30)
    assert (r.status_code, r.json()) == (200, c_id)
    conns["b"].execute("INSERT INTO items VALUES (3, 'three from b')")
    for t in pollers:
        t.join(30)
    assert (outcomes[c_id].status_code, outcomes[c_id].json()) == (404, "Database not found")
    assert outcomes["b"].status_code == 200
    assert followers["b"].wait_for(lambda rows: rows == table_rows(conns["b"], "items"))
    r = httpx.get(f"{server.url}/v1/shape/items", params={"offset": "-1", "database_id": c_id})
    assert (r.status_code, r.json()) == (404, "Database not found")
    assert name_c not in slots(pg_cluster).values(), "the removed database's slot is left"
    with connect(cluster_c, name_c) as conn_c:
        assert conn_c.execute("SELECT count(*) FROM pg_publication").fetchone()[0] == 0
    assert not (server.storage / "shapes" / c_id).exists()
    r = httpx.delete(f"{server.url}/v1/admin/database/{c_id}")
    assert (r.status_code, r.json()) == (404, f"Database {c_id} not found.")

    # the list of databases is private (it holds the password) and survives kill -9
    stored = server.storage / "databases.json"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    ids = {d: f.shape_id for d, f in followers.items() if d != c_id}
    server.kill()
    conns["b"].execute("UPDATE items SET title = 'while down' WHERE id = 1")
    db.execute("DELETE FROM items WHERE id = 2")
    server.start()
    server.wait_healthy(database_id="b")
    for database_id in ("test_db", "b"):
        follower = followers[database_id]
        rows = follower.wait_for(lambda r, c=conns[database_id]: r == table_rows(c, "items"))
        assert rows == table_rows(conns[database_id], "items")
        assert follower.shape_id == ids[database_id], "the shape did not resume with its id"
    r = httpx.get(f"{server.url}/v1/shape/items", params={"offset": "-1", "database_id": c_id})
    assert r.status_code == 404

    # removal by query parameter (the seed's form); then one database is left again
    r = httpx.delete(f"{server.url}/v1/admin/database", params={"database_id": "b"}, timeout=30)
    assert (r.status_code, r.json()) == (200, "b")
    assert name_b not in slots(cluster_b).values()
    assert httpx.get(f"{server.url}/v1/health").json() == {"status": "active"}

    logs = server.logs()
    assert secret not in logs and "hunter2" not in logs
    for conn in (conns["b"], conns[c_id]):
        conn.close()


def test_a_database_that_goes_down_does_not_stall_the_others(server, db, tmp_path):
    """Database "b" lives in its own cluster, which is stopped: the default database keeps
    serving live changes at once; when b's Postgres is back, b resumes."""
    cluster = start_cluster("shapesync-test-down-")
    try:
        with connect(cluster, "postgres") as conn_b:
            conn_b.execute("CREATE TABLE items (id int PRIMARY KEY, title text)")
            conn_b.execute("INSERT INTO items VALUES (1, 'b')")
        assert add(server, {"database_url": url_of(cluster, "postgres"),
                            "database_id": "b"}).status_code == 200
        server.wait_healthy(database_id="b")
        follower_b = ShapeFollower(server.url, "items", {"database_id": "b"})
        follower_b.sync()

        db.execute("CREATE TABLE items (id int PRIMARY KEY, title text)")
        follower = ShapeFollower(server.url, "items", {"database_id": "test_db"})
        follower.sync()

        cluster.stop("immediate")
        import time
        for i in range(3):
            started = time.monotonic()
            db.execute("INSERT INTO items VALUES (%s, 'default')", (10 + i,))
            follower.wait_for(lambda rows, n=i + 1: len(rows) == n, timeout=10)
            assert time.monotonic() - started < 2, "the default database was held up"
        health = httpx.get(f"{server.url}/v1/health", params={"database_id": "b"})
        assert (health.status_code, health.json()) == (503, {"status": "starting"})

        cluster.start()
        with connect(cluster, "postgres") as conn_b:
            conn_b.execute("INSERT INTO items VALUES (2, 'b again')")
            expected = table_rows(conn_b, "items")
        server.wait_healthy(database_id="b", timeout=60)
        assert follower_b.wait_for(lambda rows: rows == expected, timeout=30) == expected
    finally:
        httpx.delete(f"{server.url}/v1/admin/database/b", timeout=30)
        cluster.stop("immediate")


@pytest.mark.slow
def test_add_database_refuses_a_server_without_logical_replication(server):
    cluster = start_cluster("shapesync-test-replica-", settings={"wal_level": "replica"})
    try:
        r = add(server, {"database_url": url_of(cluster, "postgres"), "database_id": "r"})
        assert r.status_code == 400
        assert r.json() == {"database_url": [
            "has wal_level = replica; logical replication needs wal_level = logical "
            "(ALTER SYSTEM SET wal_level = logical, then restart Postgres)"]}
        assert httpx.get(f"{server.url}/v1/health",
                         params={"database_id": "r"}).status_code == 404
    finally:
        cluster.stop("immediate")


@pytest.mark.slow
def test_removing_a_database_whose_postgres_is_down(server):
    """Removal still completes (the database is gone from the server and its shape logs are
    deleted); the slot that could not be dropped is named in a warning."""
    cluster = start_cluster("shapesync-test-gone-")
    try:
        with connect(cluster, "postgres") as conn:
            conn.execute("CREATE TABLE items (id int PRIMARY KEY, title text)")
        assert add(server, {"database_url": url_of(cluster, "postgres"),
                            "database_id": "gone"}).status_code == 200
        server.wait_healthy(database_id="gone")
        ShapeFollower(server.url, "items", {"database_id": "gone"}).sync()
        assert (server.storage / "shapes" / "gone").exists()
        cluster.stop("immediate")

        r = httpx.delete(f"{server.url}/v1/admin/database/gone", timeout=30)
        assert (r.status_code, r.json()) == (200, "gone")
        assert not (server.storage / "shapes" / "gone").exists()
        assert httpx.get(f"{server.url}/v1/health", params={"database_id": "gone"}).status_code == 404
        assert "were not dropped" in server.logs()
        # restarted, the server does not bring it back
        server.stop()
        server.start()
        assert httpx.get(f"{server.url}/v1/health", params={"database_id": "gone"}).status_code == 404
    finally:
        cluster.stop("immediate")


# -- requests in flight while their database is removed (in-process, to control timing) --

async def _service_with_table(database: str, storage: Path):
    """shapesync in this process, serving ``database`` as "a", with an ``items`` table."""
    import asyncio

    from shapesync.app import Service
    from shapesync.config import Settings

    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, v text)")
    service = Service(Settings(database_url=database, database_id="a", storage_dir=storage))
    await service.start()
    tenant = service.tenants["a"]
    await asyncio.wait_for(tenant._prepared.wait(), 10)
    return service, tenant


def test_a_request_in_flight_during_removal_gets_404_and_opens_nothing(database, tmp_path):
    import asyncio

    from shapesync.http.messages import Request

    async def scenario():
        service, tenant = await _service_with_table(database, tmp_path)
        await tenant._catalog_lock.acquire()  # another request's catalog query in flight
        request = Request("GET", ["v1", "shape", "items"],
                          {"offset": ["-1"], "database_id": ["a"]}, {})
        pending = asyncio.create_task(service.api.get_shape(request, "items"))
        await asyncio.sleep(0.05)  # it resolved database "a" and waits for the catalog
        assert await service.databases.remove_database("a")
        tenant._catalog_lock.release()
        response = await pending
        reopened = tenant._catalog is not None and not tenant._catalog.closed
        await service.stop()
        return response, reopened

    response, reopened = asyncio.run(scenario())
    assert (response.status, response.body) == (404, b'"Database not found"')
    assert not reopened, "the removed database's catalog connection was opened again"


def test_a_catch_up_in_flight_during_removal_never_reads_reused_descriptors(database, tmp_path):
    """The shape's log fds are closed by the removal and their numbers reused by other
    files: the request must get 404, never those files' bytes."""
    import asyncio

    from shapesync.http.messages import Request

    async def scenario():
        service, tenant = await _service_with_table(database, tmp_path)
        first = await service.api.get_shape(
            Request("GET", [], {"offset": ["-1"], "database_id": ["a"]}, {}), "items")
        await first.body.aclose()
        shape_id = first.headers["electric-shape-id"]
        with psycopg.connect(database, autocommit=True) as conn:
            conn.execute("INSERT INTO items VALUES (1, 'mine')")
        shape = tenant.shape_by_id(shape_id)
        for _ in range(200):
            if shape.storage.last_offset.key:
                break
            await asyncio.sleep(0.05)
        tenant._tables.clear()  # as after a Relation message: the next request reloads
        await tenant._catalog_lock.acquire()
        request = Request("GET", [], {"offset": ["0_0"], "shape_id": [shape_id],
                                      "database_id": ["a"]}, {})
        pending = asyncio.create_task(service.api.get_shape(request, "items"))
        await asyncio.sleep(0.05)
        assert await service.databases.remove_database("a")
        other = tmp_path / "other.json"
        other.write_bytes(b',{"value":{"secret":"of another database"}}' * 4)
        fds = [os.open(other, os.O_RDONLY) for _ in range(8)]
        tenant._catalog_lock.release()
        try:
            response = await pending
        finally:
            for fd in fds:
                os.close(fd)
            await service.stop()
        return response

    response = asyncio.run(scenario())
    assert (response.status, response.body) == (404, b'"Database not found"')
