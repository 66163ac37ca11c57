"""One shape's view of a replicated transaction: pure, no I/O.

Decides which transactions a shape must skip (already in its snapshot, or replayed after
a restart and already in its log), whether a TRUNCATE of its table ends it, and which log
items the rest become (through the shape's ``ItemEncoder``).
"""

from __future__ import annotations

from typing import Final

from shapesync.changes import Transaction, Truncate
from shapesync.shapes.items import ItemEncoder
from shapesync.shapes.visibility import SnapshotVisibility


class Truncated:
    def __repr__(self) -> str:
        return "TRUNCATED"


TRUNCATED: Final = Truncated()
"""The transaction truncated the shape's table: the shape must be dropped (clients refetch)."""


class ShapeConsumer:
    def __init__(self, table_oid: int, encoder: ItemEncoder) -> None:
        self.table_oid = table_oid
        self.encoder = encoder

    def items(self, txn: Transaction, visibility: SnapshotVisibility,
              stored_up_to: int) -> list[tuple[int, bytes]] | Truncated:
        """(op offset, item JSON) for the shape's log, in order; empty when the shape has
        nothing to add. ``stored_up_to`` is the commit LSN of the newest transaction in the
        shape's log: anything not above it is a replay."""
        if visibility.already_seen(txn.xid, txn.commit_lsn):
            return []
        if txn.commit_lsn <= stored_up_to:
            return []
        oid = self.table_oid
        encode = self.encoder.encode
        items: list[tuple[int, bytes]] = []
        for change in txn.changes:
            if isinstance(change, Truncate):
                if any(r.relation_id == oid for r in change.relations):
                    return TRUNCATED
            elif change.relation.relation_id == oid:
                items.extend(encode(change, txn.commit_lsn, txn.xid))
        return items
