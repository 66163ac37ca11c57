"""ShapeConsumer: which transactions a shape skips, TRUNCATE, and the items the rest become."""

from __future__ import annotations

import orjson

from shapesync.changes import Delete, Insert, Relation, Transaction, Truncate, Update
from shapesync.shapes.consumer import TRUNCATED, ShapeConsumer
from shapesync.shapes.items import ItemEncoder
from shapesync.shapes.visibility import SnapshotVisibility
from shapesync.tables import ColumnInfo, TableInfo
from shapesync.where import compile_where

ITEMS = TableInfo(1, "public", "items", (
    ColumnInfo("id", 23, "int4", None, -1, 0, True, 0),
    ColumnInfo("n", 23, "int4", None, -1, 0, False, None),
))
REL = Relation(1, "public", "items", ("id", "n"), (23, 23))
OTHER = Relation(2, "public", "other", ("id",), (23,))

# Snapshot taken at WAL position 1000: xids below 110 committed, except 105 (in progress).
VISIBILITY = SnapshotVisibility(xmin=100, xmax=110, xip=frozenset({105}), wal_lsn=1000)


def _consumer(where: str | None = None) -> ShapeConsumer:
    compiled = compile_where(where, ITEMS) if where is not None else None
    return ShapeConsumer(ITEMS.oid, ItemEncoder(ITEMS, None, compiled))


def _txn(*changes, xid: int = 200, commit_lsn: int = 2000) -> Transaction:
    return Transaction(xid, commit_lsn, commit_lsn + 8, list(changes))


def _decoded(items) -> list[tuple[int, dict]]:
    return [(op, orjson.loads(body)) for op, body in items]


def test_insert_becomes_one_log_item():
    items = _consumer().items(_txn(Insert(REL, 0, {"id": "1", "n": "5"})), VISIBILITY, 0)
    [(op, item)] = _decoded(items)
    assert op == 0
    assert item["key"] == '"public"."items"/"1"'
    assert item["value"] == {"id": "1", "n": "5"}
    assert item["offset"] == "2000_0"
    assert item["headers"]["operation"] == "insert" and item["headers"]["txid"] == 200


def test_changes_keep_their_order_and_op_offsets():
    txn = _txn(
        Insert(REL, 0, {"id": "1", "n": "5"}),
        Update(REL, 2, {"id": "1", "n": "5"}, {"id": "1", "n": "6"}),
        Delete(REL, 4, {"id": "1", "n": "6"}),
    )
    items = _decoded(_consumer().items(txn, VISIBILITY, 0))
    assert [op for op, _ in items] == [0, 2, 4]
    assert [i["headers"]["operation"] for _, i in items] == ["insert", "update", "delete"]


def test_transaction_the_snapshot_saw_is_skipped():
    txn = _txn(Insert(REL, 0, {"id": "1", "n": "5"}), xid=50, commit_lsn=900)
    assert VISIBILITY.already_seen(50, 900)
    assert _consumer().items(txn, VISIBILITY, 0) == []


def test_transaction_the_snapshot_did_not_see_is_kept():
    # In progress at snapshot time, committed before the snapshot's WAL position.
    txn = _txn(Insert(REL, 0, {"id": "1", "n": "5"}), xid=105, commit_lsn=900)
    assert len(_consumer().items(txn, VISIBILITY, 0)) == 1


def test_replayed_transaction_is_skipped():
    txn = _txn(Insert(REL, 0, {"id": "1", "n": "5"}), commit_lsn=2000)
    consumer = _consumer()
    assert consumer.items(txn, VISIBILITY, stored_up_to=2000) == []
    assert consumer.items(txn, VISIBILITY, stored_up_to=3000) == []
    assert len(consumer.items(txn, VISIBILITY, stored_up_to=1999)) == 1


def test_truncate_of_the_table_ends_the_shape():
    txn = _txn(Truncate((REL,), 0))
    assert _consumer().items(txn, VISIBILITY, 0) is TRUNCATED


def test_truncate_ends_the_shape_even_after_other_items():
    txn = _txn(
        Insert(REL, 0, {"id": "1", "n": "5"}),
        Truncate((OTHER, REL), 2),
    )
    assert _consumer().items(txn, VISIBILITY, 0) is TRUNCATED


def test_truncate_of_another_table_is_ignored():
    txn = _txn(
        Truncate((OTHER,), 0),
        Insert(REL, 2, {"id": "1", "n": "5"}),
    )
    [(op, _)] = _consumer().items(txn, VISIBILITY, 0)
    assert op == 2


def test_truncate_in_a_skipped_transaction_is_ignored():
    txn = _txn(Truncate((REL,), 0), commit_lsn=2000)
    assert _consumer().items(txn, VISIBILITY, stored_up_to=2000) == []


def test_other_tables_changes_are_ignored():
    txn = _txn(
        Insert(OTHER, 0, {"id": "7"}),
        Insert(REL, 2, {"id": "1", "n": "5"}),
        Delete(OTHER, 4, {"id": "7"}),
    )
    [(op, item)] = _decoded(_consumer().items(txn, VISIBILITY, 0))
    assert op == 2 and item["key"] == '"public"."items"/"1"'


def test_transaction_with_nothing_for_the_shape_is_empty():
    txn = _txn(Insert(OTHER, 0, {"id": "7"}))
    assert _consumer().items(txn, VISIBILITY, 0) == []


def test_update_moving_a_row_out_of_the_where_clause_becomes_a_delete():
    consumer = _consumer("n > 3")
    txn = _txn(Update(REL, 0, {"id": "1", "n": "5"}, {"id": "1", "n": "2"}))
    [(op, item)] = _decoded(consumer.items(txn, VISIBILITY, 0))
    assert op == 0
    assert item["headers"]["operation"] == "delete"
    assert item["value"] == {"id": "1"}
    # and a row outside the clause is not in the shape at all
    assert consumer.items(_txn(Insert(REL, 0, {"id": "2", "n": "1"})), VISIBILITY, 0) == []


def test_truncated_repr():
    assert repr(TRUNCATED) == "TRUNCATED"
