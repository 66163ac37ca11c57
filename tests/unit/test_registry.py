"""The shape registry: least-recently-used order, and what a restart keeps or deletes."""

from __future__ import annotations

import errno

import pytest

from shapesync.shapes.definition import ShapeDefinition
from shapesync.shapes.registry import ShapeRegistry
from shapesync.shapes.visibility import SnapshotVisibility
from shapesync.storage.shape_storage import ShapeStorage
from shapesync.tables import ColumnInfo, TableInfo

TABLE = TableInfo(1, "public", "items", (ColumnInfo("id", 23, "int4", None, -1, 0, True, 0),))


def _shape(registry: ShapeRegistry, where: str | None = None):
    shape = registry.create(ShapeDefinition("public", "items", 1, where), TABLE)
    shape.set_visibility(SnapshotVisibility(1, 1, frozenset(), 1))
    shape.storage.snapshot_path.write_bytes(b"")
    shape.save_meta_complete()
    shape.mark_snapshot_complete()
    return shape


def test_least_recently_used_follows_touches_and_removals(tmp_path):
    registry = ShapeRegistry(tmp_path, 1000)
    a, b, c = (_shape(registry, f"id = {i}") for i in range(3))
    assert registry.least_recently_used() is a
    registry.touch(a)
    assert registry.least_recently_used() is b
    registry.remove(b, "test")
    assert registry.least_recently_used() is c
    registry.touch(c)
    assert registry.least_recently_used() is a


def test_restore_brings_shapes_back_with_their_ids(tmp_path):
    registry = ShapeRegistry(tmp_path, 1000)
    ids = {_shape(registry, f"id = {i}").id for i in range(3)}
    registry.close()
    again = ShapeRegistry(tmp_path, 1000)
    again.restore()
    assert set(again.by_id) == ids


def test_restore_deletes_a_shape_whose_snapshot_never_completed(tmp_path):
    registry = ShapeRegistry(tmp_path, 1000)
    unfinished = registry.create(ShapeDefinition("public", "items", 1), TABLE)
    registry.close()
    again = ShapeRegistry(tmp_path, 1000)
    again.restore()
    assert len(again) == 0 and not unfinished.storage.directory.exists()


@pytest.mark.parametrize("code", [errno.EMFILE, errno.EIO])
def test_restore_sets_aside_a_shape_it_cannot_read_and_never_deletes_it(
        tmp_path, monkeypatch, code):
    """Replication goes on without it, so serving it later would show a gap: it is kept
    for the operator under another name and never loaded again."""
    registry = ShapeRegistry(tmp_path, 1000)
    shape = _shape(registry)
    registry.close()

    def unreadable(directory):
        raise OSError(code, "simulated")

    monkeypatch.setattr(ShapeStorage, "read_meta", staticmethod(unreadable))
    again = ShapeRegistry(tmp_path, 1000)
    again.restore()
    assert len(again) == 0
    kept = tmp_path / f".unreadable-{shape.id}"
    assert (kept / "shape.json").exists() and not shape.storage.directory.exists()
    monkeypatch.undo()
    later = ShapeRegistry(tmp_path, 1000)
    later.restore()
    assert len(later) == 0 and (kept / "shape.json").exists()


def test_restore_keeps_one_of_two_shapes_with_the_same_definition(tmp_path):
    """Two directories for one definition (one was unreadable while the other was made):
    the first in directory order is served, the other deleted."""
    first = ShapeRegistry(tmp_path / "a", 1000)
    one = _shape(first)
    first.close()
    second = ShapeRegistry(tmp_path / "b", 1000)
    other = _shape(second)
    second.close()
    other.storage.directory.rename(tmp_path / "a" / other.id)
    again = ShapeRegistry(tmp_path / "a", 1000)
    again.restore()
    assert set(again.by_id) == {min(one.id, other.id)}
    assert len(list((tmp_path / "a").iterdir())) == 1
