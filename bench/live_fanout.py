"""Live fan-out benchmark: N long-polls waiting on one shape, then one change lands.

Standalone (not a test). Starts its own embedded Postgres and ``shapesync serve``, creates a
shape, opens ``--clients`` concurrent ``live=true`` requests on it (raw HTTP/1.1 over asyncio
streams, so the client side stays cheap), waits until the server holds them all, then
commits one INSERT and measures, for every request, the time from the commit returning to
its response's last byte (raw sockets under epoll in one thread, timestamped on arrival). Prints the delivery-time distribution and the server's resident
memory per waiting request (RSS with all requests waiting minus RSS before, over N).

Also checks that clients which disconnect while waiting cost nothing afterwards: a second
wave of waiters is opened and closed without a change; the server's RSS and open file
descriptors must return close to the baseline.

    .venv/bin/python bench/live_fanout.py --clients 10000

Stops everything it started on exit. Load is on loopback only.
"""

from __future__ import annotations

import argparse
import os
import resource
import select
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from initial_sync import Server  # noqa: E402

from shapesync.embedded_pg import EmbeddedPostgres  # noqa: E402


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def raise_fd_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(hard, max(soft, wanted)) if hard != resource.RLIM_INFINITY else max(soft, wanted)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def open_long_polls(port: int, path: str, clients: int) -> list[socket.socket]:
    """``clients`` connections, each with one live request sent (raw HTTP/1.1, no library:
    the client side must stay far cheaper than the server it measures)."""
    request = f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()  # keep-alive, as clients do
    socks = []
    for _ in range(clients):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(request)
        sock.setblocking(False)
        socks.append(sock)
    return socks


def response_complete(raw: bytes | bytearray) -> int | None:
    """The status once ``raw`` holds a whole response (headers + content-length bytes)."""
    head_end = raw.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    length = 0
    for line in bytes(raw[:head_end]).split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if len(raw) < head_end + 4 + length:
        return None
    return int(raw.split(b" ", 2)[1])


def collect_responses(socks: list[socket.socket], timeout: float) -> dict[int, tuple[int, float]]:
    """epoll over every socket until each holds a complete response; per socket the status
    and the monotonic time its last byte arrived. One thread, one recv per readiness event,
    so the time recorded is when the kernel had the bytes, not when a client loop got to
    them. Connections stay open (keep-alive) so that the server's closing them, which a
    real client would not ask for, is not part of what is measured."""
    epoll = select.epoll()
    by_fd = {s.fileno(): s for s in socks}
    data: dict[int, bytearray] = {fd: bytearray() for fd in by_fd}
    done: dict[int, tuple[int, float]] = {}
    for fd in by_fd:
        epoll.register(fd, select.EPOLLIN)
    deadline = time.monotonic() + timeout
    while len(done) < len(by_fd) and time.monotonic() < deadline:
        for fd, _ in epoll.poll(1.0):
            try:
                chunk = by_fd[fd].recv(65536)
            except BlockingIOError:
                continue
            now = time.monotonic()
            data[fd] += chunk
            status = response_complete(data[fd]) if chunk else 0
            if status is not None:
                epoll.unregister(fd)
                done[fd] = (status, now)
    epoll.close()
    return done


def run(port: int, dsn: str, path: str, clients: int, server_pid: int) -> None:
    base_rss, base_fds = rss_kib(server_pid), open_fds(server_pid)

    # wave 1: waiters that disconnect before anything happens
    socks = open_long_polls(port, path, clients)
    wait_for_waiters(server_pid, base_fds + clients, 60)
    for sock in socks:
        sock.close()
    time.sleep(2)
    after_rss, after_fds = rss_kib(server_pid), open_fds(server_pid)

    # wave 2: waiters answered by one change
    socks = open_long_polls(port, path, clients)
    wait_for_waiters(server_pid, base_fds + clients, 60)
    time.sleep(1)
    waiting_rss = rss_kib(server_pid)
    results: dict[int, tuple[int, float]] = {}
    collector = threading.Thread(target=lambda: results.update(collect_responses(socks, 60)))
    collector.start()
    if os.environ.get("FANOUT_PYSPY"):
        import subprocess
        spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(server_pid), "-r", "2000", "-d", "3", "-f", "raw", "-o", os.environ["FANOUT_PYSPY"]], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO items VALUES (1000000, 'fan-out')")
        committed = time.monotonic()
    collector.join()
    if os.environ.get("FANOUT_PYSPY"):
        spy.wait()
    for sock in socks:
        sock.close()
    delays = sorted((done - committed) * 1000 for _, done in results.values())
    statuses: dict[int, int] = {}
    for status, _ in results.values():
        statuses[status] = statuses.get(status, 0) + 1
    missing = clients - len(results)
    if missing:
        statuses[-1] = missing  # no complete response within the timeout

    def pct(p: float) -> float:
        return delays[min(len(delays) - 1, int(p * len(delays)))]

    print(f"clients                     {clients:,}")
    print(f"statuses                    {statuses}")
    print(f"delivery after commit (ms)  min {delays[0]:.0f}  p50 {statistics.median(delays):.0f}  "
          f"p90 {pct(0.9):.0f}  p99 {pct(0.99):.0f}  max {delays[-1]:.0f}")
    print(f"all answered within 1 s     {not missing and delays[-1] < 1000}")
    print(f"server RSS baseline         {base_rss / 1024:.1f} MiB")
    print(f"server RSS with waiters     {waiting_rss / 1024:.1f} MiB  "
          f"({(waiting_rss - base_rss) * 1024 / clients / 1024:.1f} KiB per waiting request)")
    print(f"after {clients:,} disconnects     RSS {after_rss / 1024:.1f} MiB, "
          f"open fds {after_fds} (baseline {base_fds})")


def wait_for_waiters(pid: int, fds: int, timeout: float) -> None:
    """Until the server holds (about) ``fds`` descriptors, i.e. has accepted every request."""
    deadline = time.monotonic() + timeout
    while open_fds(pid) < fds * 0.99 and time.monotonic() < deadline:
        time.sleep(0.2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=10_000)
    args = parser.parse_args()
    raise_fd_limit(args.clients * 2 + 1000)

    base = Path(tempfile.mkdtemp(prefix="shapesync-fanout-"))
    os.chmod(base, 0o755)
    pg = EmbeddedPostgres(base / "pgdata", fast=True)
    server: Server | None = None
    try:
        pg.start()
        dsn = pg.dsn()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE items (id int PRIMARY KEY, title text)")
            conn.execute("INSERT INTO items SELECT g, 'row ' || g FROM generate_series(1, 100) g")
        server = Server(pg.url, base / "storage")
        server.start()
        assert server.proc is not None
        r = httpx.get(f"{server.url}/v1/shape/items", params={"offset": "-1"}, timeout=60)
        shape_id, offset = r.headers["electric-shape-id"], r.headers["electric-chunk-last-offset"]
        path = f"/v1/shape/items?offset={offset}&shape_id={shape_id}&live=true&cursor=1"
        run(server.port, dsn, path, args.clients, server.proc.pid)
        return 0
    finally:
        if server is not None:
            server.stop()
        pg.stop("immediate")


if __name__ == "__main__":
    sys.exit(main())
