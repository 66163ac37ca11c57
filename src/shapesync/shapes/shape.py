"""A live shape: its definition, log, snapshot state and the waiters on its log."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from shapesync.shapes.log_items import ItemEncoder
from shapesync.shapes.visibility import SnapshotVisibility
from shapesync.storage.shape_log import ShapeLog
from shapesync.tables import TableInfo
from shapesync.where import CompiledWhere


@dataclass(frozen=True, slots=True)
class ShapeDefinition:
    """What makes two requests the same shape (spec 6.2), keyed in full, not by a hash."""

    schema: str
    table: str
    table_oid: int
    where: str | None = None
    columns: tuple[str, ...] | None = None

    @property
    def key(self) -> str:
        return orjson.dumps(
            [self.schema, self.table, self.table_oid, self.where, self.columns]
        ).decode()

    def new_shape_id(self) -> str:
        digest = int.from_bytes(hashlib.sha256(self.key.encode()).digest()[:4], "big") >> 5
        return f"{digest}-{time.time_ns() // 1_000_000}"


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
        self.directory = directory
        self.encoder = ItemEncoder(table, definition.columns, where)
        self.schema_header = table.schema_header()
        self.log = ShapeLog(directory, chunk_threshold)
        self.visibility: SnapshotVisibility | None = None
        self.snapshot_complete = False
        self.snapshot_error: str | None = None
        self.gone_reason: str | None = None
        self._visibility_known = asyncio.Event()
        self._snapshot_done = asyncio.Event()
        self._changed = asyncio.Event()

    # -- persisted metadata -------------------------------------------------------------
    @property
    def meta_path(self) -> Path:
        return self.directory / "shape.json"

    @property
    def snapshot_path(self) -> Path:
        return self.directory / "snapshot.json"

    def meta(self) -> dict:
        return {
            "id": self.id,
            "definition": [self.definition.schema, self.definition.table, self.definition.table_oid,
                           self.definition.where, self.definition.columns],
            "table": self.table.to_json(),
            "visibility": self.visibility.to_json() if self.visibility else None,
            "snapshot_complete": self.snapshot_complete,
        }

    def save_meta(self) -> None:
        """Atomically replace shape.json (write, fsync, rename)."""
        tmp = self.directory / "shape.json.tmp"
        with open(tmp, "wb") as f:
            f.write(orjson.dumps(self.meta()))
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.meta_path)

    # -- snapshot lifecycle ---------------------------------------------------------------
    def set_visibility(self, visibility: SnapshotVisibility) -> None:
        self.visibility = visibility
        self._visibility_known.set()

    def save_meta_complete(self) -> None:
        """Persist the completed snapshot (blocking I/O: run it in a thread)."""
        self.snapshot_complete = True
        self.save_meta()

    def mark_snapshot_complete(self) -> None:
        self.snapshot_complete = True
        self._snapshot_done.set()

    def restore_complete(self) -> None:
        """A shape reloaded from disk: its snapshot is already durable."""
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
        if self.snapshot_error:
            raise RuntimeError(self.snapshot_error)
        if self.gone_reason:
            raise ShapeGone(self.gone_reason)

    # -- live waiters --------------------------------------------------------------------
    def change_event(self) -> asyncio.Event:
        """The event the *next* publish or invalidation sets; take it before reading."""
        return self._changed

    def notify(self) -> None:
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    def invalidate(self, reason: str) -> None:
        self.gone_reason = reason
        self._snapshot_done.set()
        self._visibility_known.set()
        self.notify()
