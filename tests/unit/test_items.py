"""Log items: keys, insert/update/delete bodies, key changes, tables without a primary key."""

from __future__ import annotations

import orjson

from shapesync.changes import Delete, Insert, Relation, Update
from shapesync.shapes.items import ItemEncoder, row_key
from shapesync.tables import ColumnInfo, TableInfo


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
