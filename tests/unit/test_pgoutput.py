"""The pgoutput decoder and the transaction collector, on bytes captured from Postgres 18
(``pg_logical_slot_get_binary_changes`` with proto_version 1, REPLICA IDENTITY FULL)."""

from __future__ import annotations

import pytest

from shapesync.changes import Delete, Insert, Transaction, Truncate, Update
from shapesync.pg import pgoutput
from shapesync.pg.collector import Collector, ProtocolError
from shapesync.pg.walsender import Keepalive, XLogData, parse_copy_data, standby_status

RELATION = "52000040007075626c69630074006600030169640000000017ffffffff016e616d650000000019ffffffff016269670000000019ffffffff"
CAPTURED = [
    # insert into t values (1,'a',null)
    "4200000000016f2b480003044ea911aea4000002f2",
    RELATION,
    "49000040004e00037400000001317400000001616e",
    "430000000000016f2b4800000000016f2b780003044ea911aea4",
    # begin; update t set name='b' where id=1; delete from t where id=1; commit
    "4200000000016f2c180003044ea911b321000002f3",
    "55000040004f00037400000001317400000001616e4e00037400000001317400000001626e",
    "44000040004f00037400000001317400000001626e",
    "430000000000016f2c1800000000016f2c480003044ea911b321",
    # truncate t
    "4200000000016f37c80003044ea911b60a000002f4",
    RELATION,
    "54000000010000004000",
    "430000000000016f37c800000000016f39380003044ea911b60a",
]


def decoded(i: int):
    return pgoutput.decode(bytes.fromhex(CAPTURED[i]))


def test_begin_commit():
    begin = decoded(0)
    assert begin == pgoutput.Begin(final_lsn=0x16F2B48, commit_timestamp=begin.commit_timestamp, xid=754)
    commit = decoded(3)
    assert (commit.commit_lsn, commit.end_lsn) == (0x16F2B48, 0x16F2B78)


def test_relation():
    rel = decoded(1)
    assert (rel.relation_id, rel.schema, rel.name, rel.replica_identity) == (16384, "public", "t", "f")
    assert [(c.name, c.type_oid, c.is_key) for c in rel.columns] == [
        ("id", 23, True), ("name", 25, True), ("big", 25, True)]


def test_tuples_with_null_and_old_rows():
    assert decoded(2) == pgoutput.InsertMessage(16384, ["1", "a", None])
    update = decoded(5)
    assert update.old == ["1", "a", None] and update.new == ["1", "b", None]
    assert not update.old_is_key_only
    assert decoded(6) == pgoutput.DeleteMessage(16384, ["1", "b", None], False)
    assert decoded(10) == pgoutput.TruncateMessage((16384,), 0)


def test_unknown_message_is_an_error():
    with pytest.raises(pgoutput.DecodeError):
        pgoutput.decode(b"Z")


def test_collector_builds_transactions_with_op_offsets():
    collector = Collector()
    out = [collector.feed(pgoutput.decode(bytes.fromhex(h))) for h in CAPTURED]
    txns = [o for o in out if isinstance(o, Transaction)]
    assert [t.xid for t in txns] == [754, 755, 756]
    first, second, third = txns
    assert first.commit_lsn == 0x16F2B48 and first.end_lsn == 0x16F2B78
    (ins,) = first.changes
    assert isinstance(ins, Insert) and ins.op == 0 and ins.new == {"id": "1", "name": "a", "big": None}
    upd, dele = second.changes
    assert isinstance(upd, Update) and upd.op == 0 and upd.old["name"] == "a" and upd.new["name"] == "b"
    assert isinstance(dele, Delete) and dele.op == 2
    (trunc,) = third.changes
    assert isinstance(trunc, Truncate) and trunc.relations[0].name == "t"
    assert not collector.in_transaction


def test_unchanged_toast_takes_old_value_or_is_left_out():
    collector = Collector()
    collector.feed(decoded(1))
    collector.feed(decoded(0))
    rel_id = 16384
    old = ["1", "a", "huge"]
    collector.feed(pgoutput.UpdateMessage(rel_id, old, False, ["1", "b", pgoutput.UNCHANGED_TOAST]))
    collector.feed(pgoutput.UpdateMessage(rel_id, None, False, ["1", "c", pgoutput.UNCHANGED_TOAST]))
    txn = collector.feed(decoded(3))
    assert txn.changes[0].new == {"id": "1", "name": "b", "big": "huge"}
    assert txn.changes[1].new == {"id": "1", "name": "c"}


def test_change_outside_transaction_is_a_protocol_error():
    collector = Collector()
    collector.feed(decoded(1))
    with pytest.raises(ProtocolError):
        collector.feed(decoded(2))


def test_walsender_framing():
    frame = parse_copy_data(b"w" + (1).to_bytes(8, "big") + (2).to_bytes(8, "big") + bytes(8) + b"B...")
    assert isinstance(frame, XLogData) and frame.wal_end == 2 and bytes(frame.payload) == b"B..."
    keepalive = parse_copy_data(b"k" + (77).to_bytes(8, "big") + bytes(8) + b"\x01")
    assert keepalive == Keepalive(77, True)
    status = standby_status(0x1234)
    assert status[:1] == b"r" and int.from_bytes(status[9:17], "big") == 0x1234 and len(status) == 34
