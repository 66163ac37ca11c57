"""Write-throughput benchmark: does one live client keep up with a fast writer?

Standalone (not a test). Starts its own embedded Postgres (fsync off) and ``shapesync
serve``, creates ``wt(id bigint primary key, v int, txn bigint)`` and a shape on it
(``offset=-1``), and follows the shape live over HTTP in a thread, timestamping every
change message on arrival. A writer then commits 10-row transactions (5 inserts, 5 updates
of the previous transaction's rows; each row carries the transaction's number in ``txn``,
and the writer records the wall-clock time each commit returned), for ``--seconds`` in
each of two phases:

(a) as fast as one connection can (one round trip per transaction);
(b) paced at half the rows/s measured in (a).

Per phase: rows/s written, rows/s received while writing, lag (arrival minus commit) p50 /
p99 / max, time to drain after the writer stops (waiting up to ``--drain``), and whether
every row change arrived exactly once.

For comparison, a second logical slot (``pgoutput``, on its own publication of ``wt``) is
created before the writes; afterwards ``pg_recvlogical`` (from the embedded Postgres
bindir, as the cluster's OS user) reads that slot up to the current WAL position, and its
consumption rate over the same WAL is reported (row changes/s, MB/s of pgoutput). It runs
after the phases, not during them, so that it does not take CPU from the server measured.

    .venv/bin/python bench/write_throughput.py --seconds 30 --drain 120

Stops everything it started on exit. Load is on loopback only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from initial_sync import Server  # noqa: E402

from shapesync.embedded_pg import EmbeddedPostgres  # noqa: E402

ROWS_PER_TXN = 10
HALF = ROWS_PER_TXN // 2
RECV_SLOT = "bench_recvlogical"


class Follower(threading.Thread):
    """Follows one shape live; ``arrivals`` holds (arrival wall time, [txn of each change])."""

    def __init__(self, base_url: str, table: str) -> None:
        super().__init__(daemon=True)
        self.client = httpx.Client(base_url=base_url, timeout=60)
        self.table = table
        self.offset, self.shape_id, self.cursor = "-1", "", ""
        self.arrivals: list[tuple[float, list[int]]] = []
        self.received = 0
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def request(self, live: bool) -> bool:
        params = {"offset": self.offset}
        if self.shape_id:
            params["shape_id"] = self.shape_id
        if live:
            params |= {"live": "true", "cursor": self.cursor}
        response = self.client.get(f"/v1/shape/{self.table}", params=params)
        arrived = time.time()
        if response.status_code not in (200, 204):
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:500]}")
        self.shape_id = response.headers["electric-shape-id"]
        self.offset = response.headers["electric-chunk-last-offset"]
        self.cursor = response.headers.get("electric-next-cursor", self.cursor)
        up_to_date = False
        if response.status_code == 200:
            txns = []
            for message in orjson.loads(response.content):
                headers = message["headers"]
                if headers.get("control") == "up-to-date":
                    up_to_date = True
                elif "operation" in headers and self.offset != "-1":
                    txns.append(int(message["value"]["txn"]))
            if txns:
                self.arrivals.append((arrived, txns))
                self.received += len(txns)
        return up_to_date or response.status_code == 204

    def sync(self) -> None:
        while not self.request(live=False):
            pass
        self.arrivals.clear()  # the seed rows
        self.received = 0

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self.request(live=True)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            self.error = exc


@dataclass
class Phase:
    name: str
    first_txn: int
    commits: list[float] = field(default_factory=list)  # wall time, index = txn - first_txn
    started: float = 0.0
    ended: float = 0.0

    @property
    def rows(self) -> int:
        return len(self.commits) * ROWS_PER_TXN

    @property
    def last_txn(self) -> int:
        return self.first_txn + len(self.commits) - 1


def write(dsn: str, phase: Phase, seconds: float, rows_per_s: float | None) -> None:
    """10-row transactions for ``seconds``: unpaced, or paced at ``rows_per_s``."""
    interval = ROWS_PER_TXN / rows_per_s if rows_per_s else 0.0
    with psycopg.connect(dsn, autocommit=True) as conn:
        phase.started = time.time()
        deadline = time.monotonic() + seconds
        next_at = time.monotonic()
        txn = phase.first_txn
        while time.monotonic() < deadline:
            if interval:
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                next_at += interval
            base = txn * HALF
            values = ",".join(f"({base + HALF + i}, 0, {txn})" for i in range(HALF))
            # One simple-protocol query, several statements: one implicit transaction.
            conn.execute(
                f"INSERT INTO wt (id, v, txn) VALUES {values};"
                f"UPDATE wt SET v = v + 1, txn = {txn} WHERE id BETWEEN {base} AND {base + HALF - 1}"
            )
            phase.commits.append(time.time())
            txn += 1
        phase.ended = time.time()


def measure(phase: Phase, follower: Follower, drain: float) -> dict:
    """Wait (up to ``drain`` s after the writer stopped) for the phase's rows, then measure."""
    lo, hi = phase.first_txn, phase.last_txn

    def phase_rows() -> list[tuple[float, int]]:
        return [(t, txn) for t, txns in list(follower.arrivals) for txn in txns if lo <= txn <= hi]

    deadline = phase.ended + drain
    while len(phase_rows()) < phase.rows and time.time() < deadline and follower.error is None:
        time.sleep(0.01)
    rows = phase_rows()
    counts: dict[int, int] = {}
    for _, txn in rows:
        counts[txn] = counts.get(txn, 0) + 1
    complete = len(counts) == len(phase.commits) and all(c == ROWS_PER_TXN for c in counts.values())
    lags = sorted(t - phase.commits[txn - lo] for t, txn in rows)
    received_while_writing = sum(1 for t, _ in rows if t <= phase.ended)
    duration = phase.ended - phase.started
    last = max((t for t, _ in rows), default=phase.ended)

    def pct(p: float) -> float:
        return lags[min(len(lags) - 1, int(p * len(lags)))] * 1000 if lags else float("nan")

    return {
        "written/s": phase.rows / duration,
        "recv/s": received_while_writing / duration,
        "lag p50 ms": statistics.median(lags) * 1000 if lags else float("nan"),
        "lag p99 ms": pct(0.99),
        "lag max ms": lags[-1] * 1000 if lags else float("nan"),
        "drain ms": max(0.0, last - phase.ended) * 1000 if complete else float("nan"),
        "arrived": f"{len(rows)}/{phase.rows}" + (" all" if complete else " INCOMPLETE"),
    }


def recvlogical(pg: EmbeddedPostgres, dsn: str, rows: int) -> dict:
    """Read the comparison slot up to the current WAL position with pg_recvlogical
    (pgoutput, binary: its output is counted in bytes; ``rows`` is what the WAL holds)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
        assert row is not None
        endpos = row[0]
    assert pg.bindir is not None
    cmd = [str(pg.bindir / "pg_recvlogical"), "-d", dsn, "-S", RECV_SLOT, "--start",
           "--endpos", endpos, "--no-loop", "-f", "-", "-o", "proto_version=1", "-o", f"publication_names={RECV_SLOT}"]
    user = {"user": pg.user} if pg.user else {}
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **user)
    assert proc.stdout is not None
    nbytes = 0
    while chunk := proc.stdout.read1(1 << 20):
        nbytes += len(chunk)
    proc.wait()
    elapsed = time.monotonic() - started
    if proc.returncode:
        raise RuntimeError(f"pg_recvlogical failed: {proc.stderr.read().decode() if proc.stderr else ''}")
    return {"rows": rows, "seconds": elapsed, "rows/s": rows / elapsed, "MB/s": nbytes / elapsed / 1e6}


def print_table(results: dict[str, dict]) -> None:
    columns = list(next(iter(results.values())))
    print(f"{'phase':<10}" + "".join(f"{c:>12}" for c in columns[:-1]) + f"  {columns[-1]}")
    for name, result in results.items():
        cells = [f"{v:>12,.0f}" if v == v else f"{'-':>12}" for v in (result[c] for c in columns[:-1])]
        print(f"{name:<10}" + "".join(cells) + f"  {result[columns[-1]]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="writer time per phase")
    parser.add_argument("--drain", type=float, default=30.0, help="max wait after each phase")
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="shapesync-wt-"))
    os.chmod(base, 0o755)
    pg = EmbeddedPostgres(base / "pgdata", fast=True)
    server: Server | None = None
    follower: Follower | None = None
    try:
        pg.start()
        dsn = pg.dsn()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE wt (id bigint PRIMARY KEY, v int, txn bigint)")
            conn.execute(f"INSERT INTO wt SELECT g, 0, -1 FROM generate_series(0, {HALF - 1}) g")
        server = Server(pg.url, base / "storage")
        server.start()
        follower = Follower(server.url, "wt")
        follower.sync()
        follower.start()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"CREATE PUBLICATION {RECV_SLOT} FOR TABLE wt")
            conn.execute(f"SELECT pg_create_logical_replication_slot('{RECV_SLOT}', 'pgoutput')")

        results: dict[str, dict] = {}
        fast = Phase("max rate", first_txn=0)
        write(dsn, fast, args.seconds, None)
        results[fast.name] = measure(fast, follower, args.drain)
        half = Phase("half rate", first_txn=fast.last_txn + 1)
        write(dsn, half, args.seconds, fast.rows / (fast.ended - fast.started) / 2)
        results[half.name] = measure(half, follower, args.drain)
        if follower.error is not None:
            print(f"follower failed: {follower.error!r}")
        print_table(results)

        total = fast.rows + half.rows
        rl = recvlogical(pg, dsn, total)
        print(f"\npg_recvlogical (pgoutput) reading the same WAL afterwards: "
              f"{rl['rows']:,} row changes in {rl['seconds']:.2f} s = {rl['rows/s']:,.0f} rows/s, "
              f"{rl['MB/s']:.1f} MB/s pgoutput")
        return 0
    finally:
        if follower is not None:
            follower.stop.set()
        if server is not None:
            server.stop()
        pg.stop("immediate")


if __name__ == "__main__":
    sys.exit(main())
