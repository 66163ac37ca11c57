"""Table metadata from the catalog (columns, types, primary key) for a parsed table name,
and which relations may be shapes: ordinary and partitioned tables the server's role may
read, outside the system schemas."""

from __future__ import annotations

import psycopg

from shapesync.tables import ColumnInfo, TableInfo, quote_ident


class TableLookupError(ValueError):
    """The named relation does not exist or cannot be a shape (message for the client)."""


_TABLE_SQL = """
SELECT c.oid, n.nspname, c.relname, c.relkind, c.relispartition,
       has_table_privilege(c.oid, 'SELECT'), c.relpersistence,
       -- row-level security that applies to us: snapshots would be filtered, the stream not
       c.relrowsecurity AND NOT r.rolsuper AND NOT r.rolbypassrls
           AND (c.relforcerowsecurity OR NOT pg_has_role(c.relowner, 'USAGE'))
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_roles r ON r.rolname = current_user
WHERE c.oid = to_regclass(%s)
"""
# Relations whose changes logical replication never carries, or that belong to Postgres.
SYSTEM_SCHEMAS = ("pg_catalog", "information_schema")
SYSTEM_SCHEMA_PREFIXES = ("pg_toast", "pg_temp")
TABLE_KINDS = ("r", "p")  # ordinary, partitioned


def is_system_schema(schema: str) -> bool:
    return schema in SYSTEM_SCHEMAS or schema.startswith(SYSTEM_SCHEMA_PREFIXES)

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


async def load_table(conn: psycopg.AsyncConnection, schema: str | None, name: str) -> TableInfo:
    """Resolve a table name (schema None: the search path decides) to a plain table's
    metadata; raises TableLookupError with the reference's messages."""
    if schema is not None:
        cur = await conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
        if await cur.fetchone() is None:
            raise TableLookupError(
                f'ERROR 3F000 (invalid_schema_name) schema "{schema}" does not exist'
            )
    qualified = quote_ident(name) if schema is None else f"{quote_ident(schema)}.{quote_ident(name)}"
    shown = name if schema is None else f"{schema}.{name}"
    try:
        cur = await conn.execute(_TABLE_SQL, (qualified,))
    except psycopg.errors.InsufficientPrivilege:  # e.g. no USAGE on the named schema
        raise TableLookupError(f'permission denied for table "{shown}"') from None
    row = await cur.fetchone()
    if row is None:
        raise TableLookupError(
            f'Table "{shown}" does not exist. If the table name contains capitals or special '
            "characters you must quote it."
        )
    oid, nsp, relname, relkind, is_partition, readable, persistence, row_security = row
    if is_system_schema(nsp):
        raise TableLookupError(
            f'Table "{nsp}.{relname}" is a system table: shapes are made of user tables only')
    if relkind not in TABLE_KINDS:
        raise TableLookupError("table not found")
    if is_partition:
        raise TableLookupError(
            f'Table "{nsp}.{relname}" is a partition: make the shape on its partitioned table')
    if not readable:
        raise TableLookupError(f'permission denied for table "{nsp}.{relname}"')
    if persistence != "p":
        raise TableLookupError(
            f'Table "{nsp}.{relname}" is unlogged or temporary: its changes are not replicated')
    if row_security:
        raise TableLookupError(
            f'Table "{nsp}.{relname}" has row-level security for the server\'s role: its '
            "snapshot would be filtered and its changes not")
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
