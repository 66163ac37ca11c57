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


class ShapeStorage:
    def __init__(self, directory: Path, chunk_threshold: int) -> None:
        self.directory = directory
        self._log = ShapeLog(directory, chunk_threshold)

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

    # -- log: writing ----------------------------------------------------------------
    def append_transaction(self, tx: int, items: list[tuple[int, bytes]]) -> None:
        """Buffer one transaction's items (op offset, JSON); see ``write_pending``."""
        self._log.append_transaction(tx, items)

    def write_pending(self) -> None:
        """Hand buffered items to the OS (cheap; durability comes from ``sync``)."""
        self._log.write_pending()

    def sync(self) -> None:
        """fsync the log (blocking: run in a worker thread)."""
        self._log.sync()

    def publish(self) -> None:
        """Make every synced entry visible to readers."""
        self._log.publish()

    @property
    def last_tx(self) -> int:
        """Commit LSN of the newest appended transaction (0 when the log is empty)."""
        return self._log.last_tx

    # -- log: reading ----------------------------------------------------------------
    @property
    def last_offset(self) -> LogOffset:
        """The newest visible offset (``0_0`` for an empty log)."""
        return self._log.last_offset

    def chunk_end(self, after: LogOffset) -> LogOffset:
        """Where a response starting after ``after`` ends: the next chunk boundary, or the
        last visible offset."""
        return self._log.chunk_end(after)

    def contains(self, offset: LogOffset) -> bool:
        """Whether a client may resume from ``offset``."""
        return self._log.contains(offset)

    def read(self, after: LogOffset, upto: LogOffset) -> bytes:
        """Items with ``after < offset <= upto`` as ``,{...},{...}`` (empty if none)."""
        return self._log.read(after, upto)

    def read_with_snapshot(self, upto: LogOffset) -> SnapshotAndLog:
        """The snapshot's items, then the log's up to ``upto``.

        The snapshot file is opened now, together with the log read, so a shape deleted
        while the result streams stays readable (unlinked) to the end.
        """
        log_bytes = self._log.read(BEFORE_ALL, upto)
        return SnapshotAndLog(os.open(self.snapshot_path, os.O_RDONLY), log_bytes)

    # -- lifecycle -------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._log.closed

    def close(self) -> None:
        self._log.close()

    def delete(self) -> None:
        """Close and remove the directory with everything in it."""
        self._log.close()
        shutil.rmtree(self.directory, ignore_errors=True)


class SnapshotAndLog:
    """Blocks of ``,{item}...`` bytes: the snapshot file's, then the log slice; ``aclose``
    releases the file whether or not the blocks were ever iterated."""

    def __init__(self, fd: int, log_bytes: bytes) -> None:
        self._fd: int | None = fd
        self._log_bytes = log_bytes

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._blocks()

    async def _blocks(self) -> AsyncIterator[bytes]:
        while self._fd is not None and (block := os.read(self._fd, _READ_BLOCK)):
            yield block
        yield self._log_bytes

    async def aclose(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
