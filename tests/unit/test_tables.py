"""The electric-schema description of each column."""

from __future__ import annotations

from shapesync.tables import ColumnInfo, column_schema


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
