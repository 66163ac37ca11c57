"""The replication sink: what a flush does when a shape's log cannot be written."""

from __future__ import annotations

import asyncio
import errno
import os
import shutil

import orjson
import pytest

from shapesync.changes import Insert, Relation, Transaction
from shapesync.offsets import BEFORE_ALL
from shapesync.shapes.definition import ShapeDefinition
from shapesync.shapes.registry import ShapeRegistry
from shapesync.shapes.sink import ShapeSink, StorageFailure
from shapesync.shapes.visibility import SnapshotVisibility
from shapesync.storage import shape_log
from shapesync.tables import ColumnInfo, TableInfo

TABLE = TableInfo(1, "public", "items", (ColumnInfo("id", 23, "int4", None, -1, 0, True, 0),))
REL = Relation(1, "public", "items", ("id",), (23,))


def _txn(lsn: int, key: str) -> Transaction:
    return Transaction(xid=7, commit_lsn=lsn, end_lsn=lsn + 1,
                       changes=[Insert(REL, 0, {"id": key})], relations_touched={1})


def _shapes(registry: ShapeRegistry, count: int):
    shapes = []
    for i in range(count):
        shape = registry.create(ShapeDefinition("public", "items", 1, f"id > {i}"), TABLE)
        shape.set_visibility(SnapshotVisibility(1, 1, frozenset(), 1))
        shapes.append(shape)
    return shapes


def _ids(shape) -> list[str]:
    data = shape.storage.read(BEFORE_ALL, shape.storage.last_offset)
    return [item["value"]["id"] for item in orjson.loads(b"[" + data[1:] + b"]")] if data else []


def test_a_shape_whose_files_are_gone_is_removed_and_the_others_are_published(tmp_path):
    async def scenario():
        registry = ShapeRegistry(tmp_path, 10_000)
        broken, healthy = _shapes(registry, 2)
        sink = ShapeSink(registry)
        await sink.apply(_txn(100, "5"))
        shutil.rmtree(broken.storage.directory)
        await sink.flush()
        return registry, broken, healthy

    registry, broken, healthy = asyncio.run(scenario())
    assert broken.gone_reason == "the shape's files were removed"
    assert registry.by_shape_id(broken.id) is None
    assert _ids(healthy) == ["5"]


def test_a_full_disk_keeps_everything_pending_and_a_retry_loses_and_duplicates_nothing(
        tmp_path, monkeypatch):
    """The first attempt writes half of the log bytes and then fails with ENOSPC: nothing is
    published, the flush raises (so no position is confirmed), the shape's requests would
    get 503; once space is back the next flush writes everything exactly once."""
    real_write = os.write
    full = {"on": True}

    def write(fd, data):
        if full["on"]:
            full["on"] = False
            real_write(fd, bytes(data)[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    async def scenario():
        registry = ShapeRegistry(tmp_path, 10_000)
        (shape,) = _shapes(registry, 1)
        sink = ShapeSink(registry)
        await sink.apply(_txn(100, "1"))
        monkeypatch.setattr(shape_log.os, "write", write)
        with pytest.raises(StorageFailure):
            await sink.flush()
        assert shape.storage_failing and sink.failing and sink.has_unflushed
        assert _ids(shape) == []  # nothing published
        await sink.apply(_txn(200, "2"))
        await sink.flush()
        return registry, shape, sink

    registry, shape, sink = asyncio.run(scenario())
    assert not shape.storage_failing and not sink.failing
    assert _ids(shape) == ["1", "2"]
    registry.close()
    again = shape_log.ShapeLog(shape.storage.directory, 10_000)  # recovery agrees
    assert again.last_offset == shape.storage.last_offset
    again.close()
