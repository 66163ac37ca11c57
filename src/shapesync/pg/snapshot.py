"""A shape's initial snapshot: one REPEATABLE READ transaction, rows written as JSON.

The first statement fixes the transaction's snapshot and reports its visibility (xmin,
xmax, in-progress xids) with the WAL insert position, which the shape uses to skip
streamed transactions the snapshot already contains. Rows are built as final JSON text by
Postgres (see ``snapshot_item_sql``) and streamed with COPY, so Python only moves bytes.

The COPY runs on a blocking connection in a thread of its own: COPY hands over one
message per row, and psycopg's per-row cost on an async connection (about 1.5 us) made
Python, not Postgres, the bottleneck of large snapshots; on a blocking connection it is
about a third of that. The file writes and the fsync also stay off the event loop. A
dedicated thread (not the default executor) keeps long snapshots from queueing behind
each other or delaying the log's fsyncs.

A where clause is evaluated by Postgres (the SQL re-rendered from its parse tree). Where
Postgres raises on some row (a division by zero, an out-of-range cast), the live path
counts that row as not matching; the snapshot then does the same by re-reading the table
in the same transaction (same snapshot) and filtering each row with our evaluator.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

import orjson
import psycopg

from shapesync.shapes.log_items import row_values_sql, snapshot_item_sql
from shapesync.shapes.visibility import SnapshotVisibility
from shapesync.tables import TableInfo
from shapesync.where import CompiledWhere

_FLUSH_BYTES = 1 << 20
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


async def take_snapshot(
    conninfo: str,
    table: TableInfo,
    columns: tuple[str, ...] | None,
    where: CompiledWhere | None,
    path: Path,
    on_visibility: Callable[[SnapshotVisibility], None],
) -> int:
    """Write the snapshot to ``path`` as ``,{...},{...}``; return the row count.

    ``on_visibility`` is called on the event loop, before any row is read.
    """
    item = snapshot_item_sql(table, columns)
    query = f"COPY (SELECT {item} FROM {table.qualified}"
    query += f" WHERE {where.sql}) TO STDOUT" if where is not None else ") TO STDOUT"
    fallback = None
    if where is not None:
        fallback = _Fallback(
            f"COPY (SELECT {item}, {row_values_sql(sorted(where.columns))} "
            f"FROM {table.qualified}) TO STDOUT",
            where,
        )
    loop = asyncio.get_running_loop()
    done: asyncio.Future[int] = loop.create_future()
    job = _Job()

    def deliver(visibility: SnapshotVisibility) -> None:
        if not done.done():  # not after a cancellation (the shape is failed by then)
            on_visibility(visibility)

    def settle(result: int | None, exc: BaseException | None) -> None:
        if done.done():  # the awaiting task was cancelled
            return
        if exc is not None:
            done.set_exception(exc)
        else:
            done.set_result(result)

    def run() -> None:
        result, error = None, None
        try:
            result = _copy_to_file(
                conninfo, query, fallback, path, job,
                lambda visibility: loop.call_soon_threadsafe(deliver, visibility),
            )
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


class _Fallback:
    """The unfiltered query (item, referenced columns) and the evaluator that filters it."""

    def __init__(self, query: str, where: CompiledWhere) -> None:
        self.query = query
        self.where = where


def _copy_to_file(
    conninfo: str,
    query: str,
    fallback: _Fallback | None,
    path: Path,
    job: _Job,
    on_visibility: Callable[[SnapshotVisibility], None],
) -> int:
    with psycopg.connect(conninfo) as conn:
        job.attach(conn)
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        with conn.transaction():
            cur = conn.execute(
                "SELECT pg_current_snapshot()::text, pg_current_wal_insert_lsn()::text"
            )
            snap, lsn = cur.fetchone()
            on_visibility(SnapshotVisibility.parse(snap, lsn))
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
                        rows = _copy_filtered_rows(cur, fallback, fd, job)
                os.fsync(fd)
            finally:
                os.close(fd)
    return rows


def _copy_rows(cur: psycopg.Cursor, query: str, fd: int, job: _Job) -> int:
    rows = 0
    pending = bytearray()
    with cur.copy(query) as copy:
        for data in copy:
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


def _copy_filtered_rows(cur: psycopg.Cursor, fallback: _Fallback, fd: int, job: _Job) -> int:
    """COPY rows ``<item> TAB <values>``: keep the items whose values match the where clause."""
    rows = 0
    pending = bytearray()
    matches = fallback.where.matches
    with cur.copy(fallback.query) as copy:
        for data in copy:
            item, values = bytes(data).split(b"\t")
            if not matches(orjson.loads(values.rstrip(b"\n").replace(b"\\\\", b"\\"))):
                continue
            pending += item + b"\n"
            rows += 1
            if len(pending) >= _FLUSH_BYTES:
                if job.cancelled:
                    raise psycopg.errors.QueryCanceled("snapshot cancelled")
                os.write(fd, _to_fragment(pending))
                pending.clear()
    if pending:
        os.write(fd, _to_fragment(pending))
    return rows


def _to_fragment(copy_text: bytearray) -> bytes:
    """COPY text rows (``row\\n``...) -> ``,row,row``.

    JSON never contains raw newlines, tabs or CRs, so the only COPY escaping present is
    the doubling of backslashes.
    """
    body = bytes(copy_text[:-1]).replace(b"\\\\", b"\\").replace(b"\n", b",")
    return b"," + body
