"""Which streamed transactions a snapshot already contains."""

from __future__ import annotations

from shapesync.offsets import lsn_to_int
from shapesync.shapes.visibility import SnapshotVisibility


def test_snapshot_visibility():
    vis = SnapshotVisibility.parse("100:110:102,105", "0/1000")
    lsn = lsn_to_int("0/1000")
    assert vis.already_seen(99, lsn - 1)
    assert vis.already_seen(101, lsn - 1)
    assert not vis.already_seen(102, lsn - 1)  # in progress at snapshot time
    assert not vis.already_seen(110, lsn - 1)  # started after
    assert not vis.already_seen(99, lsn)  # committed after the snapshot's WAL position
    # 64-bit xids: the 32-bit xid from pgoutput is widened against xmax's epoch
    epoch = 3 << 32
    vis = SnapshotVisibility(epoch + 100, epoch + 110, frozenset(), lsn)
    assert vis.widen(105) == epoch + 105
    assert vis.already_seen(99, 0) and not vis.already_seen(111, 0)
    wrap = SnapshotVisibility(epoch + 2, epoch + 5, frozenset(), lsn)
    assert wrap.widen(0xFFFFFFFF) == epoch - 1 and wrap.already_seen(0xFFFFFFFF, 0)
