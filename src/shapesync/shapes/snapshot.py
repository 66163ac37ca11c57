"""Taking a shape's initial snapshot: which query, which fallback, and what the shape
learns (its visibility first, then completion or failure).

The rows are built as final JSON items inside Postgres (``items.snapshot_item_sql``) and
filtered there by the where clause re-rendered from its parse tree; ``pg.snapshot`` copies
them into the shape's snapshot file. Where Postgres raises on some row (a division by
zero, an out-of-range cast), the live path counts that row as not matching, so the
snapshot does the same: it re-reads the table and filters each row with our evaluator.
"""

from __future__ import annotations

import asyncio
import logging

from shapesync.pg.snapshot import RowFilter, copy_snapshot
from shapesync.shapes.items import row_values_sql, snapshot_item_sql
from shapesync.shapes.shape import Shape
from shapesync.shapes.visibility import SnapshotVisibility

log = logging.getLogger(__name__)


class SnapshotSlots:
    """How many snapshots may run at once (each holds a thread and a Postgres connection
    for its duration), shared by every database of the server."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0

    def try_acquire(self) -> bool:
        if self.active >= self.limit:
            return False
        self.active += 1
        return True

    def release(self) -> None:
        self.active -= 1


async def take_snapshot(conninfo: str, shape: Shape) -> int:
    """Write the shape's snapshot file; return the row count. The shape's visibility is
    set (on the event loop) before any row is read."""
    table, where = shape.table, shape.where
    item = snapshot_item_sql(table, shape.definition.columns)
    query = f"COPY (SELECT {item} FROM {table.qualified}"
    query += f" WHERE {where.sql}) TO STDOUT" if where is not None else ") TO STDOUT"
    fallback = None
    if where is not None:
        fallback = RowFilter(
            f"COPY (SELECT {item}, {row_values_sql(sorted(where.columns))} "
            f"FROM {table.qualified}) TO STDOUT",
            where.matches,
        )

    return await copy_snapshot(conninfo, query, fallback, shape.storage.snapshot_path,
                               SnapshotVisibility.parse, shape.set_visibility)


async def run_snapshot(conninfo: str, shape: Shape) -> bool:
    """Take the snapshot and record the outcome on the shape. Returns False when it
    failed (the caller removes the shape); a cancellation fails the shape and propagates."""
    try:
        rows = await take_snapshot(conninfo, shape)
        if shape.gone_reason:
            return True
        await asyncio.to_thread(shape.save_meta_complete)
        shape.mark_snapshot_complete()
        log.info("shape %s: snapshot of %d rows complete", shape.id, rows)
        return True
    except asyncio.CancelledError:  # server shutting down, or the shape was removed
        shape.mark_failed("snapshot cancelled")
        raise
    except Exception as exc:  # noqa: BLE001 - reported to the waiting requests
        log.error("shape %s: snapshot failed: %s", shape.id, exc)
        shape.mark_failed(str(exc))
        return False
