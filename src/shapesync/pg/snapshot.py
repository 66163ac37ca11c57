"""A shape's initial snapshot: one REPEATABLE READ transaction, rows written as JSON.

The first statement fixes the transaction's snapshot and reports its visibility (xmin,
xmax, in-progress xids) with the WAL insert position, which the shape uses to skip
streamed transactions the snapshot already contains. Rows are built as final JSON text by
Postgres (see ``snapshot_item_sql``) and streamed with COPY, so Python only moves bytes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import psycopg

from shapesync.pg.inspector import TableInfo
from shapesync.shapes.log_items import snapshot_item_sql
from shapesync.shapes.visibility import SnapshotVisibility

_FLUSH_BYTES = 1 << 20


async def take_snapshot(
    conninfo: str,
    table: TableInfo,
    columns: tuple[str, ...] | None,
    path: Path,
    on_visibility: Callable[[SnapshotVisibility], None],
) -> int:
    """Write the snapshot to ``path`` as ``,{...},{...}``; return the row count."""
    query = f"COPY (SELECT {snapshot_item_sql(table, columns)} FROM {table.qualified}) TO STDOUT"
    rows = 0
    async with await psycopg.AsyncConnection.connect(conninfo) as conn:
        await conn.set_isolation_level(psycopg.IsolationLevel.REPEATABLE_READ)
        await conn.set_read_only(True)
        async with conn.transaction():
            cur = await conn.execute(
                "SELECT pg_current_snapshot()::text, pg_current_wal_insert_lsn()::text"
            )
            snap, lsn = await cur.fetchone()
            on_visibility(SnapshotVisibility.parse(snap, lsn))
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                pending = bytearray()
                async with cur.copy(query) as copy:
                    async for data in copy:
                        pending += data
                        rows += 1
                        if len(pending) >= _FLUSH_BYTES:
                            os.write(fd, _to_fragment(pending))
                            pending.clear()
                if pending:
                    os.write(fd, _to_fragment(pending))
                os.fsync(fd)
            finally:
                os.close(fd)
    return rows


def _to_fragment(copy_text: bytearray) -> bytes:
    """COPY text rows (``row\\n``...) -> ``,row,row``.

    JSON never contains raw newlines, tabs or CRs, so the only COPY escaping present is
    the doubling of backslashes.
    """
    body = bytes(copy_text[:-1]).replace(b"\\\\", b"\\").replace(b"\n", b",")
    return b"," + body
