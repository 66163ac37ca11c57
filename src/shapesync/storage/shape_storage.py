"""Everything one shape keeps on disk, behind one interface.

A shape's directory holds:

- ``shape.json``: what the shapes layer asks to keep (definition, table metadata,
  snapshot visibility, whether the snapshot completed); replaced atomically.
- ``snapshot.json``: the initial snapshot's items, ``,{item},{item}...``, written once
  by the snapshot (see ``snapshot_path``).
- ``log.json`` + ``log.idx``: the change log (``shape_log.py``).

Items are opaque bytes here: storage never parses them. Readers get byte ranges (the
log) or blocks streamed from the snapshot file, always as runs of ``,{item}`` with a
leading comma, and frame them as they need.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import orjson

from shapesync.offsets import BEFORE_ALL, LogOffset
from shapesync.storage.files import write_atomically
from shapesync.storage.shape_log import FileSlice, ShapeLog

META_FILE = "shape.json"
SNAPSHOT_FILE = "snapshot.json"


class ShapeStorage(ShapeLog):
    """A shape's directory: the change log (append, write_pending/sync/publish, chunk_end,
    contains, read: see ``ShapeLog``) plus its metadata and snapshot files."""

    # -- metadata --------------------------------------------------------------------
    def write_meta(self, meta: dict) -> None:
        """Atomically and durably replace shape.json. Blocking I/O."""
        write_atomically(self.directory / META_FILE, orjson.dumps(meta))

    @staticmethod
    def read_meta(directory: Path) -> dict:
        """shape.json of a shape directory; raises OSError / JSONDecodeError when damaged."""
        return orjson.loads((directory / META_FILE).read_bytes())

    # -- snapshot --------------------------------------------------------------------
    @property
    def snapshot_path(self) -> Path:
        """Where the snapshot writer puts ``,{item},{item}...`` (and fsyncs it)."""
        return self.directory / SNAPSHOT_FILE

    def read_with_snapshot(self, upto: LogOffset) -> SnapshotAndLog:
        """The snapshot's items, then the log's up to ``upto``, as two file slices.

        Both files are opened now, so a shape deleted while the result streams stays
        readable (unlinked) to the end.
        """
        log_slice = self.open_range(BEFORE_ALL, upto)
        try:
            fd = os.open(self.snapshot_path, os.O_RDONLY)
        except OSError:
            log_slice.close_now()
            raise
        return SnapshotAndLog(FileSlice(fd, 0, os.fstat(fd).st_size), log_slice)

    # -- lifecycle -------------------------------------------------------------------
    def delete(self) -> None:
        """Close and remove the directory with everything in it."""
        self.close()
        shutil.rmtree(self.directory, ignore_errors=True)


class SnapshotAndLog:
    """The snapshot file's ``,{item}...`` bytes, then the log slice's; ``aclose``
    releases both files whether or not they were ever read."""

    def __init__(self, snapshot: FileSlice, log: FileSlice) -> None:
        self.snapshot = snapshot
        self.log = log

    async def pieces(self, piece: int) -> AsyncIterator[bytes]:
        async for data in self.snapshot.pieces(piece):
            yield data
        async for data in self.log.pieces(piece):
            yield data

    async def aclose(self) -> None:
        await self.snapshot.aclose()
        await self.log.aclose()
