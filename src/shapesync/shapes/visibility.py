"""Which streamed transactions an initial snapshot already contains.

A snapshot is described by ``pg_current_snapshot()`` (xmin, xmax, in-progress xids, all
64-bit) plus ``pg_current_wal_insert_lsn()`` read in the same statement. A transaction
visible to the snapshot had written its commit record before that LSN, so a commit at or
after it is never visible and the xid test (which needs 32-bit wraparound care) is only
applied near the snapshot's time. The reference's rule (``xid < xmin``) re-applies
transactions the snapshot saw; this one is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

from shapesync.offsets import lsn_to_int


@dataclass(frozen=True, slots=True)
class SnapshotVisibility:
    xmin: int
    xmax: int
    xip: frozenset[int]
    wal_lsn: int

    @classmethod
    def parse(cls, snapshot_text: str, wal_lsn_text: str) -> SnapshotVisibility:
        xmin, xmax, xip = snapshot_text.split(":")
        in_progress = frozenset(int(x) for x in xip.split(",") if x)
        return cls(int(xmin), int(xmax), in_progress, lsn_to_int(wal_lsn_text))

    def widen(self, xid32: int) -> int:
        """Epoch-extend a 32-bit xid from pgoutput against the snapshot's xmax."""
        delta = (xid32 - (self.xmax & 0xFFFFFFFF)) & 0xFFFFFFFF
        if delta >= 1 << 31:
            delta -= 1 << 32
        return self.xmax + delta

    def already_seen(self, xid32: int, commit_lsn: int) -> bool:
        """True when the snapshot already contains this transaction's effects."""
        if commit_lsn >= self.wal_lsn:
            return False
        xid = self.widen(xid32)
        return xid < self.xmin or (xid < self.xmax and xid not in self.xip)

    def to_json(self) -> dict:
        return {"xmin": self.xmin, "xmax": self.xmax, "xip": sorted(self.xip), "wal_lsn": self.wal_lsn}

    @classmethod
    def from_json(cls, data: dict) -> SnapshotVisibility:
        return cls(data["xmin"], data["xmax"], frozenset(data["xip"]), data["wal_lsn"])
