"""Snapshot + live changes through HTTP, against a real Postgres and real replication."""

from __future__ import annotations

import httpx
import orjson

from tests.helpers import ShapeFollower, table_rows


def test_snapshot_then_live_changes_match_table(server, db):
    db.execute("CREATE TABLE items (id int PRIMARY KEY, title text, n int)")
    db.execute("INSERT INTO items SELECT g, 'row ' || g, g FROM generate_series(1, 50) g")
    follower = ShapeFollower(server.url, "items")
    assert follower.sync() == table_rows(db, "items")

    db.execute("INSERT INTO items VALUES (100, 'new', 1)")
    db.execute("UPDATE items SET title = 'changed' WHERE id = 3")
    db.execute("DELETE FROM items WHERE id = 4")
    with db.transaction():
        db.execute("UPDATE items SET id = 200 WHERE id = 5")
        db.execute("UPDATE items SET n = NULL WHERE id = 6")
    expected = table_rows(db, "items")
    assert follower.wait_for(lambda rows: rows == expected) == expected


def test_first_response_is_never_up_to_date_and_catch_up_is(server, db):
    db.execute("CREATE TABLE t (id int PRIMARY KEY)")
    r = httpx.get(f"{server.url}/v1/shape/t", params={"offset": "-1"})
    assert r.status_code == 200
    assert "electric-chunk-up-to-date" not in r.headers
    assert r.json() == []
    assert r.headers["electric-chunk-last-offset"] == "0_0"
    sid = r.headers["electric-shape-id"]
    assert r.headers["etag"] == f"{sid}:-1:0_0"
    r2 = httpx.get(f"{server.url}/v1/shape/t", params={"offset": "0_0", "shape_id": sid})
    assert r2.json() == [{"headers": {"control": "up-to-date"}}]
    assert r2.headers["electric-chunk-up-to-date"] == ""
    assert r2.headers["cache-control"] == "public, max-age=60, stale-while-revalidate=300"


def test_same_definition_same_shape_id(server, db):
    db.execute("CREATE TABLE t (id int PRIMARY KEY)")
    ids = {
        httpx.get(f"{server.url}/v1/shape/{name}", params={"offset": "-1"}).headers["electric-shape-id"]
        for name in ("t", "public.t", "T", '"t"')
    }
    assert len(ids) == 1


def test_live_request_times_out_with_204(server_factory, db):
    server = server_factory().start()
    db.execute("CREATE TABLE t (id int PRIMARY KEY)")
    follower = ShapeFollower(server.url, "t")
    follower.sync()
    # shorten: the server's timeout is 20 s; this test checks the header set on a 204
    r = follower.client.get("/v1/shape/t", params={
        "offset": follower.offset, "shape_id": follower.shape_id, "live": "true", "cursor": ""},
        timeout=30)
    assert r.status_code == 204
    assert r.headers["electric-chunk-up-to-date"] == ""
    assert r.headers["cache-control"] == "public, max-age=5, stale-while-revalidate=5"
    assert r.headers["electric-next-cursor"].isdigit()


def test_values_are_output_function_text(server, db):
    db.execute("""
        CREATE TYPE mood AS ENUM ('sad', 'happy');
        CREATE TABLE v (
            id bigint PRIMARY KEY, b bool, i2 int2, f4 float4, f8 float8, num numeric(10,3),
            t text, vc varchar(5), c char(3), u uuid, j json, jb jsonb, by bytea, d date,
            ts timestamp, tz timestamptz, tm time, ttz timetz, iv interval, arr int[],
            tarr text[], m mood, inet_col inet
        )""")
    row = """(1, true, -3, 1.5, 'NaN', 12.34, 'tab	"quote" \\ back', 'ab', 'x', 'c0d731ca-0e72-4950-9499-8db83badb051',
              '{"a": 1}', '{"b": [1, 2]}', '\\x0102ff', '2024-11-05', '2024-11-05 12:31:07.123',
              '2024-11-05 12:31:07+01', '12:31:07', '12:31:07+01', '1 year 2 months 3 days 04:05:06',
              '{{1,2},{3,4}}', '{"a b",NULL}', 'happy', '10.0.0.1')"""
    db.execute("SET TimeZone = 'Europe/Berlin'")
    db.execute(f"INSERT INTO v VALUES {row}")
    follower = ShapeFollower(server.url, "v")
    follower.sync()
    db.execute(f"INSERT INTO v VALUES {row.replace('(1,', '(2,', 1)}")
    db.execute("INSERT INTO v (id) VALUES (3)")
    db.execute("RESET TimeZone")
    expected = table_rows(db, "v")
    rows = follower.wait_for(lambda r: len(r) == 3)
    assert rows == expected
    one = rows['"public"."v"/"1"']
    assert one["b"] == "t" and one["c"] == "x  " and one["by"] == "\\x0102ff"
    assert one["tz"] == "2024-11-05 11:31:07+00"
    assert one["iv"] == "P1Y2M3DT4H5M6S"
    assert one["inet_col"] == "10.0.0.1"
    assert rows['"public"."v"/"2"'] == {**one, "id": "2"}
    assert rows['"public"."v"/"3"']["b"] is None


def test_schema_header(server, db):
    db.execute("CREATE TABLE s (id int PRIMARY KEY, name varchar(123)[], c char, n numeric(5), tm time(3))")
    r = httpx.get(f"{server.url}/v1/shape/s", params={"offset": "-1"})
    assert orjson.loads(r.headers["electric-schema"]) == {
        "id": {"type": "int4", "pk_index": 0, "not_null": True},
        "name": {"type": "varchar", "max_length": 123, "dims": 1},
        "c": {"type": "bpchar", "length": 1},
        "n": {"type": "numeric", "precision": 5, "scale": 0},
        "tm": {"type": "time", "precision": 3},
    }


def test_table_without_primary_key(server, db):
    db.execute("CREATE TABLE nopk (a int, b text)")
    db.execute("INSERT INTO nopk VALUES (1, 'x'), (2, NULL)")
    follower = ShapeFollower(server.url, "nopk")
    rows = follower.sync()
    assert set(rows) == {'"public"."nopk"/"1"/"x"', '"public"."nopk"/"2"/""'}
    db.execute("UPDATE nopk SET b = 'y' WHERE a = 1")
    db.execute("DELETE FROM nopk WHERE a = 2")
    rows = follower.wait_for(lambda r: '"public"."nopk"/"1"/"y"' in r and len(r) == 1)
    assert rows == {'"public"."nopk"/"1"/"y"': {"a": "1", "b": "y"}}


def test_composite_key_and_slash_quoting(server, db):
    db.execute("CREATE TABLE ck (a text, b int, v text, PRIMARY KEY (b, a))")
    db.execute("INSERT INTO ck VALUES ('x/y', 1, 'v')")
    rows = ShapeFollower(server.url, "ck").sync()
    assert list(rows) == ['"public"."ck"/"1"/"x//y"']
