"""shapesync behind nginx with deploy/nginx.conf: request collapsing for clients starting the
same shape and for identical live long-polls, and correct resync through the cache after a
shape is deleted (409s are never cached)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.helpers import ShapeFollower, table_rows

pytestmark = pytest.mark.e2e


@pytest.fixture
def items(server_factory, db):
    db.execute("CREATE TABLE items (id int PRIMARY KEY, title text)")
    db.execute("INSERT INTO items SELECT i, 'item ' || i FROM generate_series(1, 50) i")
    # Small chunks, so that catching up after the snapshot takes several requests.
    return server_factory({"LOG_CHUNK_BYTES_THRESHOLD": "2000"}).start()


@pytest.fixture
def proxy(items, nginx_factory):
    return nginx_factory(items.port)


def run_all(n: int, fn) -> list:
    """``fn(i)`` in ``n`` threads released together; the results (re-raising any error)."""
    barrier = threading.Barrier(n)

    def task(i):
        barrier.wait()
        return fn(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(task, range(n)))


def test_clients_starting_the_same_shape_cause_one_upstream_request_per_chunk(items, proxy, db):
    # The shape exists and its log holds several chunks past the snapshot.
    direct = ShapeFollower(items.url, "items")
    direct.sync()
    for i in range(51, 111):
        db.execute("INSERT INTO items VALUES (%s, %s)", (i, f"item {i} " + "x" * 40))
    direct.wait_for(lambda rows: len(rows) == 110)

    expected = table_rows(db, "items")
    followers = [ShapeFollower(proxy.url, "items") for _ in range(200)]
    results = run_all(200, lambda i: followers[i].sync(timeout=30))
    assert all(rows == expected for rows in results)

    upstream = proxy.upstream_requests()
    served = {line["uri"] for line in proxy.log_lines()}
    print(f"\n200 clients: {sum(len(f.messages) > 0 for f in followers)} synced, "
          f"{len(proxy.log_lines())} requests to nginx, {len(served)} distinct URLs, "
          f"{len(upstream)} upstream requests")
    assert len(served) >= 4, served  # offset=-1 and at least three catch-up chunks
    # Exactly one upstream request per distinct URL: every other request was a cache hit or
    # waited on proxy_cache_lock for the first one.
    assert Counter(upstream) == Counter(served), Counter(upstream)
    assert len(proxy.log_lines()) == 200 * len(served)


def test_identical_live_long_polls_collapse_into_one_upstream_request(items, proxy, db):
    n = 50
    followers = [ShapeFollower(proxy.url, "items") for _ in range(n)]
    for follower in followers:
        follower.sync()
    assert len({(f.shape_id, f.offset, f.cursor) for f in followers}) == 1

    def insert_later():
        time.sleep(1.5)  # all long-polls are waiting in nginx (or upstream) by now
        db.execute("INSERT INTO items VALUES (1000, 'live')")

    writer = threading.Thread(target=insert_later)
    writer.start()
    started = time.monotonic()
    responses = run_all(n, lambda i: followers[i].request(live=True))
    elapsed = time.monotonic() - started
    writer.join()

    assert [r.status_code for r in responses] == [200] * n
    assert all(f.rows['"public"."items"/"1000"'] == {"id": "1000", "title": "live"}
               for f in followers)
    live = proxy.upstream_requests("live=true")
    cache = Counter(line["cache"] for line in proxy.log_lines() if "live=true" in line["uri"])
    print(f"\n{n} identical long-polls: {len(live)} upstream request(s), cache status {dict(cache)},"
          f" all answered in {elapsed:.2f}s")
    assert len(live) == 1, live
    assert elapsed < 10


def test_after_shape_deletion_clients_behind_the_proxy_get_409_and_resync(items, proxy, db):
    n = 20
    followers = [ShapeFollower(proxy.url, "items") for _ in range(n)]
    for follower in followers:
        follower.sync()
    old_id = followers[0].shape_id
    old_rows = dict(followers[0].rows)

    # Delete the shape (directly at the server) while all followers wait in one collapsed
    # long-poll, then change the table.
    def delete_later():
        time.sleep(1.0)
        r = httpx.delete(f"{items.url}/v1/shape/items", params={"shape_id": old_id})
        assert r.status_code == 202, r.text
        db.execute("DELETE FROM items WHERE id <= 10")
        db.execute("UPDATE items SET title = 'changed' WHERE id = 11")
        db.execute("INSERT INTO items VALUES (2000, 'after delete')")

    deleter = threading.Thread(target=delete_later)
    deleter.start()
    responses = run_all(n, lambda i: followers[i].request(live=True))
    deleter.join()
    assert [r.status_code for r in responses] == [409] * n
    new_id = responses[0].headers["electric-shape-id"]
    assert new_id != old_id
    assert all(f.shape_id == new_id and f.offset == "-1" and not f.rows for f in followers)
    print(f"\n{n} long-polls across a deletion: "
          f"{len(proxy.upstream_requests('live=true'))} upstream request(s), all got 409")

    # The 409s were not stored: asking again with the old shape id still reaches the server.
    r = httpx.get(f"{proxy.url}/v1/shape/items", params={
        "offset": "-1", "shape_id": old_id})
    assert r.status_code == 409 and r.headers["x-cache-status"] != "HIT", r.headers

    expected = table_rows(db, "items")
    results = run_all(n, lambda i: followers[i].wait_for(lambda rows: rows == expected))
    assert all(rows == expected for rows in results)
    assert all(f.shape_id == new_id for f in followers)
    print(f"{n} clients resynced: {len(proxy.upstream_requests(new_id))} upstream requests "
          f"with the new shape id")

    # A new client starting from offset=-1 without a shape id: that URL is cached for up to
    # s-maxage (1 h), so it gets the deleted shape's snapshot first (the documented caveat),
    # and its first request past the cache answers 409 and it resyncs to the current data.
    fresh = ShapeFollower(proxy.url, "items")
    first = fresh.request()
    assert first.headers["x-cache-status"] == "HIT"
    assert first.headers["electric-shape-id"] == old_id
    assert fresh.rows == old_rows
    assert fresh.wait_for(lambda rows: rows == expected, timeout=30) == expected
    assert fresh.shape_id == new_id
    statuses = [line["status"] for line in proxy.log_lines()]
    assert "409" in statuses


def test_ts_client_through_the_proxy_after_entries_expire_and_are_revalidated(
        server_factory, db, nginx_factory):
    """The official client behind the cache, with catch-up entries that expire after 1 s:
    nginx revalidates them with If-None-Match, shapesync answers 304, and the client, which
    sees the cached 200, must end up with exactly the table's rows and keep following it."""
    from tests.e2e.test_ts_client import TsShapeClient, create_items, expected_rows

    create_items(db)
    server = server_factory({"LOG_CHUNK_BYTES_THRESHOLD": "600", "CACHE_MAX_AGE": "1",
                             "CACHE_STALE_AGE": "0"}).start()
    proxy = nginx_factory(server.port)
    for i in range(100, 130):  # a log of several chunks after the snapshot
        db.execute("INSERT INTO items VALUES (%s, %s, false, %s, NULL)", (i, f"row {i}", i))

    first = TsShapeClient(proxy.url, "items")
    try:
        first.wait_rows(expected_rows(db, "items"), "first client through the proxy")
    finally:
        first.close()
    time.sleep(2.5)  # every catch-up entry is past max-age=1 (and stale-while-revalidate=0)

    second = TsShapeClient(proxy.url, "items")
    try:
        second.wait_rows(expected_rows(db, "items"), "second client, revalidated entries")
        db.execute("UPDATE items SET title = 'live through the proxy' WHERE id = 100")
        db.execute("DELETE FROM items WHERE id = 101")
        second.wait_rows(expected_rows(db, "items"), "live change through the proxy")
        errors = [e for e in second.events if e.get("event") not in ("request", "response", "update")]
        assert not errors, errors
    finally:
        second.close()
    revalidated = [line for line in proxy.log_lines() if line["cache"] == "REVALIDATED"]
    print(f"\n{len(revalidated)} responses revalidated by a 304 from shapesync")
    assert revalidated and all(line["upstream"] == "304" for line in revalidated), \
        proxy.log_lines()


def test_the_admin_api_is_not_reachable_through_the_proxy(items, proxy):
    for method, path in (("POST", "/v1/admin/database"), ("DELETE", "/v1/admin/database/x")):
        r = httpx.request(method, f"{proxy.url}{path}", json={"database_url": "postgresql://u@h/d"})
        assert r.status_code == 403, (method, path, r.status_code)
    assert proxy.upstream_requests("/v1/admin") == []
