"""The access rules (http/auth.py) and how the ASGI app applies them, in-process: no
server, no network (the non-loopback peers below are only values in a fake ASGI scope)."""

from __future__ import annotations

import asyncio
from urllib.parse import unquote, urlencode

import orjson
import pytest

from shapesync.http.admin import AdminApi
from shapesync.http.api import ShapeApi
from shapesync.http.asgi import App
from shapesync.http.auth import (
    ADMIN_LOOPBACK_ONLY,
    ADMIN_NO_BROWSERS,
    UNAUTHORIZED,
    Auth,
    is_loopback,
    presented_secret,
    secret_matches,
)
from shapesync.http.messages import Request
from shapesync.tenants.databases import StoredDatabase


@pytest.mark.parametrize("query,presented", [
    ({}, None),
    ({"secret": ["s"]}, "s"),
    ({"api_secret": ["s"]}, "s"),
    ({"secret": ["a"], "api_secret": ["s"]}, "a"),  # secret alone decides when present
    ({"secret": [""], "api_secret": ["s"]}, ""),    # even when empty
    ({"secret": ["a", "b"]}, "b"),                   # the last value, like every parameter
    ({"Secret": ["s"]}, None),                       # names are case-sensitive
])
def test_which_parameter_presents_the_secret(query, presented):
    assert presented_secret(query) == presented


@pytest.mark.parametrize("query,ok", [
    ({"secret": ["s3cret"]}, True),
    ({"api_secret": ["s3cret"]}, True),
    ({"secret": ["wrong"], "api_secret": ["s3cret"]}, False),
    ({"secret": ["s3cret"], "api_secret": ["wrong"]}, True),
    ({"secret": [""]}, False),
    ({"secret": ["s3cre"]}, False),
    ({"secret": ["s3cret "]}, False),
    ({"secret": ["S3CRET"]}, False),
    ({}, False),
    ({"offset": ["-1"]}, False),
])
def test_secret_matching(query, ok):
    assert secret_matches(query, "s3cret") is ok


def test_non_ascii_secrets_compare_as_utf8():
    assert secret_matches({"secret": ["pässwörd"]}, "pässwörd")
    assert not secret_matches({"secret": ["passwort"]}, "pässwörd")


@pytest.mark.parametrize("client,ok", [
    (("127.0.0.1", 5000), True),
    (("127.0.0.2", 5000), True),
    (("127.255.255.254", 1), True),
    (("::1", 5000), True),
    (("::ffff:127.0.0.1", 5000), True),
    (("10.1.2.3", 1234), False),
    (("192.168.0.1", 1234), False),
    (("::ffff:10.1.2.3", 1234), False),
    (("fe80::1%eth0", 1234), False),
    (("0.0.0.0", 1234), False),
    (("localhost", 1234), False),  # a name is not an address
    (("", 1234), False),
    (None, False),                 # a Unix socket / unknown peer
    ((), False),
])
def test_loopback_peers(client, ok):
    assert is_loopback(client) is ok


def request(method="GET", query=None, headers=None) -> Request:
    return Request(method, ["v1", "shape", "items"], query or {}, headers or {})


def test_shape_rules():
    assert Auth(None).check_shape(request()) is None
    auth = Auth("s")
    denied = auth.check_shape(request())
    assert denied is not None and denied.status == 401
    assert orjson.loads(denied.body) == {"message": UNAUTHORIZED}
    assert auth.check_shape(request("OPTIONS")) is None
    assert auth.check_shape(request("DELETE", {"secret": ["s"]})) is None
    assert auth.check_shape(request("HEAD", {"api_secret": ["s"]})) is None
    assert Auth("").secret is None  # an empty secret is no secret


def test_admin_rules():
    open_auth = Auth(None)
    assert open_auth.check_admin(request("POST"), ("127.0.0.1", 1)) is None
    denied = open_auth.check_admin(request("POST"), ("10.1.2.3", 1))
    assert denied is not None and denied.status == 403
    assert orjson.loads(denied.body) == {"message": ADMIN_LOOPBACK_ONLY}
    # through a proxy on this host: a loopback peer, but not a local user
    for header in ("x-forwarded-for", "forwarded", "x-real-ip"):
        proxied = request("POST", headers={header: ["203.0.113.9"]})
        assert open_auth.check_admin(proxied, ("127.0.0.1", 1)).status == 403
    from_page = request("POST", headers={"origin": ["https://evil.example"]})
    denied = open_auth.check_admin(from_page, ("127.0.0.1", 1))
    assert denied.status == 403 and orjson.loads(denied.body) == {"message": ADMIN_NO_BROWSERS}
    auth = Auth("s")
    assert auth.check_admin(request("POST"), ("127.0.0.1", 1)).status == 401
    with_secret = request("POST", {"secret": ["s"]}, {"origin": ["https://a.example"]})
    assert auth.check_admin(with_secret, ("127.0.0.1", 1)) is None
    assert auth.check_admin(request("POST", {"secret": ["s"]}), ("10.1.2.3", 1)) is None
    assert auth.check_admin(request("POST", {"api_secret": ["s"]}), None) is None


# -- the ASGI app ---------------------------------------------------------------------------
class FakeDatabases:
    def __init__(self) -> None:
        self.added: list[StoredDatabase] = []

    async def add_database(self, stored: StoredDatabase) -> None:
        self.added.append(stored)

    async def remove_database(self, database_id: str) -> bool:
        return False


def call(app: App, method: str, path: str, query: dict | None = None, body: bytes = b"",
         headers: dict | None = None, client=("127.0.0.1", 40000)):
    """(status, headers, body) of one request through the ASGI app."""
    scope = {"type": "http", "method": method, "path": unquote(path), "raw_path": path.encode(),
             "query_string": query if isinstance(query, bytes) else urlencode(query or {}).encode(),
             "client": client,
             "headers": [(k.encode(), v.encode()) for k, v in (headers or {}).items()]}
    sent: list[dict] = []
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive():
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start = sent[0]
    response_headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], response_headers, b"".join(m.get("body", b"") for m in sent[1:])


def make_app(secret: str | None) -> tuple[App, FakeDatabases]:
    databases = FakeDatabases()
    return App(ShapeApi({}), AdminApi(databases), Auth(secret)), databases


HOSTILE = {"origin": "https://evil.example"}
ADD_BODY = orjson.dumps({"database_url": "postgresql://u@db.invalid/x", "database_id": "x"})


def cors(headers: dict) -> list[str]:
    return [k for k in headers if k.startswith("access-control-")]


def test_admin_from_a_non_loopback_peer_is_forbidden_without_a_secret():
    app, databases = make_app(None)
    for method, path, body in (("POST", "/v1/admin/database", ADD_BODY),
                               ("DELETE", "/v1/admin/database/x", b""),
                               ("OPTIONS", "/v1/admin/database", b""),
                               ("GET", "/v1/admin/other", b"")):
        status, headers, text = call(app, method, path, body=body, headers=HOSTILE,
                                     client=("10.1.2.3", 1234))
        assert status == 403, (method, path)
        assert orjson.loads(text) == {"message": ADMIN_LOOPBACK_ONLY}
        assert cors(headers) == [] and headers["content-type"].startswith("application/json")
    assert databases.added == []
    # a web page in a browser on this host: loopback, but an Origin header
    for origin in (HOSTILE, {"origin": "null"}, {"origin": "http://127.0.0.1:3000"}):
        status, headers, text = call(app, "POST", "/v1/admin/database", body=ADD_BODY,
                                     headers=origin, client=("127.0.0.1", 1234))
        assert (status, orjson.loads(text)) == (403, {"message": ADMIN_NO_BROWSERS})
        assert cors(headers) == []
    assert databases.added == []
    status, headers, text = call(app, "POST", "/v1/admin/database", body=ADD_BODY,
                                 client=("127.0.0.2", 1234))
    assert (status, orjson.loads(text)) == (200, "x") and cors(headers) == []
    assert [d.id for d in databases.added] == ["x"]
    # percent-encoded spellings of the path are the same path
    status, headers, _ = call(app, "DELETE", "/v1/%61dmin/database/x", client=("10.1.2.3", 1))
    assert status == 403 and cors(headers) == []


def test_admin_with_a_secret_needs_it_from_everyone():
    app, databases = make_app("s3cret")
    for client in (("127.0.0.1", 1), ("10.1.2.3", 1234)):
        status, headers, text = call(app, "POST", "/v1/admin/database", body=ADD_BODY,
                                     client=client, headers=HOSTILE)
        assert status == 401 and orjson.loads(text) == {"message": UNAUTHORIZED}
        assert cors(headers) == []
    status, _, _ = call(app, "POST", "/v1/admin/database", {"secret": "wrong", "api_secret":
                        "s3cret"}, body=ADD_BODY)
    assert status == 401
    status, headers, text = call(app, "POST", "/v1/admin/database", {"secret": "s3cret"},
                                 body=ADD_BODY, client=("10.1.2.3", 1234), headers=HOSTILE)
    assert (status, orjson.loads(text)) == (200, "x") and cors(headers) == []
    status, headers, text = call(app, "DELETE", "/v1/admin/database/nope",
                                 {"api_secret": "s3cret"}, headers=HOSTILE)
    assert status == 404 and cors(headers) == []


def test_admin_preflight_and_errors_carry_no_cors_headers():
    app, _ = make_app("s")
    preflight = {**HOSTILE, "access-control-request-method": "POST",
                 "access-control-request-headers": "content-type"}
    status, headers, _ = call(app, "OPTIONS", "/v1/admin/database", {"secret": "s"},
                              headers=preflight)
    assert status == 204 and cors(headers) == []
    status, headers, _ = call(app, "OPTIONS", "/v1/admin/database", headers=preflight)
    assert status == 401 and cors(headers) == []
    for method, path, body in (("POST", "/v1/admin/database", b"{nope"),
                               ("POST", "/v1/admin/database", b"x" * (65 * 1024)),
                               ("GET", "/v1/admin/database", b""),
                               ("GET", "/v1/admin", b"")):
        status, headers, _ = call(app, method, path, {"secret": "s"}, body=body, headers=HOSTILE)
        assert status in (400, 404, 413) and cors(headers) == [], (method, path, status)
    status, headers, _ = call(app, "GET", "/v1/admin/database", b"x=%ff",
                              headers=HOSTILE)
    assert cors(headers) == []


def test_shape_requests_need_the_secret_and_keep_cors():
    app, _ = make_app("s3cret")
    for method in ("GET", "HEAD", "DELETE"):
        status, headers, text = call(app, method, "/v1/shape/items", {"offset": "-1"},
                                     headers=HOSTILE, client=("10.1.2.3", 1))
        assert status == 401, method
        assert headers["access-control-allow-origin"] == "https://evil.example"
        assert headers["content-type"].startswith("application/json")
        if method != "HEAD":
            assert orjson.loads(text) == {"message": UNAUTHORIZED}
    # with the secret it reaches the shape API (no database here: 404 Database not found)
    status, _, text = call(app, "GET", "/v1/shape/items", {"offset": "-1", "secret": "s3cret"})
    assert (status, orjson.loads(text)) == (404, "Database not found")
    # open: preflight, health, root, unknown paths
    assert call(app, "OPTIONS", "/v1/shape/items", headers=HOSTILE)[0] == 204
    assert call(app, "GET", "/v1/health")[0] == 404  # no database, but not 401
    assert call(app, "GET", "/")[0] == 200
    assert call(app, "GET", "/v1/nothing")[0] == 404
    assert call(app, "GET", "/v1/shape")[0] == 404


def test_without_a_secret_shape_requests_are_open():
    app, _ = make_app(None)
    status, headers, _ = call(app, "GET", "/v1/shape/items", {"offset": "-1"},
                              client=("10.1.2.3", 1), headers=HOSTILE)
    assert status == 404 and headers["access-control-allow-origin"] == "https://evil.example"


# -- Add Database: network checks outside the admin lock ------------------------------------
class FakeTenant:
    def __init__(self, database_id: str, dsn: str, settings, default: bool = True,
                 snapshot_slots=None) -> None:
        self.id, self.dsn = database_id, dsn

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def remove(self) -> list[str]:
        return []


def test_add_database_checks_outside_the_admin_lock(tmp_path, monkeypatch):
    from shapesync.config import Settings
    from shapesync.tenants import service as service_module
    from shapesync.tenants.databases import DatabaseRejected

    release = asyncio.Event()
    checking: list[str] = []

    async def slow_check(dsn: str, timeout: float = 10) -> str | None:
        checking.append(dsn)
        await release.wait()
        return None

    monkeypatch.setattr(service_module, "check_database", slow_check)
    monkeypatch.setattr(service_module, "Tenant", FakeTenant)

    async def main():
        service = service_module.TenantService(Settings(storage_dir=tmp_path))
        first = asyncio.ensure_future(service.add_database(
            StoredDatabase("x", "postgresql://u@db.invalid/a")))
        same_id = asyncio.ensure_future(service.add_database(
            StoredDatabase("x", "postgresql://u@db.invalid/b")))
        same_db = asyncio.ensure_future(service.add_database(
            StoredDatabase("y", "postgresql://u@db.invalid/a")))
        while len(checking) < 3:
            await asyncio.sleep(0)
        # all three checks are under way: the admin API still answers at once
        assert await asyncio.wait_for(service.remove_database("nope"), 0.5) is False
        release.set()
        results = await asyncio.gather(first, same_id, same_db, return_exceptions=True)
        return service, results

    service, results = asyncio.run(main())
    assert results[0] is None
    assert isinstance(results[1], DatabaseRejected)
    assert results[1].body == "Database x already exists."
    assert isinstance(results[2], DatabaseRejected)
    assert results[2].body == "The database db.invalid:5432/a is already in use by another tenant."
    assert list(service.tenants) == ["x"]
    assert [d.id for d in service.store.load()] == ["x"]
