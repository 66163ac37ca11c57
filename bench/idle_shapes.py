"""Idle-shapes benchmark: what N shapes that nobody reads cost the server.

Standalone (not a test). Starts its own embedded Postgres and ``shapesync serve``, creates
``--shapes`` distinct shapes (``where id = <i>`` on one table, each synced once from
``offset=-1``, several requests in flight, retried on 503), then prints the server's open
file descriptors and resident memory before and after, per shape, how long creating them
took, and the same after a restart (every shape restored from disk).

    .venv/bin/python bench/idle_shapes.py --shapes 10000

Stops everything it started on exit. Load is on loopback only.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from initial_sync import Server  # noqa: E402
from live_fanout import open_fds, rss_kib  # noqa: E402

from shapesync.embedded_pg import EmbeddedPostgres  # noqa: E402


def create_shape(client: httpx.Client, i: int) -> None:
    for _ in range(200):
        r = client.get("/v1/shape/items", params={"offset": "-1", "where": f"id = {i}"})
        if r.status_code == 200:
            return
        if r.status_code != 503:
            raise RuntimeError(f"shape {i}: {r.status_code} {r.text}")
        time.sleep(0.05)
    raise RuntimeError(f"shape {i}: still 503")


def create_shapes(url: str, count: int, workers: int) -> float:
    started = time.perf_counter()
    clients = [httpx.Client(base_url=url, timeout=60) for _ in range(workers)]
    try:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda i: create_shape(clients[i % workers], i), range(count)))
    finally:
        for client in clients:
            client.close()
    return time.perf_counter() - started


def report(label: str, pid: int, base_fds: int, base_rss: int, count: int) -> None:
    fds, rss = open_fds(pid), rss_kib(pid)
    print(f"{label:<28} open fds {fds:>6} ({fds - base_fds:+d})   RSS {rss / 1024:7.1f} MiB "
          f"({(rss - base_rss) / max(count, 1):.2f} KiB per shape)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=8, help="requests in flight")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="shapesync-idle-"))
    base.chmod(0o755)
    pg = EmbeddedPostgres(base / "pgdata", fast=True)
    server: Server | None = None
    try:
        pg.start()
        with psycopg.connect(pg.dsn(), autocommit=True) as conn:
            conn.execute("CREATE TABLE items (id int PRIMARY KEY, v text)")
            conn.execute("INSERT INTO items SELECT g, 'row ' || g FROM generate_series(0, 99) g")
        server = Server(pg.url, base / "storage")
        server.start()
        assert server.proc is not None
        create_shapes(server.url, 1, 1)  # the table is prepared; one shape exists
        base_fds, base_rss = open_fds(server.proc.pid), rss_kib(server.proc.pid)
        print(f"shapes                       {args.shapes:,}")
        report("server with 1 shape", server.proc.pid, base_fds, base_rss, 0)
        seconds = create_shapes(server.url, args.shapes, args.workers)
        print(f"created in                   {seconds:.1f} s ({args.shapes / seconds:.0f} shapes/s)")
        report(f"with {args.shapes:,} idle shapes", server.proc.pid, base_fds, base_rss,
               args.shapes)
        server.stop()
        started = time.perf_counter()
        server.start(timeout=600)
        print(f"restart until healthy        {time.perf_counter() - started:.1f} s")
        report("after restart", server.proc.pid, base_fds, base_rss, args.shapes)
        disk = sum(p.stat().st_size for p in (base / "storage").rglob("*") if p.is_file())
        print(f"storage on disk              {disk / 1024 / 1024:.1f} MiB")
        return 0
    finally:
        if server is not None:
            server.stop()
        pg.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
