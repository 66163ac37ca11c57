"""Initial-sync benchmark: a shape synced over HTTP from ``offset=-1`` versus plain COPY.

Standalone (not a test). It starts its own embedded Postgres in a temporary directory,
fills ``items(id bigint primary key, title text, n int, ts timestamptz)`` with ``--rows``
rows, and measures:

1. ``COPY (SELECT * FROM items) TO STDOUT`` with psycopg, data drained and counted: the
   baseline. (Also, for diagnosis, COPY of the JSON expression the server's snapshot uses.)
2. A full sync over HTTP against a freshly started ``shapesync serve``: ``offset=-1``
   (creates the shape, takes the snapshot, serves it), then ``offset=<last>&shape_id=..``
   until a response carries ``electric-chunk-up-to-date``.
3. The same sync again: the shape exists, so this serves the stored snapshot/log only.

Bodies are read streaming and kept as raw pieces; after each sync, outside its timed
region, they are parsed in full (exactly ``--rows`` distinct ids must have arrived) and
dropped, so the next sync does not run with hundreds of MB still held. The parse time is
reported separately. ``--serve-repeats N`` repeats the stored sync N times.

    .venv/bin/python bench/initial_sync.py --rows 1000000
    .venv/bin/python bench/initial_sync.py --profile /tmp/server.prof   # server under cProfile

Everything started here (server with SIGTERM, Postgres) is stopped on exit, errors included.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import psycopg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from shapesync.embedded_pg import EmbeddedPostgres  # noqa: E402
from shapesync.pg.catalog import load_table  # noqa: E402
from shapesync.shapes.items import snapshot_item_sql  # noqa: E402

TABLE = "items"


# -- database -----------------------------------------------------------------------------
def create_table(dsn: str, rows: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        conn.execute(
            f"CREATE TABLE {TABLE} (id bigint PRIMARY KEY, title text, n int, ts timestamptz)"
        )
        conn.execute(
            f"""INSERT INTO {TABLE}
                SELECT i, 'item number ' || i || ' ' || md5(i::text),
                       ((i * 7919) %% 100000)::int,
                       timestamptz '2024-01-01 00:00:00+00' + i * interval '1 second'
                FROM generate_series(1::bigint, %s) AS i""",
            (rows,),
        )
        # Set hint bits and the visibility map now, so no measured scan pays for it.
        conn.execute(f"VACUUM (FREEZE, ANALYZE) {TABLE}")
        conn.execute("CHECKPOINT")


def time_copy(dsn: str, query: str) -> tuple[float, int, int]:
    """(seconds, rows, bytes) for draining ``COPY (query) TO STDOUT``."""
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        nbytes = rows = 0
        start = time.perf_counter()
        with cur.copy(f"COPY ({query}) TO STDOUT") as copy:
            for data in copy:
                nbytes += len(data)
                rows += 1
        elapsed = time.perf_counter() - start
    return elapsed, rows, nbytes


def json_select(dsn: str) -> str:
    """The snapshot query the server runs, for a COPY of the same JSON text."""

    async def load():
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            return await load_table(conn, None, TABLE)

    table = asyncio.run(load())
    return f"SELECT {snapshot_item_sql(table)} FROM {table.qualified}"


# -- server -------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# uvicorn re-raises SIGTERM after its graceful shutdown, which would kill the process before
# cProfile writes its stats; turning SIGTERM into KeyboardInterrupt lets main() return.
_PROFILED_SERVE = """
import cProfile, signal, sys
from shapesync.cli import main
signal.signal(signal.SIGTERM, signal.default_int_handler)
path = sys.argv.pop(1)
profiler = cProfile.Profile()
try:
    profiler.runcall(main, sys.argv[1:])
finally:
    profiler.dump_stats(path)
"""


class Server:
    """``python -m shapesync serve`` in a subprocess, as tests/conftest.py ServerProcess."""

    def __init__(self, dsn: str, storage: Path, profile: Path | None = None) -> None:
        self.dsn = dsn
        self.storage = storage
        self.profile = profile
        self.port = free_port()
        self.log_path = storage.parent / f"server-{self.port}.log"
        self.proc: subprocess.Popen | None = None
        self._log_file = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> None:
        env = {
            **os.environ,
            "DATABASE_URL": self.dsn,
            "DATABASE_ID": "bench_db",
            "PORT": str(self.port),
            "STORAGE_DIR": str(self.storage),
            "REPLICATION_STREAM_ID": "bench",
            "LOG_LEVEL": "info",
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(REPO / "src"), os.environ.get("PYTHONPATH", "")) if p
            ),
        }
        cmd = [sys.executable, "-m", "shapesync", "serve", "--host", "127.0.0.1"]
        if self.profile is not None:
            cmd[1:3] = ["-c", _PROFILED_SERVE, str(self.profile)]
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log_file, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited:\n{self.logs()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"server not healthy:\n{self.logs()[-3000:]}")

    def stop(self, timeout: float = 30) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


# -- HTTP sync ------------------------------------------------------------------------------
@dataclass
class SyncResult:
    seconds: float
    requests: int
    nbytes: int
    bodies: list[list[bytes]] = field(repr=False)
    first_byte: float = 0.0  # seconds until the first body byte of the offset=-1 response
    rows: int = 0
    parse_seconds: float = 0.0


def sync(client: httpx.Client) -> SyncResult:
    """From offset=-1 until up-to-date; bodies kept as raw pieces, parsed afterwards."""
    params = {"offset": "-1"}
    bodies: list[list[bytes]] = []
    nbytes = requests = 0
    first_byte = 0.0
    start = time.perf_counter()
    while True:
        with client.stream("GET", f"/v1/shape/{TABLE}", params=params) as response:
            requests += 1
            if response.status_code != 200:
                response.read()
                raise RuntimeError(f"GET {response.url}: {response.status_code} {response.text[:500]}")
            pieces: list[bytes] = []
            for piece in response.iter_raw():
                if not first_byte:
                    first_byte = time.perf_counter() - start
                pieces.append(piece)
                nbytes += len(piece)
            bodies.append(pieces)
            headers = response.headers
        if "electric-chunk-up-to-date" in headers:
            break
        params = {"offset": headers["electric-chunk-last-offset"],
                  "shape_id": headers["electric-shape-id"]}
    elapsed = time.perf_counter() - start
    return SyncResult(elapsed, requests, nbytes, bodies, first_byte)


def count_rows(result: SyncResult, expected: int) -> SyncResult:
    """Parse every body fully, count the inserted rows (distinct ids), drop the bodies."""
    gc.disable()  # a million dicts would otherwise trigger many full collections
    try:
        start = time.perf_counter()
        ids: set[int] = set()
        rows = 0
        for pieces in result.bodies:
            for item in orjson.loads(b"".join(pieces)):
                if item["headers"].get("operation") == "insert":
                    rows += 1
                    ids.add(int(item["value"]["id"]))
        result.parse_seconds = time.perf_counter() - start
    finally:
        result.bodies = []
        gc.enable()
    if len(ids) != rows:
        raise AssertionError(f"{rows} insert items but {len(ids)} distinct ids")
    if rows != expected:
        raise AssertionError(f"HTTP sync returned {rows} rows, expected {expected}")
    result.rows = rows
    return result


# -- main -------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the table")
    parser.add_argument("--profile", type=Path,
                        help="run the server under cProfile and write its stats here")
    parser.add_argument("--serve-repeats", type=int, default=1, metavar="N",
                        help="sync the stored shape N times (default 1; all timings printed)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="shapesync-bench-"))
    os.chmod(base, 0o755)  # as root, Postgres runs as an unprivileged user
    pg = EmbeddedPostgres(base / "pgdata", fast=True)
    server: Server | None = None
    try:
        pg.start()
        dsn = pg.dsn()
        t = time.perf_counter()
        create_table(dsn, args.rows)
        print(f"created {args.rows:,} rows in {time.perf_counter() - t:.1f}s", flush=True)

        time_copy(dsn, f"SELECT * FROM {TABLE}")  # warm the cache
        copy_s, copy_rows, copy_bytes = min(
            (time_copy(dsn, f"SELECT * FROM {TABLE}") for _ in range(2)), key=lambda r: r[0]
        )
        if copy_rows != args.rows:
            raise AssertionError(f"COPY returned {copy_rows} rows, expected {args.rows}")
        json_s, _, json_bytes = time_copy(dsn, json_select(dsn))

        server = Server(pg.url, base / "storage", args.profile)
        server.start()
        with httpx.Client(base_url=server.url, timeout=httpx.Timeout(600.0)) as client:
            # Each result is parsed (untimed) and its bodies dropped before the next sync,
            # so no sync pays for memory still held by an earlier one.
            first = count_rows(sync(client), args.rows)
            second = count_rows(sync(client), args.rows)
            extra = [count_rows(sync(client), args.rows) for _ in range(args.serve_repeats - 1)]

        n = args.rows

        def line(label: str, seconds: float, extra: str = "") -> str:
            return (f"{label:<34}{seconds:8.3f} s {n / seconds:12,.0f} rows/s"
                    f"  {seconds / copy_s:5.2f}x COPY{extra}")

        print()
        print(f"rows                              {n:,}")
        print(line("COPY SELECT * (baseline)", copy_s, f"  {copy_bytes / 1e6:,.1f} MB"))
        print(line("COPY of snapshot JSON (diag)", json_s, f"  {json_bytes / 1e6:,.1f} MB"))
        for label, r in (("first sync (snapshot + serve)", first),
                         ("second sync (stored, serve only)", second)):
            print(line(label, r.seconds,
                       f"  {r.nbytes / 1e6:,.1f} MB in {r.requests} requests,"
                       f" first byte {r.first_byte:.3f} s"))
        if extra:
            print("further stored syncs              "
                  + ", ".join(f"{r.seconds:.3f}" for r in extra) + " s")
        print(f"response bytes                    {first.nbytes:,} / {second.nbytes:,}"
              f" ({first.nbytes / copy_bytes:.2f}x COPY bytes)")
        print(f"client JSON parse (untimed)       {first.parse_seconds:.3f} s /"
              f" {second.parse_seconds:.3f} s")
        return 0
    finally:
        if server is not None:
            server.stop()
            if args.profile is not None:
                print(f"server profile written to {args.profile}")
        pg.stop()
        if args.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
            shutil.rmtree(pg.socket_dir, ignore_errors=True)
            if pg.data_dir != base / "pgdata":  # relocated for the unprivileged user
                shutil.rmtree(pg.data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
