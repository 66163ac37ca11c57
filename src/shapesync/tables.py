"""Table metadata as shapes need it: columns, types, primary key, and the ``electric-schema``
description of each column. Plain values: read from the catalog by ``pg.catalog``, stored
with each shape, and used by the where compiler for types.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True, slots=True)
class ColumnInfo:
    name: str
    type_oid: int
    type_name: str
    element_type: str | None
    typmod: int
    dims: int
    not_null: bool
    pk_index: int | None
    # pg_type.typtype: b base, e enum, d domain, c composite, r range, ... ("" = unknown)
    type_kind: str = ""


@dataclass(frozen=True, slots=True)
class TableInfo:
    oid: int
    schema: str
    name: str
    columns: tuple[ColumnInfo, ...]

    @property
    def pk(self) -> tuple[str, ...]:
        keyed = sorted((c.pk_index, c.name) for c in self.columns if c.pk_index is not None)
        return tuple(name for _, name in keyed)

    @property
    def key_columns(self) -> tuple[str, ...]:
        """Primary key columns, or every column for a table without one."""
        return self.pk or tuple(c.name for c in self.columns)

    @property
    def qualified(self) -> str:
        return f"{quote_ident(self.schema)}.{quote_ident(self.name)}"

    def schema_header(self) -> str:
        return orjson.dumps({c.name: column_schema(c) for c in self.columns}).decode()

    def to_json(self) -> dict:
        return {
            "oid": self.oid,
            "schema": self.schema,
            "name": self.name,
            "columns": [list(_column_fields(c)) for c in self.columns],
        }

    @classmethod
    def from_json(cls, data: dict) -> TableInfo:
        return cls(
            data["oid"], data["schema"], data["name"],
            tuple(ColumnInfo(*c) for c in data["columns"]),
        )


def _column_fields(c: ColumnInfo) -> tuple:
    return (c.name, c.type_oid, c.type_name, c.element_type, c.typmod, c.dims, c.not_null,
            c.pk_index, c.type_kind)


_TIME_TYPES = {"timetz", "time", "timestamp", "timestamptz", "date"}
_INTERVAL_FIELDS = [("YEAR", 4), ("MONTH", 2), ("DAY", 8), ("HOUR", 1024), ("MINUTE", 2048), ("SECOND", 4096)]


def column_schema(c: ColumnInfo) -> dict:
    """One column of the ``electric-schema`` header, as the reference describes each type (rule
    order matters)."""
    is_array = c.element_type is not None and c.dims > 0
    type_name = c.element_type if is_array else c.type_name
    out: dict = {"type": type_name}
    if is_array:
        out["dims"] = c.dims
    if c.pk_index is not None:
        out["pk_index"] = c.pk_index
    if c.not_null:
        out["not_null"] = True
    mod = c.typmod
    if type_name in ("varchar", "text") and mod > 0:
        out["max_length"] = mod - 4
    elif type_name == "bpchar" and mod > 0:
        out["length"] = mod - 4
    elif type_name in ("bit", "varbit"):
        out["length"] = mod
    elif type_name == "interval" and mod >= 0:
        rng, precision = (mod >> 16) & 0xFFFF, mod & 0xFFFF
        if precision != 0xFFFF:
            out["precision"] = precision
        if rng != 0x7FFF:
            names = [n for n, bit in _INTERVAL_FIELDS if rng & bit]
            if names:
                out["fields"] = names[0] if len(names) == 1 else f"{names[0]} TO {names[-1]}"
    elif type_name in _TIME_TYPES and mod > 0:
        out["precision"] = mod
    elif type_name == "numeric" and mod >= 0:
        out["precision"] = ((mod - 4) >> 16) & 0xFFFF
        out["scale"] = (mod - 4) & 0xFFFF
    elif mod >= 0:
        out["type_mod"] = mod
    return out
