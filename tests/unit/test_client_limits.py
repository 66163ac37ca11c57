"""http/protocol.py's client limits on an in-process uvicorn (no database): the edges the
server tests in tests/abuse do not reach, plus the settings that configure them."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import orjson
import pytest
import uvicorn

from shapesync.config import ConfigError, Settings
from shapesync.http.protocol import ClientLimits, HttpProtocol


async def _app(scope, receive, send) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/slow":
        await asyncio.sleep(1.5)
    body = orjson.dumps({"path": scope["path"]})
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
def serve() -> Iterator:
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(limits: ClientLimits) -> int:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        config = uvicorn.Config(_app, lifespan="off", log_level="warning",
                                http=HttpProtocol.with_limits(limits))
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        servers.append((server, thread))
        return sock.getsockname()[1]

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(10)


def exchange(port: int, data: bytes, responses: int = 1) -> list[tuple[int, object]]:
    """Send ``data`` at once; read until ``responses`` responses or the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        raw, out = b"", []
        while len(out) < responses:
            head, sep, rest = raw.partition(b"\r\n\r\n")
            if sep:
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                if len(rest) >= length:
                    out.append((int(head.split()[1]), orjson.loads(rest[:length])))
                    raw = rest[length:]
                    continue
            chunk = sock.recv(65536)
            if not chunk:
                break
            raw += chunk
        return out


def request(path: str, fields: bytes = b"") -> bytes:
    return b"GET " + path.encode() + b" HTTP/1.1\r\nhost: x\r\n" + fields + b"\r\n"


def test_header_limit_boundary(serve):
    port = serve(ClientLimits(max_header_bytes=2048))
    # "host: x" counts 4 + 1 + 4 = 9 bytes (name, value, ": ", CRLF).
    fits = b"x-f: " + b"a" * (2048 - 9 - 3 - 4) + b"\r\n"
    assert exchange(port, request("/", fits)) == [(200, {"path": "/"})]
    over = b"x-f: " + b"a" * (2048 - 9 - 3 - 4 + 1) + b"\r\n"
    assert exchange(port, request("/", over)) == [
        (431, {"message": "request headers larger than 2048 bytes"})]


def test_header_limit_is_per_request_when_pipelined(serve):
    """Three pipelined requests of 1.5 KiB of headers each, in one write, under a 2 KiB limit."""
    port = serve(ClientLimits(max_header_bytes=2048))
    fields = b"x-f: " + b"a" * 1500 + b"\r\n"
    data = b"".join(request(f"/{i}", fields) for i in range(3))
    assert exchange(port, data, 3) == [(200, {"path": f"/{i}"}) for i in range(3)]


def test_header_limit_across_reads(serve):
    """One header value sent in pieces: rejected once the pieces pass the limit."""
    port = serve(ClientLimits(max_header_bytes=4096))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nx-v: ")
        for _ in range(10):
            try:
                sock.sendall(b"b" * 1000)
            except OSError:
                break
            time.sleep(0.05)
        raw = sock.recv(65536)
    assert raw.startswith(b"HTTP/1.1 431 ")


def test_url_over_64_kib_is_414_before_the_head_ends(serve):
    port = serve(ClientLimits())
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /" + b"u" * 70_000)  # no end of line: rejected on length alone
        raw = sock.recv(65536)
    assert raw.startswith(b"HTTP/1.1 414 ")
    assert raw.endswith(b'{"message":"request URL longer than 65535 bytes"}')


def test_pipelined_head_waits_behind_a_slow_response(serve):
    """A pipelined head that ends after the head timeout, while the response before it is
    still in progress (1.5 s), is served, not answered 408: its deadline is extended while
    it waits its turn."""
    port = serve(ClientLimits(header_timeout=0.5))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request("/slow") + b"GET /after HTTP/1.1\r\n")
        time.sleep(1)
        sock.sendall(b"host: x\r\n\r\n")
        raw = b""
        while raw.count(b"HTTP/1.1 200 ") < 2 and (chunk := sock.recv(65536)):
            raw += chunk
    assert raw.count(b"HTTP/1.1 200 ") == 2 and raw.endswith(b'{"path":"/after"}'), raw


def test_head_timeout_answers_408(serve):
    port = serve(ClientLimits(header_timeout=0.3))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nhost")
        started = time.monotonic()
        raw = sock.recv(65536)
        assert 0.25 < time.monotonic() - started < 1.5
        assert sock.recv(65536) == b"", "the server shuts its side after the answer"
    assert raw.startswith(b"HTTP/1.1 408 ")
    assert raw.endswith(b'{"message":"request headers not received within 0.3 seconds"}')


def test_settings_from_env():
    s = Settings.from_env({})
    assert (s.header_timeout, s.max_header_bytes, s.send_timeout, s.max_connections) == (30, 32768, 30, 0)
    s = Settings.from_env({"SHAPESYNC_HEADER_TIMEOUT": "2.5", "SHAPESYNC_MAX_HEADER_BYTES": "8192",
                           "SHAPESYNC_SEND_TIMEOUT": "0", "SHAPESYNC_MAX_CONNECTIONS": "1000"})
    assert (s.header_timeout, s.max_header_bytes, s.send_timeout, s.max_connections) == (2.5, 8192, 0, 1000)
    for env in ({"SHAPESYNC_HEADER_TIMEOUT": "soon"}, {"SHAPESYNC_SEND_TIMEOUT": "-1"},
                {"SHAPESYNC_SEND_TIMEOUT": "nan"}, {"SHAPESYNC_MAX_HEADER_BYTES": "100"},
                {"SHAPESYNC_MAX_CONNECTIONS": "-5"}):
        with pytest.raises(ConfigError):
            Settings.from_env(env)
