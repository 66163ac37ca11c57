"""The replication sink: what a flush does when a shape's log cannot be written."""

from __future__ import annotations

import asyncio
import shutil

from shapesync.changes import Insert, Relation, Transaction
from shapesync.shapes.definition import ShapeDefinition
from shapesync.shapes.registry import ShapeRegistry
from shapesync.shapes.sink import ShapeSink
from shapesync.shapes.visibility import SnapshotVisibility
from shapesync.tables import ColumnInfo, TableInfo

TABLE = TableInfo(1, "public", "items", (ColumnInfo("id", 23, "int4", None, -1, 0, True, 0),))
REL = Relation(1, "public", "items", ("id",), (23,))


def _txn(lsn: int, key: str) -> Transaction:
    return Transaction(xid=7, commit_lsn=lsn, end_lsn=lsn + 1,
                       changes=[Insert(REL, 0, {"id": key})], relations_touched={1})


def test_a_shape_whose_log_cannot_be_written_is_removed_and_the_others_are_published(tmp_path):
    async def scenario():
        registry = ShapeRegistry(tmp_path, 10_000)
        shapes = []
        for where in ("id > 0", "id > 1"):
            shape = registry.create(ShapeDefinition("public", "items", 1, where), TABLE)
            shape.set_visibility(SnapshotVisibility(1, 1, frozenset(), 1))
            shapes.append(shape)
        broken, healthy = shapes
        sink = ShapeSink(registry)
        await sink.apply(_txn(100, "5"))
        shutil.rmtree(broken.storage.directory)  # its files vanish (as on an I/O error)
        await sink.flush()
        return registry, broken, healthy

    registry, broken, healthy = asyncio.run(scenario())
    assert broken.gone_reason == "the shape's log could not be written"
    assert registry.by_shape_id(broken.id) is None
    assert healthy.storage.last_offset.tx == 100
