"""Clients that stop reading: what the server holds for them, and that the send timeout frees it.

Standalone (not a test). Starts its own embedded Postgres and ``shapesync serve`` (with
``SHAPESYNC_SEND_TIMEOUT=--send-timeout`` and one log chunk large enough for the whole
response), then for two kinds of response:

- ``catch-up``: a log chunk of about ``--mb`` MB (``offset=<snapshot end>``), a body the
  current code reads into memory whole;
- ``snapshot``: the initial snapshot of a table of about ``--mb`` MB (``offset=-1``),
  streamed from its file in blocks;

opens ``--clients`` connections (receive buffer 4 KiB) that send the request and never
read, and prints the server's RSS before, while they are stalled, and after the send
timeout has cut them off, with the time that took. ``--send-timeout 0`` turns the
timeout off (the behaviour before it existed).

    .venv/bin/python bench/slow_clients.py --clients 20 --mb 20 --send-timeout 10

Stops everything it started on exit. Load is on loopback only.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from initial_sync import Server  # noqa: E402
from live_fanout import open_fds, rss_kib  # noqa: E402

from shapesync.embedded_pg import EmbeddedPostgres  # noqa: E402

ROW_PAD = 1000  # bytes of padding per row; an item is about 1.1 KB


def stall(port: int, path: str, clients: int) -> list[socket.socket]:
    socks = []
    for _ in range(clients):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        sock.sendall(f"GET {path} HTTP/1.1\r\nhost: bench\r\n\r\n".encode())
        socks.append(sock)
    return socks


def measure(server: Server, name: str, path: str, clients: int, send_timeout: float) -> None:
    assert server.proc is not None
    pid = server.proc.pid
    httpx.get(server.url + path, timeout=60)  # warm: the same code paths once
    time.sleep(1)
    rss0, fds0 = rss_kib(pid), open_fds(pid)
    started = time.monotonic()
    socks = stall(server.port, path, clients)
    peak = rss0
    while time.monotonic() - started < (min(3.0, send_timeout / 2) if send_timeout else 3.0):
        peak = max(peak, rss_kib(pid))
        time.sleep(0.1)
    held = rss_kib(pid)
    assert open_fds(pid) >= fds0 + clients, "the stalled connections were not accepted"
    while open_fds(pid) > fds0 and time.monotonic() - started < send_timeout * 3 + 10:
        time.sleep(0.1)
    cut = f"cut off after {time.monotonic() - started:.1f} s" if open_fds(pid) <= fds0 else (
        f"NOT cut off after {time.monotonic() - started:.1f} s")
    time.sleep(1)
    after = rss_kib(pid)
    for sock in socks:
        sock.close()
    mib = 1024
    print(f"{name}: {clients} stalled clients; RSS before {rss0 / mib:.0f} MiB, "
          f"while stalled {held / mib:.0f} MiB (peak {peak / mib:.0f}; "
          f"+{(held - rss0) / mib / clients:.2f} MiB per client), "
          f"{cut}, RSS after {after / mib:.0f} MiB "
          f"({(after - rss0) / mib:+.0f} MiB)", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--mb", type=int, default=20, help="response size, MB")
    parser.add_argument("--send-timeout", type=float, default=10.0,
                        help="SHAPESYNC_SEND_TIMEOUT; 0 = off, as before it existed")
    args = parser.parse_args()
    rows = args.mb * 1_000_000 // (ROW_PAD + 100)

    base = Path(tempfile.mkdtemp(prefix="shapesync-slow-clients-"))
    os.chmod(base, 0o755)
    pg = EmbeddedPostgres(base / "pgdata", fast=True)
    server: Server | None = None
    os.environ["SHAPESYNC_SEND_TIMEOUT"] = str(args.send_timeout)
    os.environ["LOG_CHUNK_BYTES_THRESHOLD"] = str(4 * args.mb * 1_000_000)
    try:
        pg.start()
        dsn = pg.dsn()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE log_big (id int PRIMARY KEY, pad text)")
            conn.execute("CREATE TABLE snap_big (id int PRIMARY KEY, pad text)")
            conn.execute("INSERT INTO snap_big SELECT g, repeat('s', %s) FROM generate_series(1, %s) g",
                         (ROW_PAD, rows))
        server = Server(pg.url, base / "storage")
        server.start()
        r = httpx.get(f"{server.url}/v1/shape/log_big", params={"offset": "-1"}, timeout=60)
        path = (f"/v1/shape/log_big?offset={r.headers['electric-chunk-last-offset']}"
                f"&shape_id={r.headers['electric-shape-id']}")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("INSERT INTO log_big SELECT g, repeat('p', %s) FROM generate_series(1, %s) g",
                         (ROW_PAD, rows))
        deadline = time.monotonic() + 120
        size = 0
        while size < args.mb * 1_000_000 * 0.95 and time.monotonic() < deadline:
            time.sleep(0.5)
            size = len(httpx.get(server.url + path, timeout=60).content)
        print(f"catch-up response: {size / 1e6:.1f} MB", flush=True)
        measure(server, "catch-up", path, args.clients, args.send_timeout)
        snap = httpx.get(f"{server.url}/v1/shape/snap_big", params={"offset": "-1"}, timeout=120)
        print(f"snapshot response: {len(snap.content) / 1e6:.1f} MB", flush=True)
        measure(server, "snapshot", "/v1/shape/snap_big?offset=-1", args.clients, args.send_timeout)
        return 0
    finally:
        if server is not None:
            server.stop()
        pg.stop("immediate")


if __name__ == "__main__":
    sys.exit(main())
