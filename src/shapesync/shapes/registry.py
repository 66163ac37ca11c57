"""The shapes of one database: lookup by id, by definition and by table; persistence.

Each shape lives in ``<root>/<shape_id>/``. On start, shapes whose snapshot completed are
reloaded with their ids (their logs recover themselves); shapes whose snapshot did not
complete are removed, since no client can have read them.
"""

from __future__ import annotations

import logging
import shutil
from collections import OrderedDict
from pathlib import Path

import orjson

from shapesync.shapes.params import compile_definition_where
from shapesync.shapes.shape import Shape, ShapeDefinition
from shapesync.shapes.visibility import SnapshotVisibility
from shapesync.tables import TableInfo
from shapesync.where import CompiledWhere

log = logging.getLogger(__name__)
REMEMBERED_REMOVALS = 10_000


class ShapeRegistry:
    def __init__(self, root: Path, chunk_threshold: int) -> None:
        self.root = root
        self.chunk_threshold = chunk_threshold
        self.by_id: dict[str, Shape] = {}
        self.by_key: dict[str, Shape] = {}
        self.by_table: dict[int, set[Shape]] = {}
        # why recently removed shapes went away, told to clients still asking for them
        self.removed: OrderedDict[str, str] = OrderedDict()
        root.mkdir(parents=True, exist_ok=True)

    def __len__(self) -> int:
        return len(self.by_id)

    def restore(self) -> None:
        for directory in sorted(p for p in self.root.iterdir() if p.is_dir()):
            meta_path = directory / "shape.json"
            try:
                meta = orjson.loads(meta_path.read_bytes())
                if not meta["snapshot_complete"]:
                    raise ValueError("snapshot never completed")
                schema, table, oid, where, columns = meta["definition"]
                definition = ShapeDefinition(
                    schema, table, oid, where, tuple(columns) if columns else None
                )
                table_info = TableInfo.from_json(meta["table"])
                shape = Shape(
                    meta["id"], definition, table_info, directory, self.chunk_threshold,
                    compile_definition_where(definition, table_info),
                )
                if meta["visibility"]:
                    shape.set_visibility(SnapshotVisibility.from_json(meta["visibility"]))
                shape.restore_complete()
            except Exception as exc:  # noqa: BLE001 - any damage means the shape is unusable
                log.warning("removing shape directory %s: %s", directory.name, exc)
                shutil.rmtree(directory, ignore_errors=True)
                continue
            self._index(shape)
            log.info("restored shape %s on %s.%s at %s", shape.id, schema, table, shape.log.last_offset)

    def _index(self, shape: Shape) -> None:
        self.by_id[shape.id] = shape
        self.by_key[shape.definition.key] = shape
        self.by_table.setdefault(shape.definition.table_oid, set()).add(shape)

    def get(self, definition: ShapeDefinition) -> Shape | None:
        return self.by_key.get(definition.key)

    def create(self, definition: ShapeDefinition, table: TableInfo,
               where: CompiledWhere | None = None) -> Shape:
        shape_id = definition.new_shape_id()
        while shape_id in self.by_id:
            shape_id = definition.new_shape_id()
        shape = Shape(shape_id, definition, table, self.root / shape_id, self.chunk_threshold,
                      where)
        shape.save_meta()
        self._index(shape)
        return shape

    def for_tables(self, table_oids: set[int]) -> list[Shape]:
        found: list[Shape] = []
        for oid in table_oids:
            found.extend(self.by_table.get(oid, ()))
        return found

    def remove(self, shape: Shape, reason: str) -> None:
        """Forget a shape, wake its waiters (they answer 409) and delete its files."""
        if self.by_id.get(shape.id) is not shape:
            return
        del self.by_id[shape.id]
        if self.by_key.get(shape.definition.key) is shape:
            del self.by_key[shape.definition.key]
        self.by_table.get(shape.definition.table_oid, set()).discard(shape)
        log.info("removing shape %s: %s", shape.id, reason)
        self.removed[shape.id] = reason
        while len(self.removed) > REMEMBERED_REMOVALS:
            self.removed.popitem(last=False)
        shape.invalidate(reason)
        shape.log.close()
        shutil.rmtree(shape.directory, ignore_errors=True)

    def remove_all(self, reason: str) -> None:
        for shape in list(self.by_id.values()):
            self.remove(shape, reason)

    def close(self) -> None:
        """Close every log and forget the shapes: a request still in flight for this
        database must find nothing, never a shape whose file descriptors are closed."""
        for shape in self.by_id.values():
            shape.log.close()
        self.by_id.clear()
        self.by_key.clear()
        self.by_table.clear()
