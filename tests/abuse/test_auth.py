"""Authentication and the admin API against a real server: the API secret on shape and admin
requests, loopback-only admin without a secret, no CORS on /v1/admin/*, and an Add Database
aimed at a server that stalls (bounded, not holding the admin API, saying nothing about the
address). Then check_database in-process against fake servers: one that completes the startup
handshake and never answers the query, one whose error names the host. Network traffic goes
to loopback addresses only."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from shapesync.http.auth import ADMIN_LOOPBACK_ONLY, UNAUTHORIZED
from shapesync.tenants.databases import COULD_NOT_CONNECT, COULD_NOT_INSPECT, check_database
from tests.conftest import create_database, drop_database
from tests.helpers import ShapeFollower, table_rows

SECRET = "correct horse battery staple/+&=ü"
HOSTILE = {"origin": "https://evil.example"}
DENIED = {"message": UNAUTHORIZED}


def cors(response: httpx.Response) -> list[str]:
    return [k for k in response.headers if k.lower().startswith("access-control-")]


@pytest.fixture
def secured(server_factory):
    return server_factory(env={"ELECTRIC_SECRET": SECRET}).start()


@pytest.fixture
def items(db):
    db.execute("CREATE TABLE items (id int PRIMARY KEY, title text)")
    db.execute("INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 20) g")
    return db


def assert_denied(r: httpx.Response, status: int = 401, body: object = DENIED) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    if r.request.method != "HEAD":
        assert r.json() == body


def test_shape_requests_without_the_right_secret_get_401_with_cors(secured, items):
    url = f"{secured.url}/v1/shape/items"
    for params in ({"offset": "-1"}, {"offset": "-1", "secret": "wrong"},
                   {"offset": "-1", "secret": ""}, {"offset": "-1", "api_secret": "wrong"},
                   {"offset": "-1", "secret": "wrong", "api_secret": SECRET},
                   {"offset": "-1", "secret": SECRET[:-1]},
                   {"offset": "0_0", "shape_id": "x", "live": "true", "secret": "no"}):
        r = httpx.get(url, params=params, headers=HOSTILE)
        assert_denied(r)
        assert r.headers["access-control-allow-origin"] == "https://evil.example"
        assert "access-control-allow-methods" in r.headers
    assert_denied(httpx.head(url, params={"offset": "-1"}))
    r = httpx.delete(url, headers=HOSTILE)
    assert_denied(r)
    assert r.headers["access-control-allow-origin"] == "https://evil.example"
    # bad parameters are not even looked at without the secret
    assert_denied(httpx.get(url, params={"offset": "bogus"}))
    # open: health, root, preflight, unknown paths
    assert httpx.get(f"{secured.url}/v1/health").json() == {"status": "active"}
    assert httpx.get(f"{secured.url}/").status_code == 200
    r = httpx.options(url, headers={**HOSTILE, "access-control-request-method": "GET"})
    assert r.status_code == 204 and r.headers["access-control-allow-origin"] == HOSTILE["origin"]
    assert httpx.get(f"{secured.url}/v1/nothing").status_code == 404


@pytest.mark.parametrize("param", ["secret", "api_secret"])
def test_the_right_secret_syncs_as_before(secured, items, param):
    follower = ShapeFollower(secured.url, "items", {param: SECRET})
    assert follower.sync() == table_rows(items, "items")
    items.execute("UPDATE items SET title = 'changed' WHERE id = 3")
    items.execute("INSERT INTO items VALUES (21, 'new')")
    items.execute("DELETE FROM items WHERE id = 1")
    assert follower.wait_for(lambda rows: rows == table_rows(items, "items")) == \
        table_rows(items, "items")

    # the secret is no part of the shape: same shape id, etag and headers without it
    # showing up anywhere in the response
    url = f"{secured.url}/v1/shape/items"
    a = httpx.get(url, params={"offset": "-1", "secret": SECRET})
    b = httpx.get(url, params={"offset": "-1", "api_secret": SECRET, "secret": SECRET})
    assert a.status_code == b.status_code == 200
    assert a.headers["electric-shape-id"] == b.headers["electric-shape-id"] == follower.shape_id
    assert a.headers["etag"] == b.headers["etag"]
    assert a.content == b.content
    gone = httpx.get(url, params={"offset": "999999999_0", "shape_id": follower.shape_id,
                                  "secret": SECRET})
    assert gone.status_code == 409
    assert gone.headers["location"] == f"?shape_id={follower.shape_id}&offset=-1"
    for r in (a, b, gone):
        assert SECRET not in str(r.headers) and SECRET not in r.text
        assert "secret" not in r.headers.get("location", "")
    # deletion (enabled in tests) works with the secret
    r = httpx.delete(url, params={param: SECRET})
    assert r.status_code == 202
    assert SECRET not in secured.logs()


def test_admin_with_a_secret(secured, pg_cluster):
    admin = f"{secured.url}/v1/admin/database"
    name = create_database(pg_cluster)
    body = {"database_url": f"postgresql://postgres@127.0.0.1:{pg_cluster.port}/{name}",
            "database_id": "second"}
    try:
        for params in ({}, {"secret": "wrong"}, {"secret": "", "api_secret": SECRET}):
            r = httpx.post(admin, json=body, params=params, headers=HOSTILE, timeout=30)
            assert_denied(r)
            assert cors(r) == []
            assert_denied(httpx.delete(f"{admin}/second", params=params, headers=HOSTILE))
        assert httpx.get(f"{secured.url}/v1/health",
                         params={"database_id": "second"}).status_code == 404
        r = httpx.post(admin, json=body, params={"secret": SECRET}, headers=HOSTILE, timeout=30)
        assert (r.status_code, r.json()) == (200, "second") and cors(r) == []
        secured.wait_healthy(database_id="second")
        r = httpx.delete(f"{admin}/second", params={"api_secret": SECRET}, timeout=30)
        assert (r.status_code, r.json()) == (200, "second")
        r = httpx.delete(f"{admin}/second", params={"secret": SECRET})
        assert r.status_code == 404 and cors(r) == []
    finally:
        drop_database(pg_cluster, name)
    assert "API secret set" in secured.logs()


def test_admin_without_a_secret_answers_loopback_peers_only(server):
    admin = f"{server.url}/v1/admin/database"
    r = httpx.delete(f"{admin}/nope")
    assert (r.status_code, r.json()) == (404, "Database nope not found.")
    # any 127.x address is loopback (the server listens on 127.0.0.1)
    with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2")) as client:
        assert client.delete(f"{admin}/nope").status_code == 404
    # a request forwarded by a proxy on this host is not local: uvicorn takes the client
    # from X-Forwarded-For when the peer is 127.0.0.1 (nothing is sent to that address),
    # and the other forwarding headers count as well
    for header in ({"x-forwarded-for": "10.1.2.3"}, {"x-real-ip": "10.1.2.3"},
                   {"forwarded": "for=10.1.2.3"}):
        r = httpx.post(admin, json={"database_url": "postgresql://u@h/x"},
                       headers={**header, **HOSTILE})
        assert_denied(r, 403, {"message": ADMIN_LOOPBACK_ONLY})
        assert cors(r) == []
    # the shape API stays open
    assert httpx.get(f"{server.url}/v1/health").status_code == 200
    assert "answers requests from loopback addresses only" in server.logs()


def test_admin_responses_never_carry_cors_headers(server):
    """Never, with or without an Origin; with one (a web page) and no secret configured, the
    admin API does not even act: a POST without content-type needs no preflight."""
    admin = f"{server.url}/v1/admin/database"
    preflight = {"access-control-request-method": "POST",
                 "access-control-request-headers": "content-type"}
    requests = [
        ("OPTIONS", admin, {"headers": preflight}, 204),
        ("OPTIONS", f"{admin}/x", {"headers": preflight}, 204),
        ("POST", admin, {"content": b"{nope"}, 400),
        ("POST", admin, {"json": {}}, 400),
        ("POST", admin, {"content": b"a=b", "headers": {"content-type": "text/plain"}}, 415),
        ("DELETE", f"{admin}/nope", {}, 404),
        ("GET", admin, {}, 404),
        ("GET", f"{server.url}/v1/admin/other", {}, 404),
    ]
    for method, url, kw, status in requests:
        r = httpx.request(method, url, **kw)
        assert r.status_code == status and cors(r) == [], (method, url, r.status_code, r.headers)
        headers = {**kw.get("headers", {}), **HOSTILE}
        r = httpx.request(method, url, **{**kw, "headers": headers})
        assert r.status_code == 403 and cors(r) == [], (method, url, r.status_code, r.headers)
        assert "web pages" in r.json()["message"]
    # a page's "simple" POST (no content-type, no preflight) adds nothing
    r = httpx.post(admin, content=b'{"database_url": "postgresql://postgres@127.0.0.1/x"}',
                   headers={"origin": "null"})
    assert r.status_code == 403
    # rejected before routing: still no CORS
    r = httpx.get(admin, params={"x": "y" * 62_000}, headers=HOSTILE)
    assert r.status_code == 414 and cors(r) == []


@pytest.fixture
def stalled_port() -> Iterator[int]:
    """A TCP listener on 127.0.0.1 that accepts connections and never says a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except (TimeoutError, OSError):
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    listener.close()


def test_add_database_on_a_stalled_server_is_bounded_and_says_nothing(server, stalled_port):
    admin = f"{server.url}/v1/admin/database"
    body = {"database_url": f"postgresql://postgres:pw@127.0.0.1:{stalled_port}/app",
            "database_id": "stalled"}
    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        pending = pool.submit(httpx.post, admin, json=body, timeout=30)
        time.sleep(1)  # the check is under way
        # meanwhile the admin API and the shape API answer at once
        for _ in range(3):
            t0 = time.monotonic()
            r = httpx.delete(f"{admin}/unknown", timeout=5)
            assert r.status_code == 404
            assert httpx.get(f"{server.url}/v1/health", timeout=5).status_code == 200
            assert time.monotonic() - t0 < 1.0
        assert not pending.done()
        r = pending.result()
        elapsed = time.monotonic() - started
    assert r.status_code == 400, r.text
    assert 8 < elapsed < 12.5, elapsed
    message = r.json()["database_url"][0]
    assert message.startswith("could not connect")
    for leak in ("127.0.0.1", str(stalled_port), "timeout", "server", "host", "port",
                 "connection to", "pw"):
        assert leak not in r.text, (leak, r.text)
    assert httpx.get(f"{server.url}/v1/health",
                     params={"database_id": "stalled"}).status_code == 404

    # a closed port (refused at once) reads exactly the same
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    r2 = httpx.post(admin, json={**body, "database_url":
                                 f"postgresql://postgres@127.0.0.1:{closed_port}/app"}, timeout=30)
    assert r2.status_code == 400 and r2.json() == r.json()
    # the operator finds the reason in the log
    assert "database check for" in server.logs()


# -- check_database in-process, against fake servers on 127.0.0.1 ----------------------------
SSL_OR_GSS = {80877103, 80877104}


def _message(kind: bytes, payload: bytes) -> bytes:
    return kind + struct.pack("!i", len(payload) + 4) + payload


async def _startup(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """Refuse SSL/GSS, read the startup packet; False for a cancel request or EOF."""
    while True:
        try:
            length = struct.unpack("!i", await reader.readexactly(4))[0]
            body = await reader.readexactly(length - 4)
        except asyncio.IncompleteReadError:
            return False
        code = struct.unpack("!i", body[:4])[0]
        if code in SSL_OR_GSS:
            writer.write(b"N")
            await writer.drain()
            continue
        return code != 80877102  # a CancelRequest: ignore it, like a stalled server


async def _serve(handler) -> tuple[asyncio.AbstractServer, int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_a_server_that_stalls_after_the_handshake_is_given_up_in_time(caplog):
    held: list[asyncio.StreamWriter] = []
    queries: list[bytes] = []

    async def handler(reader, writer):
        held.append(writer)
        if not await _startup(reader, writer):
            return
        writer.write(_message(b"R", struct.pack("!i", 0))  # AuthenticationOk
                     + _message(b"S", b"server_version\x0017.0\x00")
                     + _message(b"S", b"client_encoding\x00UTF8\x00")
                     + _message(b"S", b"standard_conforming_strings\x00on\x00")
                     + _message(b"K", struct.pack("!ii", 4242, 99))
                     + _message(b"Z", b"I"))
        await writer.drain()
        queries.append(await reader.read(1))  # the query ('Q'): never answered
        await reader.read()

    async def main():
        server, port = await _serve(handler)
        async with server:
            started = time.monotonic()
            problem = await check_database(
                f"host=127.0.0.1 port={port} user=u dbname=d sslmode=disable", timeout=1.5)
            elapsed = time.monotonic() - started
            for writer in held:
                writer.close()
            return problem, elapsed

    problem, elapsed = asyncio.run(main())
    assert queries == [b"Q"]  # it got as far as the query
    assert problem == COULD_NOT_CONNECT
    assert elapsed < 2.5
    assert "no answer within" in caplog.text


def test_server_error_text_is_not_passed_on():
    async def handler(reader, writer):
        if await _startup(reader, writer):
            fields = (b"SFATAL\x00C28000\x00Mno pg_hba.conf entry for host \"127.0.0.1\", "
                      b"user \"u\", database \"d\"\x00\x00")
            writer.write(_message(b"E", fields))
            await writer.drain()
        writer.close()

    async def main():
        server, port = await _serve(handler)
        async with server:
            return await check_database(f"host=127.0.0.1 port={port} user=u dbname=d", timeout=5)

    problem = asyncio.run(main())
    assert problem == COULD_NOT_CONNECT
    assert "127.0.0.1" not in problem and "pg_hba" not in problem


def test_messages_name_no_address():
    assert "could not connect" in COULD_NOT_CONNECT
    for text in (COULD_NOT_CONNECT, COULD_NOT_INSPECT):
        assert not any(ch.isdigit() for ch in text)
