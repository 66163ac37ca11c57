"""Turning changes into Electric log items, encoded to their final JSON bytes once.

Keys follow spec 4.3: ``"schema"."table"/"v1"/"v2"`` with ``/`` doubled inside values and
NULL key parts as empty strings (the same rule for snapshot and log).
"""

from __future__ import annotations

from collections.abc import Iterator

import orjson

from shapesync.changes.model import Delete, Insert, Row, Update
from shapesync.pg.inspector import TableInfo


def key_prefix(schema: str, table: str) -> str:
    return f'"{schema}"."{table}"'


def row_key(prefix: str, key_columns: tuple[str, ...], row: Row) -> str:
    parts = [prefix]
    for name in key_columns:
        value = row.get(name)
        parts.append('/"' + ("" if value is None else value.replace("/", "//")) + '"')
    return "".join(parts)


class ItemEncoder:
    """Per-shape encoder: holds the table's key rule and the selected columns."""

    def __init__(self, table: TableInfo, columns: tuple[str, ...] | None = None) -> None:
        self.table = table
        self.prefix = key_prefix(table.schema, table.name)
        self.key_columns = table.key_columns
        self.selected = columns or tuple(c.name for c in table.columns)
        self.relation = [table.schema, table.name]
        self.has_pk = bool(table.pk)

    def _item(self, key: str, value: Row, headers: dict, tx: int, op: int) -> bytes:
        return orjson.dumps(
            {"key": key, "value": value, "headers": headers, "offset": f"{tx}_{op}"}
        )

    def _select(self, row: Row) -> Row:
        return {c: row.get(c) for c in self.selected}

    def _key_values(self, row: Row) -> Row:
        if not self.has_pk:
            return self._select(row)
        return {c: row.get(c) for c in self.key_columns}

    def encode(self, change: Insert | Update | Delete, tx: int, xid: int) -> Iterator[tuple[int, bytes]]:
        """Yield (op_offset, item JSON) for one change; nothing when nothing visible changed."""
        if isinstance(change, Insert):
            key = row_key(self.prefix, self.key_columns, change.new)
            headers = {"operation": "insert", "txid": xid, "relation": self.relation}
            yield change.op, self._item(key, self._select(change.new), headers, tx, change.op)
        elif isinstance(change, Delete):
            key = row_key(self.prefix, self.key_columns, change.old)
            headers = {"operation": "delete", "txid": xid, "relation": self.relation}
            yield change.op, self._item(key, self._key_values(change.old), headers, tx, change.op)
        else:
            yield from self._update(change, tx, xid)

    def _update(self, change: Update, tx: int, xid: int) -> Iterator[tuple[int, bytes]]:
        old, new = change.old, change.new
        new_key = row_key(self.prefix, self.key_columns, new)
        old_key = row_key(self.prefix, self.key_columns, old) if old is not None else new_key
        if old is not None and old_key != new_key:
            full_new = {**old, **new}
            yield change.op, self._item(
                old_key, self._key_values(old),
                {"operation": "delete", "txid": xid, "relation": self.relation,
                 "key_change_to": new_key}, tx, change.op,
            )
            yield change.op + 1, self._item(
                new_key, self._select(full_new),
                {"operation": "insert", "txid": xid, "relation": self.relation,
                 "key_change_from": old_key}, tx, change.op + 1,
            )
            return
        value = {c: new[c] for c in self.key_columns if c in new} if self.has_pk else {}
        for c in self.selected:
            if c in new and (old is None or old.get(c) != new[c]):
                value[c] = new[c]
        if not self.has_pk:
            # Without a primary key every column is part of the key: the row is whole.
            value = self._select({**(old or {}), **new})
        headers = {"operation": "update", "txid": xid, "relation": self.relation}
        yield change.op, self._item(new_key, value, headers, tx, change.op)


def snapshot_item_sql(table: TableInfo, columns: tuple[str, ...] | None = None) -> str:
    """SQL expression building a snapshot row's final JSON text inside Postgres.

    Values go through ``concat()``, which calls each type's output function, so they are
    byte-identical to what pgoutput sends (``col::text`` is not, for bool, bpchar, inet).
    Building the line in Postgres moves the JSON work to the server's core.
    """
    from shapesync.pg.inspector import quote_ident

    def text_of(col: str) -> str:
        q = quote_ident(col)
        return f"CASE WHEN {q} IS NULL THEN NULL ELSE concat({q}) END"

    selected = columns or tuple(c.name for c in table.columns)
    prefix = key_prefix(table.schema, table.name)
    key_parts = " || ".join(
        f"""'/"' || replace(coalesce(concat({quote_ident(c)}), ''), '/', '//') || '"'"""
        for c in table.key_columns
    )
    names = ", ".join(_sql_literal(c) for c in selected)
    values = ", ".join(text_of(c) for c in selected)
    headers = orjson.dumps({"operation": "insert", "relation": [table.schema, table.name]}).decode()
    return (
        f"""'{{"key":' || to_json({_sql_literal(prefix)} || {key_parts})::text"""
        f""" || ',"value":' || json_object(ARRAY[{names}]::text[], ARRAY[{values}]::text[])::text"""
        f""" || ',"headers":{_escape_literal_body(headers)},"offset":"0_0"}}'"""
    )


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _escape_literal_body(text: str) -> str:
    return text.replace("'", "''")
