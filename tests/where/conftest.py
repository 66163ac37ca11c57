from __future__ import annotations

import pytest

from shapesync.tables import ColumnInfo, TableInfo

# name, typname, element typname, oid
_COLUMNS = [
    ("id", "int4", None, 23), ("n", "int8", None, 20), ("s", "int2", None, 21),
    ("i", "int4", None, 23), ("price", "numeric", None, 1700), ("f", "float8", None, 701),
    ("r", "float4", None, 700), ("b", "bool", None, 16), ("b2", "bool", None, 16),
    ("title", "text", None, 25), ("status", "text", None, 25), ("v", "varchar", None, 1043),
    ("c", "bpchar", None, 1042), ("u", "uuid", None, 2950), ("d", "date", None, 1082),
    ("t", "time", None, 1083), ("ts", "timestamp", None, 1114),
    ("created_at", "timestamptz", None, 1184), ("iv", "interval", None, 1186),
    ("tags", "_text", "text", 1009), ("nums", "_int4", "int4", 1007),
    ("mood", "mood", None, 16500), ("j", "jsonb", None, 3802), ("raw", "bytea", None, 17),
    ("Weird \"Col\"", "int4", None, 23),
]


def make_table() -> TableInfo:
    cols = tuple(
        ColumnInfo(name, oid, typ, elem, -1, 1 if elem else 0, name == "id",
                   0 if name == "id" else None, "e" if typ == "mood" else "b")
        for name, typ, elem, oid in _COLUMNS
    )
    return TableInfo(16400, "public", "items", cols)


@pytest.fixture(scope="session")
def table() -> TableInfo:
    return make_table()
