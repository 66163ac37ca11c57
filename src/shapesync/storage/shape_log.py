"""One shape's append-only change log: JSON items stored once, served by slicing.

Layout in the shape's directory:

- ``log.json``: the items, each preceded by a comma (``,{...},{...}``), so any range of
  entries is one contiguous byte slice and a response body is ``[`` + slice[1:] + ``]``.
- ``log.idx``: one fixed 32-byte record per item: tx offset, op offset, end position in
  ``log.json``, CRC32 of the item, flags (chunk boundary after this item; last item of
  its transaction).

Appends are buffered per transaction; ``write_pending()`` hands them over, ``sync()`` (in a
worker thread) appends them to both files and fsyncs them, and ``publish()`` then makes
them visible to readers, so readers only ever see durable entries. No descriptor stays
open for a shape: writes open and close the files, reads share a small process-wide cache
(``open_files.py``). Recovery keeps the longest prefix of index records that end on a transaction boundary and whose bytes check out,
and truncates both files to it, so a crash mid-write never exposes half a transaction;
replication then replays the rest from the slot.
"""

from __future__ import annotations

import bisect
import os
import struct
import zlib
from array import array
from collections.abc import AsyncIterator
from pathlib import Path

from shapesync.offsets import FIRST, LogOffset, offset_key, tx_of_key
from shapesync.storage.files import fsync_directory, write_all
from shapesync.storage.open_files import READERS

_RECORD = struct.Struct("<QQQII")
BOUNDARY = 1
TXN_END = 2


class ShapeLog:
    def __init__(self, directory: Path, chunk_threshold: int) -> None:
        self.directory = directory
        self.chunk_threshold = chunk_threshold
        self._keys: list[int] = []
        self._ends = array("Q")
        self._boundaries: list[int] = []
        self._visible = 0  # entries readers may see (durable)
        self._chunk_bytes = 0
        self._pending_data = bytearray()
        self._pending_idx = bytearray()
        # handed over by write_pending(): (log bytes, index bytes, entries up to then)
        self._unsynced: list[tuple[bytes, bytes, int]] = []
        self._durable = 0  # entries fully written and fsynced
        self.data_path = str(directory / "log.json")
        self._idx_path = str(directory / "log.idx")
        directory.mkdir(parents=True, exist_ok=True)
        self._recover()

    # -- recovery -------------------------------------------------------------------
    def _recover(self) -> None:
        data_path, idx_path = self.directory / "log.json", self.directory / "log.idx"
        if not idx_path.exists():
            data_path.write_bytes(b"")
            idx_path.write_bytes(b"")
            fsync_directory(self.directory)  # the new shape's files survive a crash
            fsync_directory(self.directory.parent)
            return
        raw_idx = idx_path.read_bytes()
        data = data_path.read_bytes() if data_path.exists() else b""
        keep_records, keep_end, start = 0, 0, 0
        keys: list[int] = []
        ends = array("Q")
        boundaries: list[int] = []
        for i in range(len(raw_idx) // _RECORD.size):
            tx, op, end, crc, flags = _RECORD.unpack_from(raw_idx, i * _RECORD.size)
            if end > len(data) or end <= start or zlib.crc32(data[start:end]) != crc:
                break
            key = offset_key(tx, op)
            keys.append(key)
            ends.append(end)
            if flags & BOUNDARY:
                boundaries.append(key)
            start = end
            if flags & TXN_END:
                keep_records, keep_end = i + 1, end
        del keys[keep_records:]
        del ends[keep_records:]
        last_key = keys[-1] if keys else -1
        self._boundaries = [b for b in boundaries if b <= last_key]
        self._keys, self._ends, self._visible = keys, ends, keep_records
        self._durable = keep_records
        if keep_records * _RECORD.size != len(raw_idx) or keep_end != len(data):
            with open(idx_path, "r+b") as f:
                f.truncate(keep_records * _RECORD.size)
                os.fsync(f.fileno())
            with open(data_path, "r+b") as f:
                f.truncate(keep_end)
                os.fsync(f.fileno())

    # -- writing --------------------------------------------------------------------
    @property
    def last_offset(self) -> LogOffset:
        """The newest durable offset (``0_0`` for an empty log)."""
        return LogOffset.from_key(self._keys[self._visible - 1]) if self._visible else FIRST

    @property
    def last_tx(self) -> int:
        """The tx offset (commit LSN) of the newest appended entry, durable or not; 0 when
        empty. Replayed transactions at or below it are already in the log."""
        return tx_of_key(self._keys[-1]) if self._keys else FIRST.tx

    def append_transaction(self, tx: int, items: list[tuple[int, bytes]]) -> None:
        """Buffer one transaction's items (op, JSON) in offset order; ``write_pending()``,
        ``sync()`` and ``publish()`` make them durable and visible."""
        end = self._ends[-1] if self._ends else 0
        last = len(items) - 1
        for i, (op, body) in enumerate(items):
            chunk = b"," + body
            end += len(chunk)
            key = offset_key(tx, op)
            flags = TXN_END if i == last else 0
            self._chunk_bytes += len(body)
            if self._chunk_bytes >= self.chunk_threshold:
                flags |= BOUNDARY
                self._boundaries.append(key)
                self._chunk_bytes = 0
            self._pending_data += chunk
            self._pending_idx += _RECORD.pack(tx, op, end, zlib.crc32(chunk), flags)
            self._keys.append(key)
            self._ends.append(end)

    def write_pending(self) -> None:
        """Hand the buffered transactions over to ``sync()`` (no I/O: on the event loop)."""
        if self._pending_data:
            self._unsynced.append(
                (bytes(self._pending_data), bytes(self._pending_idx), len(self._keys)))
            self._pending_data.clear()
            self._pending_idx.clear()

    def sync(self) -> None:
        """Append what ``write_pending()`` handed over to both files and fsync them
        (blocking: run it in a worker thread). The files are opened for this and closed
        again, so no descriptor stays open for a shape between writes, and a closed or
        deleted log raises OSError instead of touching a reused descriptor number."""
        if self.closed:
            raise OSError(f"shape log {self.directory} is closed")
        batches = self._unsynced
        if not batches:
            return
        # A failed attempt (a full disk, an I/O error) may have left part of it in the
        # files: every attempt starts again from the last durable entry, and the batches
        # stay handed over until one succeeds, so a retry never duplicates or loses bytes.
        durable = self._durable
        data_size = self._ends[durable - 1] if durable else 0
        _rewrite_tail(self.data_path, data_size, [data for data, _, _ in batches])
        _rewrite_tail(self._idx_path, durable * _RECORD.size, [idx for _, idx, _ in batches])
        self._durable = batches[-1][2]
        self._unsynced = []

    def publish(self) -> None:
        """Make every written and synced entry visible to readers."""
        self._visible = self._durable

    # -- reading --------------------------------------------------------------------
    def chunk_end(self, after: LogOffset) -> LogOffset:
        """First chunk boundary strictly after ``after``, else the last durable offset."""
        last = self.last_offset
        i = bisect.bisect_right(self._boundaries, after.key)
        if i < len(self._boundaries) and self._boundaries[i] <= last.key:
            return LogOffset.from_key(self._boundaries[i])
        return last

    def _byte_range(self, after: LogOffset, upto: LogOffset) -> tuple[int, int]:
        """(start, end) in log.json of the items with ``after < offset <= upto``."""
        if self.closed:
            raise ValueError(f"shape log {self.directory} is closed")
        lo = bisect.bisect_right(self._keys, after.key, 0, self._visible)
        hi = bisect.bisect_right(self._keys, upto.key, 0, self._visible)
        if hi <= lo:
            return 0, 0
        return (self._ends[lo - 1] if lo else 0), self._ends[hi - 1]

    def range_length(self, after: LogOffset, upto: LogOffset) -> int:
        """How many bytes ``read(after, upto)`` returns."""
        start, end = self._byte_range(after, upto)
        return end - start

    def read(self, after: LogOffset, upto: LogOffset) -> bytes:
        """Items with ``after < offset <= upto`` as ``,{...},{...}`` (empty if none)."""
        start, end = self._byte_range(after, upto)
        if end == start:
            return b""
        return os.pread(READERS.get(self.data_path), end - start, start)

    def open_range(self, after: LogOffset, upto: LogOffset) -> FileSlice:
        """The same items as ``read``, as a slice of log.json on a descriptor of its own,
        to be streamed in bounded pieces (and closed with ``aclose``)."""
        start, end = self._byte_range(after, upto)
        return FileSlice(os.open(self.data_path, os.O_RDONLY), start, end - start)

    def contains(self, offset: LogOffset) -> bool:
        """Whether ``offset`` is a point a client can legitimately resume from."""
        if offset == FIRST or offset == self.last_offset:
            return True
        i = bisect.bisect_left(self._keys, offset.key, 0, self._visible)
        return i < self._visible and self._keys[i] == offset.key

    closed = False

    def close(self) -> None:
        self.closed = True
        READERS.forget(self.data_path)


def _rewrite_tail(path: str, keep: int, pieces: list[bytes]) -> None:
    """Cut ``path`` to its first ``keep`` bytes, append ``pieces`` (all of each: a short
    write continues) and fsync."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.ftruncate(fd, keep)
        for piece in pieces:
            write_all(fd, piece)
        os.fsync(fd)
    finally:
        os.close(fd)


class FileSlice:
    """``length`` bytes of a file from ``start``, read in pieces of at most ``piece``
    bytes on a descriptor owned by this object; ``aclose`` releases it, read or not."""

    def __init__(self, fd: int, start: int, length: int) -> None:
        self._fd: int | None = fd
        self.start = start
        self.length = length

    async def pieces(self, piece: int) -> AsyncIterator[bytes]:
        position, end = self.start, self.start + self.length
        while position < end and self._fd is not None:
            data = os.pread(self._fd, min(piece, end - position), position)
            if not data:
                raise OSError(f"file ended {end - position} bytes early")
            position += len(data)
            yield data

    def close_now(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    async def aclose(self) -> None:
        self.close_now()
