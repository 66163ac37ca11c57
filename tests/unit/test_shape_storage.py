"""ShapeStorage: one shape's files (metadata, snapshot, log) behind one interface."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import orjson
import pytest

from shapesync.offsets import BEFORE_ALL, FIRST, LogOffset
from shapesync.storage import shape_storage
from shapesync.storage.shape_storage import ShapeStorage, SnapshotAndLog


def _storage(tmp_path: Path, chunk_threshold: int = 10_000) -> ShapeStorage:
    return ShapeStorage(tmp_path / "shape", chunk_threshold)


def _item(n: int) -> bytes:
    return orjson.dumps({"n": n})


def _commit(storage: ShapeStorage, tx: int, *ns: int) -> None:
    storage.append_transaction(tx, [(2 * i, _item(n)) for i, n in enumerate(ns)])
    storage.write_pending()
    storage.sync()
    storage.publish()


def _write_snapshot(storage: ShapeStorage, *ns: int) -> None:
    storage.snapshot_path.write_bytes(b"".join(b"," + _item(n) for n in ns))


def _ns(data: bytes) -> list[int]:
    """The ``n`` of each item in a run of ``,{item}`` bytes."""
    return [item["n"] for item in orjson.loads(b"[" + data[1:] + b"]")]


async def _collect(source: SnapshotAndLog) -> bytes:
    try:
        return b"".join([piece async for piece in source.pieces(1 << 20)])
    finally:
        await source.aclose()


def _fds_open_on(path: Path) -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target in (str(path), f"{path} (deleted)"):
            count += 1
    return count


# -- metadata ---------------------------------------------------------------------------


def test_meta_round_trips(tmp_path):
    storage = _storage(tmp_path)
    meta = {"id": "1-2", "snapshot_complete": False, "nested": [1, None, "x"]}
    storage.write_meta(meta)
    assert ShapeStorage.read_meta(storage.directory) == meta


def test_meta_is_replaced_atomically(tmp_path):
    storage = _storage(tmp_path)
    storage.write_meta({"version": 1})
    storage.write_meta({"version": 2})
    assert ShapeStorage.read_meta(storage.directory) == {"version": 2}
    # written to a temporary file and renamed over shape.json: nothing is left behind
    assert sorted(p.name for p in storage.directory.glob("shape.json*")) == ["shape.json"]


def test_damaged_or_missing_meta_raises(tmp_path):
    storage = _storage(tmp_path)
    with pytest.raises(OSError):
        ShapeStorage.read_meta(storage.directory)
    (storage.directory / shape_storage.META_FILE).write_bytes(b'{"id": ')
    with pytest.raises(orjson.JSONDecodeError):
        ShapeStorage.read_meta(storage.directory)


def test_snapshot_path_is_in_the_shape_directory(tmp_path):
    storage = _storage(tmp_path)
    assert storage.snapshot_path == storage.directory / shape_storage.SNAPSHOT_FILE


# -- log --------------------------------------------------------------------------------


def test_appended_entries_are_invisible_until_published(tmp_path):
    storage = _storage(tmp_path)
    storage.append_transaction(100, [(0, _item(1)), (2, _item(2))])
    storage.write_pending()
    storage.sync()
    assert storage.last_offset == FIRST
    assert storage.read(BEFORE_ALL, LogOffset(100, 2)) == b""
    storage.publish()
    assert storage.last_offset == LogOffset(100, 2)
    assert _ns(storage.read(BEFORE_ALL, storage.last_offset)) == [1, 2]


def test_last_tx_counts_appended_entries_before_they_are_published(tmp_path):
    storage = _storage(tmp_path)
    assert storage.last_tx == 0
    storage.append_transaction(100, [(0, _item(1))])
    assert storage.last_tx == 100
    assert storage.last_offset == FIRST


def test_read_slices_between_offsets(tmp_path):
    storage = _storage(tmp_path)
    _commit(storage, 100, 1, 2)
    _commit(storage, 200, 3)
    assert _ns(storage.read(FIRST, storage.last_offset)) == [1, 2, 3]
    assert _ns(storage.read(LogOffset(100, 0), LogOffset(100, 2))) == [2]
    assert _ns(storage.read(LogOffset(100, 2), LogOffset(200, 0))) == [3]
    assert storage.read(LogOffset(200, 0), LogOffset(200, 0)) == b""


def test_contains_and_chunk_end(tmp_path):
    body = _item(0)
    storage = _storage(tmp_path, chunk_threshold=len(body) * 2)  # a boundary every 2 items
    storage.append_transaction(100, [(0, body), (2, body), (4, body)])
    storage.write_pending()
    storage.sync()
    storage.publish()
    assert storage.contains(FIRST) and storage.contains(LogOffset(100, 2))
    assert not storage.contains(LogOffset(100, 1)) and not storage.contains(LogOffset(300, 0))
    assert storage.chunk_end(FIRST) == LogOffset(100, 2)
    assert storage.chunk_end(LogOffset(100, 2)) == LogOffset(100, 4)


# -- snapshot + log ---------------------------------------------------------------------


def test_read_with_snapshot_streams_the_snapshot_then_the_log(tmp_path):
    storage = _storage(tmp_path)
    _write_snapshot(storage, 1, 2)
    _commit(storage, 100, 3)
    _commit(storage, 200, 4)
    data = asyncio.run(_collect(storage.read_with_snapshot(LogOffset(100, 0))))
    assert _ns(data) == [1, 2, 3]  # the log only up to ``upto``


def test_read_with_snapshot_streams_a_large_snapshot_in_blocks(tmp_path):
    storage = _storage(tmp_path)
    count = 120_000  # about 1.3 MiB of items: more than one read block
    _write_snapshot(storage, *range(count))
    assert storage.snapshot_path.stat().st_size > 1 << 20
    _commit(storage, 100, -1)

    async def blocks() -> list[bytes]:
        source = storage.read_with_snapshot(storage.last_offset)
        try:
            return [piece async for piece in source.pieces(1 << 20)]
        finally:
            await source.aclose()

    pieces = asyncio.run(blocks())
    assert len(pieces) >= 3  # two snapshot blocks, then the log slice
    assert _ns(b"".join(pieces)) == [*range(count), -1]


def test_read_with_snapshot_stays_readable_after_the_shape_is_deleted(tmp_path):
    storage = _storage(tmp_path)
    _write_snapshot(storage, 1, 2)
    _commit(storage, 100, 3)
    source = storage.read_with_snapshot(storage.last_offset)
    storage.delete()
    assert not storage.directory.exists()
    assert _ns(asyncio.run(_collect(source))) == [1, 2, 3]


def test_aclose_without_iterating_closes_the_snapshot_file(tmp_path):
    storage = _storage(tmp_path)
    _write_snapshot(storage, 1)
    source = storage.read_with_snapshot(storage.last_offset)
    assert _fds_open_on(storage.snapshot_path) == 1
    asyncio.run(source.aclose())
    assert _fds_open_on(storage.snapshot_path) == 0
    asyncio.run(source.aclose())  # closing twice is harmless


def test_iterating_to_the_end_then_aclose_closes_the_snapshot_file(tmp_path):
    storage = _storage(tmp_path)
    _write_snapshot(storage, 1)
    asyncio.run(_collect(storage.read_with_snapshot(storage.last_offset)))
    assert _fds_open_on(storage.snapshot_path) == 0


def test_read_with_snapshot_needs_the_snapshot_file(tmp_path):
    storage = _storage(tmp_path)
    with pytest.raises(FileNotFoundError):
        storage.read_with_snapshot(storage.last_offset)


# -- lifecycle --------------------------------------------------------------------------


def test_delete_closes_and_removes_everything(tmp_path):
    storage = _storage(tmp_path)
    storage.write_meta({"id": "x"})
    _write_snapshot(storage, 1)
    _commit(storage, 100, 1)
    storage.delete()
    assert storage.closed
    assert not storage.directory.exists()
    with pytest.raises(ValueError):
        storage.read(FIRST, LogOffset(100, 0))


def test_close_keeps_the_files(tmp_path):
    storage = _storage(tmp_path)
    _commit(storage, 100, 1)
    storage.close()
    assert storage.closed
    reopened = _storage(tmp_path)
    assert _ns(reopened.read(FIRST, reopened.last_offset)) == [1]
    reopened.close()
