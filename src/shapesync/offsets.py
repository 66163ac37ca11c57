"""Log offsets: ``<tx_offset>_<op_offset>`` pairs, plus the request-only ``-1``.

The tx part is a commit LSN as a 64-bit integer; the op part is ``2*k`` for the k-th change
of the transaction (``2*k+1`` for the insert half of a key-changing update). Offsets are
compared as pairs; internally they are also folded into one integer (``key``) so that
sorted lists of them can be bisected cheaply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_OP_BITS = 32
_GRAMMAR = re.compile(r"\+?([0-9]+)_\+?([0-9]+)")


@dataclass(frozen=True, order=True, slots=True)
class LogOffset:
    tx: int
    op: int

    def __str__(self) -> str:
        if self.tx < 0:
            return "-1"
        return f"{self.tx}_{self.op}"

    @property
    def key(self) -> int:
        """One integer with the same ordering as the pair (for bisecting)."""
        return (self.tx << _OP_BITS) | self.op

    @classmethod
    def from_key(cls, key: int) -> LogOffset:
        if key < 0:
            return BEFORE_ALL
        return cls(key >> _OP_BITS, key & ((1 << _OP_BITS) - 1))

    @property
    def is_before_all(self) -> bool:
        return self.tx < 0


def offset_key(tx: int, op: int) -> int:
    """``LogOffset(tx, op).key`` without building the offset (for hot loops)."""
    return (tx << _OP_BITS) | op


def tx_of_key(key: int) -> int:
    """The tx part of a key (``LogOffset.from_key(key).tx`` without building it)."""
    return key >> _OP_BITS


BEFORE_ALL = LogOffset(-1, 0)
FIRST = LogOffset(0, 0)


def parse_offset(text: str) -> LogOffset:
    """Parse the ``offset`` request parameter; raise ValueError on anything else.

    Like the reference, leading zeros and a leading ``+`` are accepted; unlike it,
    negative components are a format error rather than a crash.
    """
    if text == "-1":
        return BEFORE_ALL
    match = _GRAMMAR.fullmatch(text)
    if match is None:
        raise ValueError(f"invalid offset {text!r}")
    tx, op = int(match.group(1)), int(match.group(2))
    if tx >= 1 << 64 or op >= 1 << _OP_BITS:
        raise ValueError(f"offset out of range {text!r}")
    return LogOffset(tx, op)


def lsn_to_int(text: str) -> int:
    """``'0/16B3748'`` -> 23803720."""
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) + int(lo, 16)


def int_to_lsn(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"
