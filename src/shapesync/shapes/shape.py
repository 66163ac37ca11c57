"""A live shape: its definition, storage, snapshot state and the waiters on its log."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from shapesync.offsets import LogOffset
from shapesync.shapes.consumer import ShapeConsumer
from shapesync.shapes.definition import ShapeDefinition
from shapesync.shapes.items import ItemEncoder
from shapesync.shapes.visibility import SnapshotVisibility
from shapesync.storage.shape_storage import ShapeStorage
from shapesync.tables import TableInfo
from shapesync.where import CompiledWhere


class ShapeGone(Exception):
    """The shape was deleted or invalidated; clients must refetch."""


class Shape:
    def __init__(
        self,
        shape_id: str,
        definition: ShapeDefinition,
        table: TableInfo,
        directory: Path,
        chunk_threshold: int,
        where: CompiledWhere | None = None,
    ) -> None:
        self.id = shape_id
        self.definition = definition
        self.table = table
        self.where = where
        self.consumer = ShapeConsumer(
            definition.table_oid, ItemEncoder(table, definition.columns, where))
        self.schema_header = table.schema_header()
        self.storage = ShapeStorage(directory, chunk_threshold)
        self.visibility: SnapshotVisibility | None = None
        self.snapshot_complete = False
        self.snapshot_error: str | None = None
        self.gone_reason: str | None = None
        self.storage_failing = False  # its newest items could not be written yet
        self._visibility_known = asyncio.Event()
        self._snapshot_done = asyncio.Event()
        self._changed = asyncio.Event()

    # -- persisted metadata -------------------------------------------------------------
    def meta(self) -> dict:
        """What a restart needs to serve this shape again (see ``ShapeRegistry.restore``)."""
        return {
            "id": self.id,
            "definition": self.definition.to_json(),
            "table": self.table.to_json(),
            "visibility": self.visibility.to_json() if self.visibility else None,
            "snapshot_complete": self.snapshot_complete,
        }

    def save_meta(self) -> None:
        """Persist ``meta()`` (blocking I/O)."""
        self.storage.write_meta(self.meta())

    # -- snapshot lifecycle ---------------------------------------------------------------
    def set_visibility(self, visibility: SnapshotVisibility) -> None:
        self.visibility = visibility
        self._visibility_known.set()

    def save_meta_complete(self) -> None:
        """Persist the completed snapshot (blocking I/O: run it in a thread), before
        ``mark_snapshot_complete`` lets readers in."""
        self.snapshot_complete = True
        self.save_meta()

    def mark_snapshot_complete(self) -> None:
        """The snapshot is durable (just taken, or the shape was restored from disk):
        requests waiting for it go on."""
        self.snapshot_complete = True
        self._snapshot_done.set()

    def mark_failed(self, reason: str) -> None:
        self.snapshot_error = reason
        self._visibility_known.set()
        self._snapshot_done.set()

    async def wait_visibility(self) -> bool:
        """Wait until the snapshot's visibility is known; False if the snapshot failed."""
        await self._visibility_known.wait()
        return self.visibility is not None

    async def wait_snapshot(self) -> None:
        await self._snapshot_done.wait()
        if self.gone_reason:  # removed (its snapshot then fails too): clients refetch
            raise ShapeGone(self.gone_reason)
        if self.snapshot_error:
            raise RuntimeError(self.snapshot_error)

    # -- live waiters --------------------------------------------------------------------
    async def read_when_available(
        self, after: LogOffset, deadline: float, give_up: Callable[[], bool],
    ) -> tuple[LogOffset, bytes] | None:
        """(chunk end, items after ``after`` up to it), waiting until the log holds some;
        empty items once the loop's clock passes ``deadline`` or ``give_up()`` is true
        (checked before each wait). None when the shape went away meanwhile.

        Written for fan-out: a change wakes every waiter in one loop iteration and each
        returns in that same step (no helper task per wait).
        """
        loop = asyncio.get_running_loop()
        changed = self._changed  # taken before reading: no lost wake-up
        chunk_end = self.storage.chunk_end(after)
        data = self.storage.read(after, chunk_end)
        while not data:
            if give_up() or loop.time() >= deadline:
                return chunk_end, b""
            try:
                async with asyncio.timeout_at(deadline):
                    await changed.wait()
            except TimeoutError:
                continue
            if self.gone_reason or self.storage.closed:
                return None
            changed = self._changed
            chunk_end = self.storage.chunk_end(after)
            data = self.storage.read(after, chunk_end)
        return chunk_end, data

    def notify(self) -> None:
        """Wake every live waiter (new entries were published, or the shape went away)."""
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    def invalidate(self, reason: str) -> None:
        self.gone_reason = reason
        self._snapshot_done.set()
        self._visibility_known.set()
        self.notify()
