"""COPY a query's rows into a file inside one REPEATABLE READ transaction.

The first statement fixes the transaction's snapshot and reports it (``xmin:xmax:xip``)
with the WAL insert position, which the caller uses to skip streamed transactions the
snapshot already contains. Each row of the query is one item of text (shapes build it as
final JSON inside Postgres), written as ``,item,item...``, so Python only moves bytes.

The COPY runs on a blocking connection in a thread of its own: COPY hands over one
message per row, and psycopg's per-row cost on an async connection (about 1.5 us) made
Python, not Postgres, the bottleneck of large snapshots; on a blocking connection it is
about a third of that. The file writes and the fsync also stay off the event loop. A
dedicated thread (not the default executor) keeps long snapshots from queueing behind
each other or delaying the log's fsyncs.

A filtering query may raise on some row (a division by zero, an out-of-range cast in a
where clause). With a ``RowFilter``, the rows are then re-read in the same transaction (same
snapshot) by the filter's unfiltered query, and its ``keep`` callable decides per row.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import orjson
import psycopg
from psycopg.abc import Buffer

_FLUSH_BYTES = 1 << 20
CONNECT_TIMEOUT_S = 10
T = TypeVar("T")
log = logging.getLogger(__name__)


class _Job:
    """State shared by the snapshot thread and the task awaiting it (for cancellation)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.conn: psycopg.Connection | None = None
        self.cancelled = False

    def attach(self, conn: psycopg.Connection) -> None:
        with self.lock:
            if self.cancelled:
                raise psycopg.errors.QueryCanceled("snapshot cancelled")
            self.conn = conn

    def cancel(self) -> psycopg.Connection | None:
        with self.lock:
            self.cancelled = True
            return self.conn


@dataclass(frozen=True, slots=True)
class RowFilter:
    """The fallback when the filtering query raises: ``query`` yields ``item TAB values``
    (values: a JSON object of column texts) for every row, and ``keep(values)`` decides."""

    query: str
    keep: Callable[[dict], bool]


async def copy_snapshot(
    conninfo: str,
    query: str,
    fallback: RowFilter | None,
    path: Path,
    parse_snapshot: Callable[[str, str], T],
    on_snapshot: Callable[[T], None],
) -> int:
    """Write the rows of ``query`` to ``path`` as ``,row,row`` and fsync; return the count.

    ``parse_snapshot(pg_current_snapshot, wal_insert_lsn)`` runs in the copying thread
    (an error fails the snapshot), and ``on_snapshot`` gets its result on the event loop,
    before any row is read. Cancelling the awaiting task cancels the query.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[int] = loop.create_future()
    job = _Job()

    def deliver(snapshot: T) -> None:
        if not done.done():  # not after a cancellation (the caller gave up by then)
            on_snapshot(snapshot)

    def settle(result: int, exc: BaseException | None) -> None:
        if done.done():  # the awaiting task was cancelled
            return
        if exc is not None:
            done.set_exception(exc)
        else:
            done.set_result(result)

    def from_thread(snapshot: str, wal_lsn: str) -> None:
        loop.call_soon_threadsafe(deliver, parse_snapshot(snapshot, wal_lsn))

    def run() -> None:
        result, error = 0, None
        try:
            result = _copy_to_file(conninfo, query, fallback, path, job, from_thread)
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
            error = exc
        try:
            loop.call_soon_threadsafe(settle, result, error)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass

    threading.Thread(target=run, name=f"snapshot-{path.parent.name}", daemon=True).start()
    try:
        return await done
    except asyncio.CancelledError:
        conn = job.cancel()
        if conn is not None:
            try:
                await asyncio.to_thread(conn.cancel_safe)
            except Exception:  # noqa: BLE001 - best effort: the thread stops at its next flush
                pass
        raise


def _copy_to_file(
    conninfo: str,
    query: str,
    fallback: RowFilter | None,
    path: Path,
    job: _Job,
    on_snapshot: Callable[[str, str], None],
) -> int:
    with psycopg.connect(conninfo, connect_timeout=CONNECT_TIMEOUT_S) as conn:
        job.attach(conn)
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        with conn.transaction():
            cur = conn.execute(
                "SELECT pg_current_snapshot()::text, pg_current_wal_insert_lsn()::text"
            )
            row = cur.fetchone()
            assert row is not None
            on_snapshot(row[0], row[1])
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                if fallback is None:
                    rows = _copy_rows(cur, query, fd, job)
                else:
                    try:
                        with conn.transaction():  # a savepoint: the snapshot survives an error
                            rows = _copy_rows(cur, query, fd, job)
                    except (psycopg.DataError, psycopg.errors.FeatureNotSupported) as exc:
                        log.warning("snapshot of %s: Postgres raised on a row (%s); filtering "
                                    "each row with the where clause instead", path.parent.name,
                                    str(exc).strip())
                        os.ftruncate(fd, 0)
                        os.lseek(fd, 0, os.SEEK_SET)
                        rows = _copy_rows(cur, fallback.query, fd, job, fallback.keep)
                os.fsync(fd)
            finally:
                os.close(fd)
    return rows


def _copy_rows(cur: psycopg.Cursor, query: str, fd: int, job: _Job,
               keep: Callable[[dict], bool] | None = None) -> int:
    """COPY ``query`` into ``fd`` in blocks of about _FLUSH_BYTES; with ``keep``, rows are
    ``item TAB values`` and only the items whose values it accepts are written."""
    rows = 0
    pending = bytearray()
    with cur.copy(query) as copy:
        for data in (copy if keep is None else _kept_items(copy, keep)):
            pending += data
            rows += 1
            if len(pending) >= _FLUSH_BYTES:
                if job.cancelled:
                    raise psycopg.errors.QueryCanceled("snapshot cancelled")
                os.write(fd, _to_fragment(pending))
                pending.clear()
    if pending:
        os.write(fd, _to_fragment(pending))
    return rows


def _kept_items(copy: Iterable[Buffer], keep: Callable[[dict], bool]) -> Iterator[bytes]:
    for data in copy:
        item, values = bytes(data).split(b"\t")
        if keep(orjson.loads(values.rstrip(b"\n").replace(b"\\\\", b"\\"))):
            yield item + b"\n"


def _to_fragment(copy_text: bytearray) -> bytes:
    """COPY text rows (``row\\n``...) -> ``,row,row``.

    JSON never contains raw newlines, tabs or CRs, so the only COPY escaping present is
    the doubling of backslashes.
    """
    body = bytes(copy_text[:-1]).replace(b"\\\\", b"\\").replace(b"\n", b",")
    return b"," + body
