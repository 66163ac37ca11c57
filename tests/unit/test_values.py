"""Offsets, keys, log items, schema header, visibility and caching rules."""

from __future__ import annotations

import orjson
import pytest

from shapesync.changes import Delete, Insert, Relation, Update
from shapesync.http import cache
from shapesync.http.identifiers import IdentifierError, parse_identifier, parse_relation
from shapesync.offsets import BEFORE_ALL, FIRST, LogOffset, int_to_lsn, lsn_to_int, parse_offset
from shapesync.shapes.items import ItemEncoder, row_key
from shapesync.shapes.visibility import SnapshotVisibility
from shapesync.tables import ColumnInfo, TableInfo, column_schema


@pytest.mark.parametrize("text,expected", [
    ("-1", BEFORE_ALL), ("0_0", FIRST), ("26800584_4", LogOffset(26800584, 4)),
    ("0_02", LogOffset(0, 2)), ("+5_+1", LogOffset(5, 1)),
])
def test_parse_offset(text, expected):
    assert parse_offset(text) == expected


@pytest.mark.parametrize("text", ["10", "1_2_3", "1_2 ", "10_32.1", "abc", "-5_0", "0_-1", "", "-2"])
def test_parse_offset_rejects(text):
    with pytest.raises(ValueError):
        parse_offset(text)


def test_offset_order_text_and_key():
    offsets = [BEFORE_ALL, FIRST, LogOffset(5, 0), LogOffset(5, 3), LogOffset(6, 0)]
    assert sorted(reversed(offsets)) == offsets
    assert [o.key for o in offsets] == sorted(o.key for o in offsets)
    assert all(LogOffset.from_key(o.key) == o for o in offsets[1:])
    assert str(BEFORE_ALL) == "-1" and str(LogOffset(5, 3)) == "5_3"
    assert lsn_to_int("0/16B3748") == 23803720 and int_to_lsn(23803720) == "0/16B3748"


def test_identifiers():
    assert parse_identifier('"PoT@To"') == "PoT@To"
    assert parse_identifier("PoTaTo") == "potato"
    assert parse_identifier('"fo""o"') == 'fo"o'
    assert parse_relation("public.items") == ("public", "items")
    assert parse_relation('"a.b"') == (None, "a.b")
    for bad, message in [
        (".invalid_shape", "Invalid zero-length delimited identifier"),
        ("a.b.c", "Invalid relation identifier, too many delimiters: a.b.c"),
        ("a b", "Invalid unquoted identifier contains special characters: a b"),
        ('"a"b"', 'Invalid identifier with unescaped quote: a"b'),
    ]:
        with pytest.raises(IdentifierError, match=message.replace(".", r"\.")):
            parse_relation(bad)


def test_row_keys():
    assert row_key('"public"."items"', ("id",), {"id": "1"}) == '"public"."items"/"1"'
    assert row_key('"hello"."world"', ("v",), {"v": "test/test"}) == '"hello"."world"/"test//test"'
    assert row_key('"p"."foo"', ("a", "b"), {"a": "a", "b": None}) == '"p"."foo"/"a"/""'


def _table(pk=True) -> TableInfo:
    cols = (
        ColumnInfo("id", 23, "int4", None, -1, 0, True, 0 if pk else None),
        ColumnInfo("title", 25, "text", None, -1, 0, False, None),
        ColumnInfo("n", 23, "int4", None, -1, 0, False, None),
    )
    return TableInfo(1, "public", "items", cols)


REL = Relation(1, "public", "items", ("id", "title", "n"), (23, 25, 23))


def _items(encoder, change):
    return [(op, orjson.loads(b)) for op, b in encoder.encode(change, 100, 7)]


def test_insert_update_delete_items():
    enc = ItemEncoder(_table())
    [(op, item)] = _items(enc, Insert(REL, 0, {"id": "1", "title": "a", "n": None}))
    assert item == {"key": '"public"."items"/"1"', "value": {"id": "1", "title": "a", "n": None},
                    "headers": {"operation": "insert", "txid": 7, "relation": ["public", "items"]},
                    "offset": "100_0"}
    old = {"id": "1", "title": "a", "n": "5"}
    [(_, upd)] = _items(enc, Update(REL, 2, old, {"id": "1", "title": "b", "n": "5"}))
    assert upd["value"] == {"id": "1", "title": "b"} and upd["offset"] == "100_2"
    [(_, dele)] = _items(enc, Delete(REL, 4, old))
    assert dele["value"] == {"id": "1"} and dele["headers"]["operation"] == "delete"


def test_key_change_is_delete_plus_insert():
    enc = ItemEncoder(_table())
    old = {"id": "1", "title": "a", "n": "5"}
    (op1, d), (op2, i) = _items(enc, Update(REL, 2, old, {"id": "9", "title": "a", "n": "5"}))
    assert (op1, op2) == (2, 3)
    assert d["headers"]["key_change_to"] == '"public"."items"/"9"' and d["value"] == {"id": "1"}
    assert i["headers"]["key_change_from"] == '"public"."items"/"1"'
    assert i["value"] == {"id": "9", "title": "a", "n": "5"} and i["offset"] == "100_3"


def test_pkless_table_key_and_delete_value():
    enc = ItemEncoder(_table(pk=False))
    row = {"id": "1", "title": "a", "n": None}
    [(_, item)] = _items(enc, Delete(REL, 0, row))
    assert item["key"] == '"public"."items"/"1"/"a"/""' and item["value"] == row


def test_schema_header_rules():
    def schema(**kw):
        base = dict(name="c", type_oid=0, type_name="x", element_type=None, typmod=-1, dims=0,
                    not_null=False, pk_index=None)
        return column_schema(ColumnInfo(**{**base, **kw}))
    assert schema(type_name="_varchar", element_type="varchar", typmod=127, dims=1) == {
        "type": "varchar", "dims": 1, "max_length": 123}
    assert schema(type_name="bpchar", typmod=5) == {"type": "bpchar", "length": 1}
    assert schema(type_name="numeric", typmod=(5 << 16) + 4) == {"type": "numeric", "precision": 5, "scale": 0}
    assert schema(type_name="time", typmod=3) == {"type": "time", "precision": 3}
    assert schema(type_name="time", typmod=0) == {"type": "time", "type_mod": 0}
    assert schema(type_name="interval", typmod=(4096 << 16) | 4) == {
        "type": "interval", "precision": 4, "fields": "SECOND"}
    assert schema(type_name="interval", typmod=((2048 | 4096) << 16) | 0xFFFF) == {
        "type": "interval", "fields": "MINUTE TO SECOND"}
    assert schema(type_name="int4", not_null=True, pk_index=0) == {
        "type": "int4", "pk_index": 0, "not_null": True}


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


def test_cursor_and_etag_rules():
    assert cache.next_cursor(20, None, now=cache.CURSOR_EPOCH + 41) == "60"
    assert cache.next_cursor(20, None, now=cache.CURSOR_EPOCH + 40) == "40"
    assert cache.next_cursor(0, None) == "0"
    bumped = int(cache.next_cursor(20, "60", now=cache.CURSOR_EPOCH + 41))
    assert 61 <= bumped <= 100060
    assert cache.if_none_match(['"a:b:c", x'], "a:b:c")
    assert cache.if_none_match(["x, a:b:c"], "a:b:c")
    assert not cache.if_none_match(["W/a:b:c"], "a:b:c")
