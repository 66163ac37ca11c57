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
from shapesync.storage.shape_log import ShapeLog

_READ_BLOCK = 1 << 20
META_FILE = "shape.json"
SNAPSHOT_FILE = "snapshot.json"


class ShapeStorage(ShapeLog):
    """A shape's directory: the change log (append, write_pending/sync/publish, chunk_end,
    contains, read: see ``ShapeLog``) plus its metadata and snapshot files."""

    # -- metadata --------------------------------------------------------------------
    def write_meta(self, meta: dict) -> None:
        """Atomically replace shape.json (write, fsync, rename). Blocking I/O."""
        tmp = self.directory / (META_FILE + ".tmp")
        with open(tmp, "wb") as f:
            f.write(orjson.dumps(meta))
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.directory / META_FILE)

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
        """The snapshot's items, then the log's up to ``upto``.

        The snapshot file is opened now, together with the log read, so a shape deleted
        while the result streams stays readable (unlinked) to the end.
        """
        log_bytes = self.read(BEFORE_ALL, upto)
        return SnapshotAndLog(os.open(self.snapshot_path, os.O_RDONLY), log_bytes)

    # -- lifecycle -------------------------------------------------------------------
    def delete(self) -> None:
        """Close and remove the directory with everything in it."""
        self.close()
        shutil.rmtree(self.directory, ignore_errors=True)


class SnapshotAndLog:
    """The snapshot file's ``,{item}...`` bytes in blocks (``snapshot_blocks``), then the
    log slice (``log_bytes``); ``aclose`` releases the file whether or not the blocks were
    ever read."""

    def __init__(self, fd: int, log_bytes: bytes) -> None:
        self._fd: int | None = fd
        self.log_bytes = log_bytes

    async def snapshot_blocks(self) -> AsyncIterator[bytes]:
        while self._fd is not None and (block := os.read(self._fd, _READ_BLOCK)):
            yield block

    async def aclose(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
