"""Live fan-out benchmark: N long-polls waiting on one shape, then one change lands.

Standalone (not a test). Starts its own embedded Postgres and ``shapesync serve``, creates a
shape, opens ``--clients`` concurrent ``live=true`` requests on it (raw HTTP/1.1 over asyncio
streams, so the client side stays cheap), waits until the server holds them all, then
commits one INSERT and measures, for every request, the time from the commit returning to
its response's last byte. Prints the delivery-time distribution and the server's resident
memory per waiting request (RSS with all requests waiting minus RSS before, over N).

Also checks that clients which disconnect while waiting cost nothing afterwards: a second
wave of waiters is opened and closed without a change; the server's RSS and open file
descriptors must return close to the baseline.

    .venv/bin/python bench/live_fanout.py --clients 10000

Stops everything it started on exit. Load is on loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import sys
import tempfile
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


async def long_poll(port: int, path: str, started: asyncio.Event | None,
                    count: list[int]) -> tuple[int, float]:
    """One live request; returns (status, monotonic time its response completed)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    count[0] += 1
    if started is not None and count[0] == started.target:  # type: ignore[attr-defined]
        started.set()
    try:
        data = await reader.read()  # until the server closes (Connection: close)
        done = time.monotonic()
    finally:
        writer.close()  # also when cancelled: the client disconnects
    status = int(data.split(b" ", 2)[1]) if data else 0
    return status, done


async def run(port: int, dsn: str, path: str, clients: int, server_pid: int) -> None:
    base_rss, base_fds = rss_kib(server_pid), open_fds(server_pid)

    # wave 1: waiters that disconnect before anything happens
    count = [0]
    tasks = [asyncio.create_task(long_poll(port, path, None, count)) for _ in range(clients)]
    await wait_for_waiters(server_pid, base_fds + clients, 60)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(2)
    after_rss, after_fds = rss_kib(server_pid), open_fds(server_pid)

    # wave 2: waiters answered by one change
    count = [0]
    started = asyncio.Event()
    started.target = clients  # type: ignore[attr-defined]
    tasks = [asyncio.create_task(long_poll(port, path, started, count)) for _ in range(clients)]
    await started.wait()
    await wait_for_waiters(server_pid, base_fds + clients, 60)
    await asyncio.sleep(1)
    waiting_rss = rss_kib(server_pid)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO items VALUES (1000000, 'fan-out')")
        committed = time.monotonic()
    results = await asyncio.gather(*tasks)
    delays = sorted((done - committed) * 1000 for _, done in results)
    statuses: dict[int, int] = {}
    for status, _ in results:
        statuses[status] = statuses.get(status, 0) + 1

    def pct(p: float) -> float:
        return delays[min(len(delays) - 1, int(p * len(delays)))]

    print(f"clients                     {clients:,}")
    print(f"statuses                    {statuses}")
    print(f"delivery after commit (ms)  min {delays[0]:.0f}  p50 {statistics.median(delays):.0f}  "
          f"p90 {pct(0.9):.0f}  p99 {pct(0.99):.0f}  max {delays[-1]:.0f}")
    print(f"all answered within 1 s     {delays[-1] < 1000}")
    print(f"server RSS baseline         {base_rss / 1024:.1f} MiB")
    print(f"server RSS with waiters     {waiting_rss / 1024:.1f} MiB  "
          f"({(waiting_rss - base_rss) * 1024 / clients / 1024:.1f} KiB per waiting request)")
    print(f"after {clients:,} disconnects     RSS {after_rss / 1024:.1f} MiB, "
          f"open fds {after_fds} (baseline {base_fds})")


async def wait_for_waiters(pid: int, fds: int, timeout: float) -> None:
    """Until the server holds (about) ``fds`` descriptors, i.e. has accepted every request."""
    deadline = time.monotonic() + timeout
    while open_fds(pid) < fds * 0.99 and time.monotonic() < deadline:
        await asyncio.sleep(0.2)


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
        asyncio.run(run(server.port, dsn, path, args.clients, server.proc.pid))
        return 0
    finally:
        if server is not None:
            server.stop()
        pg.stop("immediate")


if __name__ == "__main__":
    sys.exit(main())
