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

from shapesync.changes import Relation
from shapesync.shapes.definition import ShapeDefinition, compile_definition_where
from shapesync.shapes.shape import Shape
from shapesync.shapes.visibility import SnapshotVisibility
from shapesync.storage.shape_storage import ShapeStorage
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
        self._recency: OrderedDict[str, Shape] = OrderedDict()  # least recently used first
        root.mkdir(parents=True, exist_ok=True)

    def __len__(self) -> int:
        return len(self.by_id)

    def restore(self) -> None:
        """Load every shape directory. Damaged ones (no metadata, a snapshot that never
        completed, a where clause that no longer compiles) are deleted. One that cannot be
        read now (an I/O error, too many open files) is never deleted: it is set aside as
        ``.unreadable-<id>`` for the operator and not served again (replication goes on
        without it, so it would have a gap; its clients refetch into a new shape)."""
        for directory in sorted(p for p in self.root.iterdir()
                                if p.is_dir() and not p.name.startswith(".")):
            try:
                shape = self._load(directory)
            except OSError as exc:
                if not isinstance(exc, FileNotFoundError):
                    self._set_aside(directory, exc)
                    continue
                log.warning("removing shape directory %s: %s", directory.name, exc)
                shutil.rmtree(directory, ignore_errors=True)
                continue
            except Exception as exc:  # noqa: BLE001 - damaged: the shape is unusable
                log.warning("removing shape directory %s: %s", directory.name, exc)
                shutil.rmtree(directory, ignore_errors=True)
                continue
            if (twin := self.by_key.get(shape.definition.key)) is not None:
                # made while this one could not be read: keep the first, clients refetch
                log.warning("removing shape directory %s: same definition as shape %s",
                            directory.name, twin.id)
                shape.storage.delete()
                continue
            self._index(shape)
            log.info("restored shape %s on %s.%s at %s", shape.id, shape.definition.schema,
                     shape.definition.table, shape.storage.last_offset)

    @staticmethod
    def _set_aside(directory: Path, exc: OSError) -> None:
        target = directory.with_name(f".unreadable-{directory.name}")
        try:
            directory.rename(target)
        except OSError as rename_exc:
            log.error("shape directory %s cannot be read (%s) nor set aside (%s): not served; "
                      "remove or fix it before the next start", directory, exc, rename_exc)
            return
        log.error("shape directory %s cannot be read (%s): set aside as %s, not served",
                  directory.name, exc, target.name)

    def _load(self, directory: Path) -> Shape:
        meta = ShapeStorage.read_meta(directory)
        if not meta["snapshot_complete"]:
            raise ValueError("snapshot never completed")
        definition = ShapeDefinition.from_json(meta["definition"])
        table_info = TableInfo.from_json(meta["table"])
        shape = Shape(
            meta["id"], definition, table_info, directory, self.chunk_threshold,
            compile_definition_where(definition, table_info),
        )
        if meta["visibility"]:
            shape.set_visibility(SnapshotVisibility.from_json(meta["visibility"]))
        shape.mark_snapshot_complete()
        return shape

    def _index(self, shape: Shape) -> None:
        self._recency[shape.id] = shape
        self.by_id[shape.id] = shape
        self.by_key[shape.definition.key] = shape
        self.by_table.setdefault(shape.definition.table_oid, set()).add(shape)

    def get(self, definition: ShapeDefinition) -> Shape | None:
        return self.by_key.get(definition.key)

    def by_shape_id(self, shape_id: str) -> Shape | None:
        return self.by_id.get(shape_id)

    def removal_reason(self, shape_id: str) -> str | None:
        """Why a recently removed shape went away (None: unknown id, or long forgotten)."""
        return self.removed.get(shape_id)

    def touch(self, shape: Shape) -> Shape:
        """Note that a request used ``shape`` (for least-recently-used eviction)."""
        if shape.id in self._recency:
            self._recency.move_to_end(shape.id)
        return shape

    def least_recently_used(self) -> Shape | None:
        return next(iter(self._recency.values()), None)

    def all(self) -> list[Shape]:
        return list(self.by_id.values())

    def wake_all(self) -> None:
        """Answer every live waiter now (shutdown: they must not hold it up)."""
        for shape in self.by_id.values():
            shape.notify()

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

    def outdated_by(self, relation: Relation) -> list[Shape]:
        """Shapes whose table a Relation message shows changed: another table now has its
        name or oid, or its columns or their types differ from what the shape was made for."""
        outdated = []
        for shape in self.by_id.values():
            t = shape.table
            same_oid = t.oid == relation.relation_id
            same_name = (t.schema, t.name) == (relation.schema, relation.name)
            if not (same_oid or same_name):
                continue
            columns = tuple(c.name for c in t.columns)
            types = tuple(c.type_oid for c in t.columns)
            if not (same_oid and same_name and columns == relation.columns
                    and types == relation.type_oids):
                outdated.append(shape)
        return outdated

    def remove(self, shape: Shape, reason: str) -> None:
        """Forget a shape, wake its waiters (they answer 409) and delete its files."""
        if self.by_id.get(shape.id) is not shape:
            return
        del self.by_id[shape.id]
        self._recency.pop(shape.id, None)
        if self.by_key.get(shape.definition.key) is shape:
            del self.by_key[shape.definition.key]
        self.by_table.get(shape.definition.table_oid, set()).discard(shape)
        log.info("removing shape %s: %s", shape.id, reason)
        self.removed[shape.id] = reason
        while len(self.removed) > REMEMBERED_REMOVALS:
            self.removed.popitem(last=False)
        shape.invalidate(reason)
        shape.storage.delete()

    def close(self) -> None:
        """Close every log and forget the shapes: a request still in flight for this
        database must find nothing, never a shape whose file descriptors are closed."""
        for shape in self.by_id.values():
            shape.storage.close()
        self.by_id.clear()
        self._recency.clear()
        self.by_key.clear()
        self.by_table.clear()
