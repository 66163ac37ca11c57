"""HTTP protocol rules: validation bodies, 409s, caching headers, chunking, routing."""

from __future__ import annotations

import httpx
import orjson
import pytest

from tests.helpers import ShapeFollower, table_rows


@pytest.fixture
def items(server, db):
    db.execute("CREATE TABLE items (id int PRIMARY KEY, title text)")
    db.execute("INSERT INTO items VALUES (1, 'a')")
    return server


def get(server, path="/v1/shape/items", **params):
    return httpx.get(server.url + path, params=params, timeout=30)


@pytest.mark.parametrize("path,params,status,body", [
    ("/v1/shape/.invalid_shape", {"offset": "invalid"}, 400,
     {"offset": ["has invalid format"], "root_table": ["Invalid zero-length delimited identifier"]}),
    ("/v1/shape/nonexistent", {"offset": "-1"}, 400,
     {"root_table": ['Table "nonexistent" does not exist. If the table name contains capitals '
                     "or special characters you must quote it."]}),
    ("/v1/shape/items", {}, 400, {"offset": ["can't be blank"]}),
    ("/v1/shape/items", {"offset": " "}, 400, {"offset": ["can't be blank"]}),
    ("/v1/shape/items", {"offset": "-5_0"}, 400, {"offset": ["has invalid format"]}),
    ("/v1/shape/items", {"offset": "0_0"}, 400, {"shape_id": ["can't be blank when offset != -1"]}),
    ("/v1/shape/items", {"offset": "-1", "live": "true"}, 400, {"live": ["can't be true when offset == -1"]}),
    ("/v1/shape/items", {"offset": "-1", "live": ""}, 400, {"live": ["can't be true when offset == -1"]}),
    ("/v1/shape/a.b.c", {"offset": "-1"}, 400,
     {"root_table": ["Invalid relation identifier, too many delimiters: a.b.c"]}),
    ("/v1/shape/nope.items", {"offset": "-1"}, 400,
     {"root_table": ['ERROR 3F000 (invalid_schema_name) schema "nope" does not exist']}),
    ("/v1/shape/items", {"offset": "-1", "where": "test = 1"}, 400,
     {"where": ["At location 0: unknown reference test"]}),
    ("/v1/shape/items", {"offset": "-1", "where": "id IN (SELECT 1)"}, 400,
     {"where": ["At location 3: subqueries are not supported"]}),
    ("/v1/shape/items", {"offset": "-1", "where": "id"}, 400,
     {"where": ["At location 0: WHERE clause must return bool"]}),
    ("/v1/shape/items", {"offset": "-1", "columns": "title"}, 400,
     {"columns": ["Must include all primary key columns, missing: id"]}),
    ("/v1/shape/items", {"offset": "-1", "columns": "id,nope,other"}, 400,
     {"columns": ["The following columns could not be found: nope, other"]}),
    ("/v1/shape/items", {"offset": "-1", "columns": "id,title,id"}, 400,
     {"columns": ["Columns listed more than once: id"]}),
    ("/v1/shape/items", {"offset": "-1", "columns": "id, title"}, 400,
     {"columns": ["Invalid unquoted identifier contains special characters:  title"]}),
    ("/v1/shape/items", {"offset": "-1", "columns": "id,"}, 400,
     {"columns": ["Invalid zero-length delimited identifier"]}),
    ("/v1/shape/items", {"offset": "x", "columns": "title", "where": "nope"}, 400,
     {"offset": ["has invalid format"], "columns": ["Must include all primary key columns, missing: id"],
      "where": ["At location 0: unknown reference nope"]}),
    ("/v1/shape/items", {"offset": "-1", "database_id": "other"}, 404, "Database not found"),
])
def test_validation(items, path, params, status, body):
    r = get(items, path, **params)
    assert r.status_code == status
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == body
    assert r.headers["cache-control"] == "max-age=0, private, must-revalidate"


def test_views_are_not_tables(items, db):
    db.execute("CREATE VIEW v AS SELECT * FROM items")
    r = get(items, "/v1/shape/v", offset="-1")
    assert r.status_code == 400 and r.json() == {"root_table": ["table not found"]}


def test_unknown_shape_id_gets_409_with_current_id(items):
    r = get(items, offset="-1")
    sid = r.headers["electric-shape-id"]
    r = get(items, offset="0_0", shape_id="123-456")
    assert r.status_code == 409
    assert r.json() == [{"headers": {"control": "must-refetch"},
                         "reason": "no shape with this shape_id exists (it was removed, or never existed)"}]
    assert r.headers["electric-shape-id"] == sid
    assert "etag" not in r.headers and "electric-schema" not in r.headers


def test_offset_beyond_log_gets_409(items):
    sid = get(items, offset="-1").headers["electric-shape-id"]
    r = get(items, offset="99999999999_0", shape_id=sid)
    assert r.status_code == 409
    assert r.json()[0]["reason"] == "offset 99999999999_0 is not in the shape's log"


def test_deleted_shape_gets_409_and_new_id(items, db):
    follower = ShapeFollower(items.url, "items")
    follower.sync()
    old = follower.shape_id
    r = httpx.delete(f"{items.url}/v1/shape/items", params={"shape_id": old})
    assert r.status_code == 202
    r = follower.request()
    assert r.status_code == 409 and follower.shape_id != old
    assert r.json() == [{"headers": {"control": "must-refetch"}, "reason": "deleted through the API"}]
    assert follower.sync() == table_rows(db, "items")


def test_live_waiter_woken_by_deletion(items):
    follower = ShapeFollower(items.url, "items")
    follower.sync()
    import threading

    threading.Timer(0.5, lambda: httpx.delete(
        f"{items.url}/v1/shape/items", params={"shape_id": follower.shape_id})).start()
    old_id = follower.shape_id
    r = follower.client.get("/v1/shape/items", params={
        "offset": follower.offset, "shape_id": old_id, "live": "true"}, timeout=10)
    assert r.status_code == 409
    assert r.headers["electric-shape-id"] != old_id  # the successor, not the deleted shape


def test_etag_and_304(items):
    r = get(items, offset="-1")
    etag = r.headers["etag"]
    r2 = httpx.get(f"{items.url}/v1/shape/items", params={"offset": "-1"},
                   headers={"if-none-match": f'"{etag}"'})
    assert r2.status_code == 304 and r2.content == b""
    assert r2.headers["electric-shape-id"] == r.headers["electric-shape-id"]
    assert "etag" not in r2.headers
    assert r2.headers["cache-control"] == "max-age=0, private, must-revalidate"


def test_head_matches_get(items):
    get(items, offset="-1")
    g = get(items, offset="-1")
    h = httpx.head(f"{items.url}/v1/shape/items", params={"offset": "-1"})
    assert h.status_code == 200 and h.content == b""
    drop = {"x-request-id", "date", "content-length", "transfer-encoding"}
    assert {k: v for k, v in g.headers.items() if k not in drop} == {
        k: v for k, v in h.headers.items() if k not in drop}


def test_options_and_not_found(items):
    r = httpx.options(f"{items.url}/v1/shape/items",
                      headers={"access-control-request-headers": "if-none-match"})
    assert r.status_code == 204
    assert r.headers["access-control-allow-methods"] == "GET, HEAD, DELETE, OPTIONS"
    assert r.headers["access-control-max-age"] == "86400"
    assert r.headers["access-control-allow-headers"] == "if-none-match"
    assert "cache-control" not in r.headers
    r = httpx.post(f"{items.url}/v1/shape/items")
    assert r.status_code == 404 and r.text == "Not found"
    assert r.headers["access-control-allow-origin"] == "*"
    r = httpx.get(f"{items.url}/nope", headers={"origin": "https://app.example"})
    assert r.status_code == 404
    assert r.headers["access-control-allow-origin"] == "https://app.example"
    assert r.headers["access-control-allow-methods"] == "GET, HEAD"


def test_health(items):
    r = httpx.get(f"{items.url}/v1/health")
    assert r.status_code == 200 and r.json() == {"status": "active"}
    assert r.headers["cache-control"] == "no-cache, no-store, must-revalidate"


def test_chunks_by_size(server_factory, db):
    server = server_factory({"LOG_CHUNK_BYTES_THRESHOLD": "2000"}).start()
    db.execute("CREATE TABLE big (id int PRIMARY KEY, pad text)")
    follower = ShapeFollower(server.url, "big")
    follower.sync()
    db.execute("INSERT INTO big SELECT g, repeat('x', 300) FROM generate_series(1, 40) g")
    expected = table_rows(db, "big", "id")
    follower.wait_for(lambda rows: rows == expected)
    # a fresh reader pages through stable chunk URLs, each ending at a boundary
    fresh = ShapeFollower(server.url, "big")
    pages = 0
    while not fresh.up_to_date:
        r = fresh.request()
        pages += 1
        assert len(r.content) < 2000 + 800
    assert pages > 5 and fresh.rows == expected
    # every chunk response but the last lacks up-to-date and has an etag
    first = httpx.get(f"{server.url}/v1/shape/big", params={"offset": "-1"})
    assert "electric-chunk-up-to-date" not in first.headers
    assert orjson.loads(first.content)[0]["offset"] != "0_0"  # log items only (empty snapshot)


def test_cache_control_per_kind_of_request(items):
    first = get(items, offset="-1")
    assert first.headers["cache-control"] == (
        "public, max-age=604800, s-maxage=3600, stale-while-revalidate=2629746")
    assert "electric-next-cursor" not in first.headers
    sid, end = first.headers["electric-shape-id"], first.headers["electric-chunk-last-offset"]
    catch_up = get(items, offset=end, shape_id=sid)
    assert catch_up.headers["cache-control"] == "public, max-age=60, stale-while-revalidate=300"
    assert catch_up.headers["etag"] == f"{sid}:{end}:{end}"
    assert "electric-next-cursor" not in catch_up.headers


def test_live_cursor_and_its_collision_rule(items, db):
    import threading

    sid = get(items, offset="-1").headers["electric-shape-id"]
    threading.Timer(0.3, lambda: db.execute("INSERT INTO items VALUES (2, 'b')")).start()
    live = get(items, offset="0_0", shape_id=sid, live="true", cursor="")
    assert live.status_code == 200
    assert live.headers["cache-control"] == "public, max-age=5, stale-while-revalidate=5"
    assert "etag" not in live.headers
    cursor = live.headers["electric-next-cursor"]
    assert cursor.isdigit() and int(cursor) % 20 == 0
    # Asking again with the cursor just received (same 20 s bucket): a different cursor comes
    # back, so the client's next live URL differs from this one (spec 3.7).
    end = live.headers["electric-chunk-last-offset"]
    threading.Timer(0.3, lambda: db.execute("INSERT INTO items VALUES (3, 'c')")).start()
    again = get(items, offset=end, shape_id=sid, live="true", cursor=cursor)
    assert again.status_code == 200
    assert again.headers["electric-next-cursor"] != cursor


def test_live_request_with_matching_if_none_match_gets_304(items, db):
    sid = get(items, offset="-1").headers["electric-shape-id"]
    db.execute("INSERT INTO items VALUES (2, 'b')")
    live = ShapeFollower(items.url, "items")
    live.sync()  # the insert is in the log now
    end = live.offset
    # A live request from 0_0 is answered at once with the new entry: the same chunk as a
    # cached response whose ETag the client presents.
    r = httpx.get(f"{items.url}/v1/shape/items", params={
        "offset": "0_0", "shape_id": sid, "live": "true"},
        headers={"if-none-match": f'"{sid}:0_0:{end}"'}, timeout=30)
    assert r.status_code == 304 and r.content == b""
    assert r.headers["electric-chunk-last-offset"] == end
    assert "electric-next-cursor" not in r.headers
    assert r.headers["cache-control"] == "max-age=0, private, must-revalidate"


def raw_get(server, target: str | bytes) -> tuple[int, bytes]:
    """One HTTP/1.1 GET over a plain socket (httpx refuses URLs this long or this broken)."""
    import socket

    if isinstance(target, str):
        target = target.encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def test_absurdly_long_parameters_get_a_clear_4xx(items):
    status, body = raw_get(items, "/v1/shape/items?offset=-1&where=id%3D" + "1" * 62_000)
    assert (status, orjson.loads(body)) == (414, {"message": "query string longer than 61440 bytes"})
    # Past 64 KiB uvicorn's parser gives up before the app runs; still a JSON 414.
    status, body = raw_get(items, "/v1/shape/items?offset=-1&where=id%3D" + "1" * 70_000)
    assert (status, orjson.loads(body)) == (414, {"message": "request URL longer than 65535 bytes"})
    r = get(items, path="/v1/shape/" + "t" * 5000, offset="-1")
    assert r.status_code == 400 and "root_table" in r.json()
    r = get(items, offset="9" * 300 + "_0", shape_id="x")
    assert r.status_code == 400 and r.json() == {"offset": ["has invalid format"]}
    r = get(items, offset="-1", where=" OR ".join(f"id = {i}" for i in range(1500)))
    assert r.status_code == 400
    assert r.json() == {"where": ["where clause is too long (18386 characters, at most 16384)"]}
    r = get(items, offset="-1", where=" OR ".join(f"id = {i}" for i in range(1000)))
    assert r.status_code == 200 and len(r.json()) == 1


@pytest.mark.parametrize("target", [
    b"/v1/shape/it\xffems?offset=-1",
    b"/v1/shape/items?offset=-1&where=title%3D%27\xc3%27",
    b"/v1/shape/items?offset=-1&where=title%3D%27%C3%27",
    b"/v1/shape/%C3?offset=-1",
    b"/v1/shape/items?offset=-1 garbage",
])
def test_malformed_request_lines_get_a_json_4xx(items, target):
    status, body = raw_get(items, target)
    assert 400 <= status < 500, (status, body)
    assert isinstance(orjson.loads(body), dict), body


def test_departed_long_polls_leave_nothing_behind(items):
    """Clients that disconnect while waiting: their sockets are closed by the server at once
    (not after the 20 s long-poll timeout), and the server still answers others."""
    import os
    import socket
    import time

    first = get(items, offset="-1")
    sid, end = first.headers["electric-shape-id"], first.headers["electric-chunk-last-offset"]
    pid = items.proc.pid

    def fds() -> int:
        return len(os.listdir(f"/proc/{pid}/fd"))

    baseline = fds()
    request = (f"GET /v1/shape/items?offset={end}&shape_id={sid}&live=true HTTP/1.1\r\n"
               "Host: test\r\n\r\n").encode()
    socks = [socket.create_connection(("127.0.0.1", items.port)) for _ in range(200)]
    for sock in socks:
        sock.sendall(request)
    deadline = time.monotonic() + 30  # generous: accepting 200 sockets on a loaded machine
    while fds() < baseline + 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fds() >= baseline + 200
    for sock in socks:
        sock.close()
    deadline = time.monotonic() + 5
    while fds() > baseline and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fds() <= baseline, "the server kept departed long-polls' sockets"
    assert get(items, offset=end, shape_id=sid).status_code == 200
