"""Sans-IO decoder for the pgoutput logical replication protocol (version 1).

Hand-written: no maintained PyPI decoder exists (psycopg exposes the COPY_BOTH stream
but does not decode pgoutput). Takes the payload of one XLogData message and returns a
message value; never touches a socket.
Tuple values stay in Postgres' text output form (``str``), which is exactly what the
Electric wire format carries, so nothing is parsed into Python types here.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_I32 = struct.Struct("!i")


class _Unchanged:
    """Marker for an unchanged TOASTed value ('u' column kind)."""

    def __repr__(self) -> str:
        return "UNCHANGED_TOAST"


UNCHANGED_TOAST: Final = _Unchanged()

Tuple = list  # list[str | None | _Unchanged], in relation column order


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type_oid: int
    type_modifier: int
    is_key: bool


@dataclass(frozen=True, slots=True)
class Begin:
    final_lsn: int
    commit_timestamp: int
    xid: int


@dataclass(frozen=True, slots=True)
class Commit:
    flags: int
    commit_lsn: int
    end_lsn: int
    commit_timestamp: int


@dataclass(frozen=True, slots=True)
class RelationMessage:
    relation_id: int
    schema: str
    name: str
    replica_identity: str
    columns: tuple[Column, ...]


@dataclass(frozen=True, slots=True)
class InsertMessage:
    relation_id: int
    new: Tuple


@dataclass(frozen=True, slots=True)
class UpdateMessage:
    relation_id: int
    old: Tuple | None  # full old row ('O') or key columns only ('K'); None without either
    old_is_key_only: bool
    new: Tuple


@dataclass(frozen=True, slots=True)
class DeleteMessage:
    relation_id: int
    old: Tuple
    old_is_key_only: bool


@dataclass(frozen=True, slots=True)
class TruncateMessage:
    relation_ids: tuple[int, ...]
    options: int


@dataclass(frozen=True, slots=True)
class Ignored:
    """Type, Origin and logical Message records: not needed by shapes."""

    tag: str


Message = (
    Begin
    | Commit
    | RelationMessage
    | InsertMessage
    | UpdateMessage
    | DeleteMessage
    | TruncateMessage
    | Ignored
)


class DecodeError(ValueError):
    pass


def _cstring(buf: bytes, pos: int) -> tuple[str, int]:
    end = buf.index(0, pos)
    return buf[pos:end].decode(), end + 1


def _tuple(buf: bytes, pos: int) -> tuple[Tuple, int]:
    (count,) = _U16.unpack_from(buf, pos)
    pos += 2
    values: Tuple = []
    append = values.append
    for _ in range(count):
        kind = buf[pos]
        pos += 1
        if kind == 0x74:  # 't'
            (length,) = _U32.unpack_from(buf, pos)
            pos += 4
            append(buf[pos : pos + length].decode())
            pos += length
        elif kind == 0x6E:  # 'n'
            append(None)
        elif kind == 0x75:  # 'u'
            append(UNCHANGED_TOAST)
        elif kind == 0x62:  # 'b' (binary mode is never requested)
            raise DecodeError("binary tuple data is not supported")
        else:
            raise DecodeError(f"unknown tuple column kind {kind!r}")
    return values, pos


def decode(payload: bytes | memoryview) -> Message:
    """Decode one pgoutput message."""
    buf = bytes(payload)
    tag = buf[0]
    if tag == 0x49:  # 'I'
        (rel,) = _U32.unpack_from(buf, 1)
        if buf[5] != 0x4E:
            raise DecodeError("insert without new tuple")
        new, _ = _tuple(buf, 6)
        return InsertMessage(rel, new)
    if tag == 0x55:  # 'U'
        (rel,) = _U32.unpack_from(buf, 1)
        pos = 5
        old = None
        key_only = False
        if buf[pos] in (0x4B, 0x4F):  # 'K' or 'O'
            key_only = buf[pos] == 0x4B
            old, pos = _tuple(buf, pos + 1)
        if buf[pos] != 0x4E:
            raise DecodeError("update without new tuple")
        new, _ = _tuple(buf, pos + 1)
        return UpdateMessage(rel, old, key_only, new)
    if tag == 0x44:  # 'D'
        (rel,) = _U32.unpack_from(buf, 1)
        key_only = buf[5] == 0x4B
        old, _ = _tuple(buf, 6)
        return DeleteMessage(rel, old, key_only)
    if tag == 0x42:  # 'B'
        final_lsn, ts, xid = struct.unpack_from("!QqI", buf, 1)
        return Begin(final_lsn, ts, xid)
    if tag == 0x43:  # 'C'
        flags, commit_lsn, end_lsn, ts = struct.unpack_from("!BQQq", buf, 1)
        return Commit(flags, commit_lsn, end_lsn, ts)
    if tag == 0x52:  # 'R'
        (rel,) = _U32.unpack_from(buf, 1)
        schema, pos = _cstring(buf, 5)
        name, pos = _cstring(buf, pos)
        identity = chr(buf[pos])
        (ncols,) = _U16.unpack_from(buf, pos + 1)
        pos += 3
        columns = []
        for _ in range(ncols):
            flags = buf[pos]
            colname, pos = _cstring(buf, pos + 1)
            (type_oid,) = _U32.unpack_from(buf, pos)
            (typmod,) = _I32.unpack_from(buf, pos + 4)
            pos += 8
            columns.append(Column(colname, type_oid, typmod, bool(flags & 1)))
        return RelationMessage(rel, schema, name, identity, tuple(columns))
    if tag == 0x54:  # 'T'
        (count,) = _U32.unpack_from(buf, 1)
        options = buf[5]
        rels = struct.unpack_from(f"!{count}I", buf, 6)
        return TruncateMessage(tuple(rels), options)
    if tag in (0x59, 0x4F, 0x4D):  # 'Y' type, 'O' origin, 'M' message
        return Ignored(chr(tag))
    raise DecodeError(f"unknown pgoutput message {chr(tag)!r}")
