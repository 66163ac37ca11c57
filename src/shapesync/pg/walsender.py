"""Sans-IO framing of the streaming replication sub-protocol inside CopyBoth.

Server -> client: XLogData ('w') and primary keepalive ('k').
Client -> server: standby status update ('r'). See Postgres' "Streaming Replication
Protocol" documentation. Hand-written because psycopg 3 has no replication API.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass

_XLOG_HEADER = struct.Struct("!QQq")
_KEEPALIVE = struct.Struct("!QqB")
_STATUS = struct.Struct("!cQQQqB")
_PG_EPOCH_OFFSET_US = 946_684_800_000_000  # 2000-01-01 in unix microseconds


@dataclass(frozen=True, slots=True)
class XLogData:
    wal_start: int
    wal_end: int
    payload: memoryview


@dataclass(frozen=True, slots=True)
class Keepalive:
    wal_end: int
    reply_requested: bool


def parse_copy_data(buf: bytes | memoryview) -> XLogData | Keepalive:
    view = memoryview(buf)
    tag = view[0]
    if tag == 0x77:  # 'w'
        start, end, _ = _XLOG_HEADER.unpack_from(view, 1)
        return XLogData(start, end, view[25:])
    if tag == 0x6B:  # 'k'
        end, _, reply = _KEEPALIVE.unpack_from(view, 1)
        return Keepalive(end, bool(reply))
    raise ValueError(f"unexpected CopyData tag {chr(tag)!r}")


def standby_status(flushed_lsn: int, reply_requested: bool = False) -> bytes:
    """A status update reporting ``flushed_lsn`` as written, flushed and applied."""
    now_us = int(time.time() * 1_000_000) - _PG_EPOCH_OFFSET_US
    return _STATUS.pack(b"r", flushed_lsn, flushed_lsn, flushed_lsn, now_us, int(reply_requested))
