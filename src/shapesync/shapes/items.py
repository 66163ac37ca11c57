"""Turning changes into Electric log items, encoded to their final JSON bytes once.

Keys follow the Electric protocol: ``"schema"."table"/"v1"/"v2"`` (primary key values),
with ``/`` doubled inside values and NULL key parts as empty strings (the same rule for
snapshot and log).
"""

from __future__ import annotations

from collections.abc import Iterator

import orjson

from shapesync.changes import Delete, Insert, Row, Update
from shapesync.tables import TableInfo, quote_ident
from shapesync.where import CompiledWhere


def key_prefix(schema: str, table: str) -> str:
    return f'"{schema}"."{table}"'


def row_key(prefix: str, key_columns: tuple[str, ...], row: Row) -> str:
    parts = [prefix]
    for name in key_columns:
        value = row.get(name)
        parts.append('/"' + ("" if value is None else value.replace("/", "//")) + '"')
    return "".join(parts)


class ItemEncoder:
    """Per-shape encoder: the table's key rule, the selected columns and the where clause.

    Applies the protocol's where-clause rules: a change is kept, dropped or converted (an
    update moving a row into the shape becomes an insert of the whole row, one moving it
    out a delete) by evaluating the where clause on the old and the new row.
    """

    def __init__(self, table: TableInfo, columns: tuple[str, ...] | None = None,
                 where: CompiledWhere | None = None) -> None:
        self.table = table
        self.prefix = key_prefix(table.schema, table.name)
        self.key_columns = table.key_columns
        self.selected = columns or tuple(c.name for c in table.columns)
        self.relation = [table.schema, table.name]
        self.has_pk = bool(table.pk)
        self.matches = where.matches if where is not None else None

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

    def _insert(self, row: Row, tx: int, op: int, xid: int, **extra: str) -> bytes:
        key = row_key(self.prefix, self.key_columns, row)
        headers = {"operation": "insert", "txid": xid, "relation": self.relation, **extra}
        return self._item(key, self._select(row), headers, tx, op)

    def _delete(self, row: Row, tx: int, op: int, xid: int, **extra: str) -> bytes:
        key = row_key(self.prefix, self.key_columns, row)
        headers = {"operation": "delete", "txid": xid, "relation": self.relation, **extra}
        return self._item(key, self._key_values(row), headers, tx, op)

    def encode(self, change: Insert | Update | Delete, tx: int, xid: int) -> Iterator[tuple[int, bytes]]:
        """Yield (op_offset, item JSON) for one change; nothing when nothing visible changed."""
        matches = self.matches
        if isinstance(change, Insert):
            if matches is None or matches(change.new):
                yield change.op, self._insert(change.new, tx, change.op, xid)
        elif isinstance(change, Delete):
            if matches is None or matches(change.old):
                yield change.op, self._delete(change.old, tx, change.op, xid)
        elif matches is None:
            yield from self._update(change, tx, xid)
        else:
            old, new = change.old, change.new
            if old is None:
                # No old row (the table's replica identity is not FULL any more): whether the
                # row was in the shape is unknown, so state where it is now. An insert of a
                # key the client has replaces it; a delete of one it lacks is a no-op.
                if matches(new):
                    yield change.op, self._insert(new, tx, change.op, xid)
                else:
                    yield change.op, self._delete(new, tx, change.op, xid)
                return
            was_in, is_in = matches(old), matches(new)
            if was_in and is_in:
                yield from self._update(change, tx, xid)
            elif was_in:
                yield change.op, self._delete(old, tx, change.op, xid)
            elif is_in:
                yield change.op, self._insert({**old, **new}, tx, change.op, xid)

    def _update(self, change: Update, tx: int, xid: int) -> Iterator[tuple[int, bytes]]:
        old, new = change.old, change.new
        new_key = row_key(self.prefix, self.key_columns, new)
        old_key = row_key(self.prefix, self.key_columns, old) if old is not None else new_key
        if old is not None and old_key != new_key:
            yield change.op, self._delete(old, tx, change.op, xid, key_change_to=new_key)
            yield change.op + 1, self._insert(
                {**old, **new}, tx, change.op + 1, xid, key_change_from=old_key
            )
            return
        if not self.has_pk:
            # Without a primary key every column is part of the key: the row is whole.
            value = self._select({**(old or {}), **new})
        else:
            changed = [c for c in self.selected
                       if c in new and (old is None or old.get(c) != new[c])]
            if not changed and old is not None:
                return  # no selected column changed: nothing for clients to see
            value = {c: new[c] for c in self.key_columns if c in new}
            for c in changed:
                value[c] = new[c]
        headers = {"operation": "update", "txid": xid, "relation": self.relation}
        yield change.op, self._item(new_key, value, headers, tx, change.op)


def snapshot_item_sql(table: TableInfo, columns: tuple[str, ...] | None = None) -> str:
    """SQL expression building a snapshot row's final JSON text inside Postgres.

    Values go through ``concat()``, which calls each type's output function, so they are
    byte-identical to what pgoutput sends (``col::text`` is not, for bool, bpchar, inet).
    Building the line in Postgres moves the JSON work to the server's core.
    """
    selected = columns or tuple(c.name for c in table.columns)
    prefix = key_prefix(table.schema, table.name)
    key_parts = " || ".join(
        f"""'/"' || replace(coalesce(concat({quote_ident(c)}), ''), '/', '//') || '"'"""
        for c in table.key_columns
    )
    headers = orjson.dumps({"operation": "insert", "relation": [table.schema, table.name]}).decode()
    return (
        f"""'{{"key":' || to_json({_sql_literal(prefix)} || {key_parts})::text"""
        f""" || ',"value":' || {row_values_sql(selected)}"""
        f""" || ',"headers":{_escape_literal_body(headers)},"offset":"0_0"}}'"""
    )


def row_values_sql(columns: tuple[str, ...] | list[str]) -> str:
    """SQL for a JSON object of the columns' output text (NULL stays null)."""
    names = ", ".join(_sql_literal(c) for c in columns)
    values = ", ".join(
        f"CASE WHEN {quote_ident(c)} IS NULL THEN NULL ELSE concat({quote_ident(c)}) END"
        for c in columns
    )
    return f"json_object(ARRAY[{names}]::text[], ARRAY[{values}]::text[])::text"


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _escape_literal_body(text: str) -> str:
    return text.replace("'", "''")
