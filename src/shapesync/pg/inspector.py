"""Table metadata from the catalog: columns, types, primary key, and the schema header.

Also parses the ``root_table`` path segment with the reference's identifier rules, so
that bad names get the reference's error messages before Postgres is asked anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import orjson
import psycopg

_UNQUOTED = re.compile(r"[^\W\d][\w$]*", re.UNICODE)


class IdentifierError(ValueError):
    pass


class TableLookupError(ValueError):
    pass


def parse_identifier(text: str) -> str:
    """One identifier: ``"quoted"`` keeps case (``""`` -> ``"``); unquoted is lower-cased."""
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        inner = text[1:-1]
        if inner == "":
            raise IdentifierError("Invalid zero-length delimited identifier")
        if '"' in inner.replace('""', ""):
            raise IdentifierError(f"Invalid identifier with unescaped quote: {inner}")
        return inner.replace('""', '"')
    if text == "":
        raise IdentifierError("Invalid zero-length delimited identifier")
    if not _UNQUOTED.fullmatch(text):
        raise IdentifierError(f"Invalid unquoted identifier contains special characters: {text}")
    return "".join(ch.lower() if "A" <= ch <= "Z" else ch for ch in text)


def split_outside_quotes(text: str, sep: str) -> list[str]:
    parts, current, quoted = [], [], False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == sep and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def parse_relation(text: str) -> tuple[str | None, str]:
    """``items`` / ``public.items`` / ``"Odd.Name"`` -> (schema or None, table)."""
    parts = split_outside_quotes(text, ".")
    if len(parts) > 2:
        raise IdentifierError(f"Invalid relation identifier, too many delimiters: {text}")
    names = [parse_identifier(p) for p in parts]
    return (None, names[0]) if len(names) == 1 else (names[0], names[1])


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
    """One column of the ``electric-schema`` header (spec 10.2; rule order matters)."""
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


_TABLE_SQL = """
SELECT c.oid, n.nspname, c.relname, c.relkind
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = to_regclass(%s)
"""

_COLUMNS_SQL = """
SELECT a.attname, a.atttypid::int, t.typname, et.typname, a.atttypmod, a.attndims,
       a.attnotnull, a.attnum, t.typtype::text
FROM pg_attribute a
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_type et ON et.oid = t.typelem AND t.typcategory = 'A'
WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped
  AND (a.attgenerated = '' OR (a.attgenerated = 's' AND current_setting('server_version_num')::int >= 180000))
ORDER BY a.attnum
"""

_PK_SQL = "SELECT indkey::int2[] FROM pg_index WHERE indrelid = %s AND indisprimary"


async def load_table(conn: psycopg.AsyncConnection, root_table: str) -> TableInfo:
    """Resolve ``root_table`` (already syntax-checked) to a plain table's metadata."""
    schema, name = parse_relation(root_table)
    if schema is not None:
        cur = await conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
        if await cur.fetchone() is None:
            raise TableLookupError(
                f'ERROR 3F000 (invalid_schema_name) schema "{schema}" does not exist'
            )
    qualified = quote_ident(name) if schema is None else f"{quote_ident(schema)}.{quote_ident(name)}"
    shown = name if schema is None else f"{schema}.{name}"
    cur = await conn.execute(_TABLE_SQL, (qualified,))
    row = await cur.fetchone()
    if row is None:
        raise TableLookupError(
            f'Table "{shown}" does not exist. If the table name contains capitals or special '
            "characters you must quote it."
        )
    oid, nsp, relname, relkind = row
    if relkind != "r":
        raise TableLookupError("table not found")
    cur = await conn.execute(_PK_SQL, (oid,))
    pk_row = await cur.fetchone()
    pk_attnums = list(pk_row[0]) if pk_row else []
    cur = await conn.execute(_COLUMNS_SQL, (oid,))
    columns = []
    for attname, typid, typname, elem, typmod, ndims, notnull, attnum, kind in await cur.fetchall():
        pk_index = pk_attnums.index(attnum) if attnum in pk_attnums else None
        columns.append(
            ColumnInfo(attname, typid, typname, elem, typmod, ndims, bool(notnull), pk_index, kind)
        )
    if not columns:
        raise TableLookupError("table not found")
    return TableInfo(oid, nsp, relname, tuple(columns))
