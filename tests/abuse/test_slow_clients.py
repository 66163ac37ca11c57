"""Slow and hostile clients against a real server, over raw loopback sockets.

Slow-loris (heads that never finish), oversized heads, clients that stop reading their
response, and more connections than allowed: each gets a JSON answer or is cut off after
its timeout, while /v1/health keeps answering and the server's memory and descriptors come
back. Timeouts are set low through the environment so that each test takes seconds.

The last tests run http/protocol.py in an in-process uvicorn with a trivial app (no
database), for edges a real server makes slow to reach: exact limits, pipelining.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import uvicorn

from shapesync.http.protocol import ClientLimits, HttpProtocol

HEAD_TIMEOUT = 2.0
LINGER = 2.0  # http/protocol.py LINGER_SECONDS


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def wait_fds(pid: int, at_most: int, timeout: float) -> bool:
    """Until the server has at most ``at_most`` open descriptors; whether it got there."""
    deadline = time.monotonic() + timeout
    while open_fds(pid) > at_most:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def connect(port: int, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:  # before connect, so the window starts small
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    return sock


def read_all(sock: socket.socket, timeout: float = 10) -> bytes:
    """Everything until the server closes (a reset after some bytes counts as closed)."""
    sock.settimeout(timeout)
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def parse_response(raw: bytes) -> tuple[int, dict[str, str], object]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers["content-length"])
    assert len(body) >= length, raw[:300]
    return int(lines[0].split()[1]), headers, orjson.loads(body[:length])


def read_response(sock: socket.socket) -> bytes:
    """One response on a kept-alive connection (by its content-length)."""
    raw = b""
    while b"\r\n\r\n" not in raw:
        raw += sock.recv(65536) or b"EOF"
        assert not raw.endswith(b"EOF"), raw
    head = raw.partition(b"\r\n\r\n")[0].lower()
    length = int(head.split(b"content-length:")[1].split(b"\r\n")[0])
    while len(raw.partition(b"\r\n\r\n")[2]) < length:
        raw += sock.recv(65536)
    return raw


def get(port: int, path: str = "/v1/health", sock: socket.socket | None = None,
        extra: bytes = b"") -> tuple[int, dict[str, str], object]:
    """One request; on ``sock`` (kept open) or a new connection (read until closed)."""
    if sock is not None:
        sock.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nhost: x\r\n" + extra + b"\r\n")
        return parse_response(read_response(sock))
    with connect(port) as own:
        own.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nhost: x\r\n" + extra
                    + b"connection: close\r\n\r\n")
        return parse_response(read_all(own))


class HealthProbe:
    """/v1/health every 100 ms in a thread; the slowest answer it saw."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.worst = 0.0
        self.failures: list[str] = []
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    status = client.get(f"{self.url}/v1/health").status_code
                    if status != 200:
                        self.failures.append(f"status {status}")
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                self.worst = max(self.worst, time.monotonic() - started)
                self.count += 1
                self._stop.wait(0.1)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)


@pytest.fixture
def limited(server_factory):
    return server_factory({
        "SHAPESYNC_HEADER_TIMEOUT": str(HEAD_TIMEOUT),
        "SHAPESYNC_SEND_TIMEOUT": "3",
        "SHAPESYNC_MAX_CONNECTIONS": "1000",  # above what these tests open
        "LOG_CHUNK_BYTES_THRESHOLD": str(64 * 1024 * 1024),
    }).start()


def test_slow_loris_heads_get_408_and_are_closed(limited):
    """300 connections trickle a head that never ends, 20 never send a byte: health stays
    fast; after the head timeout each trickler gets a JSON 408 and every socket is closed."""
    pid = limited.proc.pid
    fds_before = open_fds(pid)
    with HealthProbe(limited.url) as probe:
        lorises = [connect(limited.port) for _ in range(300)]
        silent = [connect(limited.port) for _ in range(20)]
        for sock in lorises:
            sock.sendall(b"GET /v1/health HTTP/1.1\r\nhost: x\r\n")
        time.sleep(HEAD_TIMEOUT / 2)
        for sock in lorises:
            sock.sendall(b"x-slow: 1\r\n")  # progress does not extend the deadline
        answers = [read_all(sock, timeout=HEAD_TIMEOUT + LINGER + 5) for sock in lorises]
        silents = [read_all(sock, timeout=HEAD_TIMEOUT + LINGER + 5) for sock in silent]
    for sock in lorises + silent:
        sock.close()
    assert wait_fds(pid, fds_before + 2, LINGER + 1), "the server kept slow-loris sockets open"
    print(f"slow-loris: {probe.count} health checks, slowest {probe.worst * 1000:.0f} ms")
    assert probe.count > 10 and not probe.failures, probe.failures
    assert probe.worst < 1.0, f"health took {probe.worst:.2f} s during the slow-loris"
    for raw in answers:
        status, headers, body = parse_response(raw)
        assert (status, headers["connection"], headers["content-type"]) == (408, "close", "application/json")
        assert body == {"message": f"request headers not received within {HEAD_TIMEOUT:g} seconds"}
    assert silents == [b""] * 20, "a connection that sent nothing gets no answer, only a close"


def test_head_deadline_counts_from_first_byte_on_kept_alive_connection(limited):
    """A kept-alive connection may idle (uvicorn's 5 s keep-alive closes it), but its next
    head must be complete within the head timeout of its first byte."""
    with connect(limited.port) as sock:
        assert get(limited.port, sock=sock)[0] == 200
        sock.sendall(b"GET /v1/health HTTP/1.1\r\n")
        started = time.monotonic()
        status, _, body = parse_response(read_all(sock))
        assert status == 408 and HEAD_TIMEOUT - 0.2 < time.monotonic() - started < HEAD_TIMEOUT + 1.5


def test_oversized_heads_get_431_without_buffering_them(limited):
    pid = limited.proc.pid
    # Below the limit (32 KiB of header fields by default) is served.
    assert get(limited.port, extra=b"x-big: " + b"a" * 30_000 + b"\r\n")[0] == 200
    # Many fields, all in one read: rejected before the app runs.
    many = b"".join(b"x-h%d: %s\r\n" % (i, b"v" * 40) for i in range(1000))
    status, headers, body = get(limited.port, extra=many)
    assert (status, headers["connection"]) == (431, "close")
    assert body == {"message": "request headers larger than 32768 bytes"}
    # One endless header value, 64 MiB sent as fast as the socket takes it: answered once
    # the limit is passed, and the server's memory does not grow by what was sent.
    rss_before = rss_kib(pid)
    sock = connect(limited.port)
    sock.sendall(b"GET /v1/health HTTP/1.1\r\nhost: x\r\nx-endless: ")
    piece = b"z" * (1 << 20)
    sent = 0
    try:
        for _ in range(64):
            sock.sendall(piece)
            sent += len(piece)
    except OSError:
        pass  # the server may close before all of it is sent
    with sock:
        status, _, body = parse_response(read_all(sock))
    grown = rss_kib(pid) - rss_before
    print(f"{sent >> 20} MiB of header sent: server RSS {grown:+d} KiB")
    assert status == 431 and body == {"message": "request headers larger than 32768 bytes"}
    assert grown < 8 * 1024, f"server RSS grew {grown} KiB for {sent >> 20} MiB of header"


def _big_log_chunk(url: str, db) -> str:
    """A shape whose first log chunk is about 10 MB; the URL of that chunk."""
    db.execute("CREATE TABLE big (id int PRIMARY KEY, pad text)")
    r = httpx.get(f"{url}/v1/shape/big", params={"offset": "-1"}, timeout=30)
    shape_id, offset = r.headers["electric-shape-id"], r.headers["electric-chunk-last-offset"]
    db.execute("INSERT INTO big SELECT g, repeat('p', 1000) FROM generate_series(1, 10000) g")
    path = f"/v1/shape/big?offset={offset}&shape_id={shape_id}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r = httpx.get(url + path, timeout=30)
        if r.status_code == 200 and len(r.content) > 10_000_000:
            return path
        time.sleep(0.2)
    raise AssertionError("the log never reached 10 MB")


def tcp_state(sock: socket.socket) -> int:
    """The socket's TCP state (``tcpi_state``): 1 established, 7 closed (e.g. reset)."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]


def wait_cut_off(socks: list[socket.socket], timeout: float) -> float | None:
    """Seconds until the server has reset every socket (their state is closed), or None."""
    started = time.monotonic()
    while any(tcp_state(sock) == 1 for sock in socks):
        if time.monotonic() - started > timeout:
            return None
        time.sleep(0.1)
    return time.monotonic() - started


def files_open(pid: int, name: str) -> int:
    """How many of the server's descriptors are open on a file called ``name``."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}").endswith("/" + name)
        except OSError:
            pass
    return count


def test_clients_that_stop_reading_are_cut_off(limited, db):
    """10 clients ask for a 10 MB response and never read it: the chunk streams from its
    file in bounded pieces, so each holds at most a piece and the write buffer, until the
    send timeout (3 s here) aborts them and frees that too."""
    pid = limited.proc.pid
    path = _big_log_chunk(limited.url, db)
    time.sleep(0.5)
    rss_before = rss_kib(pid)
    stalled = [connect(limited.port, rcvbuf=4096) for _ in range(10)]
    for sock in stalled:
        sock.sendall(f"GET {path} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
    time.sleep(1.5)
    rss_held = rss_kib(pid)
    assert all(tcp_state(sock) == 1 for sock in stalled), "cut off before the send timeout"
    with HealthProbe(limited.url) as probe:
        waited = wait_cut_off(stalled, 3 + 5)
        time.sleep(0.5)
    rss_after = rss_kib(pid)
    for sock in stalled:
        sock.close()
    held, left = (rss_held - rss_before) >> 10, (rss_after - rss_before) >> 10
    print(f"RSS held by 10 stalled 10 MB responses: +{held} MiB; cut off {waited and round(waited, 1)} s later; "
          f"then +{left} MiB")
    assert waited is not None, "stalled clients were not cut off"
    assert held < 15, f"10 stalled responses held +{held} MiB: bodies are not streamed"
    assert left < 15, f"RSS still +{left} MiB after the stalled clients were cut off"
    assert not probe.failures and probe.worst < 1.0


def test_streamed_body_released_when_client_stops_reading(limited, db):
    """A snapshot streamed from its file to a client that never reads: the connection is
    aborted after the send timeout, and the response's file is closed (not read to the end)."""
    db.execute("CREATE TABLE snap (id int PRIMARY KEY, pad text)")
    db.execute("INSERT INTO snap SELECT g, repeat('s', 1000) FROM generate_series(1, 10000) g")
    assert httpx.get(f"{limited.url}/v1/shape/snap", params={"offset": "-1"}, timeout=60).status_code == 200
    pid = limited.proc.pid
    stalled = [connect(limited.port, rcvbuf=4096) for _ in range(5)]
    for sock in stalled:
        sock.sendall(b"GET /v1/shape/snap?offset=-1 HTTP/1.1\r\nhost: x\r\n\r\n")
    time.sleep(1)
    assert all(tcp_state(sock) == 1 for sock in stalled), "cut off before the send timeout"
    assert files_open(pid, "snapshot.json") == 5, "each stalled response holds the snapshot file"
    assert wait_cut_off(stalled, 3 + 5) is not None, "stalled clients were not cut off"
    deadline = time.monotonic() + 2
    while files_open(pid, "snapshot.json") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert files_open(pid, "snapshot.json") == 0, "the stalled responses' files stayed open"
    for sock in stalled:
        sock.close()
    assert "Traceback" not in limited.logs()


def test_connection_limit_answers_503(server_factory):
    server = server_factory({"SHAPESYNC_MAX_CONNECTIONS": "20"}).start()
    time.sleep(0.3)  # the health checks' connections are gone
    held = [connect(server.port) for _ in range(20)]
    for sock in held:
        assert get(server.port, sock=sock)[0] == 200
    status, headers, body = get(server.port)
    assert (status, headers["retry-after"], headers["connection"]) == (503, "5", "close")
    assert body == {"message": "too many connections; retry later"}
    # Connections already accepted keep being served.
    assert get(server.port, sock=held[0])[0] == 200
    for sock in held:
        sock.close()
    time.sleep(0.3)
    assert get(server.port)[0] == 200


# -- in-process: http/protocol.py alone ----------------------------------------------------

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
