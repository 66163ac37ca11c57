"""What a shape is: table, where clause and columns, validated against the table.

The same rules apply to a request's parameters and to a shape restored from disk (a
stored where clause is compiled again against the stored table metadata).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import orjson

from shapesync.tables import TableInfo
from shapesync.where import CompiledWhere, WhereError, compile_where

MAX_WHERE_LENGTH = 16_384


@dataclass(frozen=True, slots=True)
class ShapeDefinition:
    """What makes two requests the same shape: table (by name and oid), where clause text
    and sorted column selection, compared in full rather than by a hash."""

    schema: str
    table: str
    table_oid: int
    where: str | None = None
    columns: tuple[str, ...] | None = None

    @property
    def key(self) -> str:
        return orjson.dumps(self.to_json()).decode()

    def to_json(self) -> list:
        return [self.schema, self.table, self.table_oid, self.where, self.columns]

    @classmethod
    def from_json(cls, data: list) -> ShapeDefinition:
        schema, table, oid, where, columns = data
        return cls(schema, table, oid, where, tuple(columns) if columns else None)

    def new_shape_id(self) -> str:
        """``<hash of the definition>-<milliseconds>``, the reference's shape id form."""
        digest = int.from_bytes(hashlib.sha256(self.key.encode()).digest()[:4], "big") >> 5
        return f"{digest}-{time.time_ns() // 1_000_000}"


class InvalidDefinition(ValueError):
    """Parameters that do not make a shape; ``errors`` maps parameter name -> messages."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__(str(errors))
        self.errors = errors


def select_columns(names: list[str], table: TableInfo) -> tuple[str, ...]:
    """Validate ``names`` against the table; the sorted selection (sorting = identity)."""
    known = {c.name for c in table.columns}
    missing_key = [c for c in table.key_columns if c not in names]
    if missing_key:
        raise ValueError("Must include all primary key columns, missing: " + ", ".join(missing_key))
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError("The following columns could not be found: " + ", ".join(unknown))
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError("Columns listed more than once: " + ", ".join(duplicates))
    return tuple(sorted(names))


def check_where(where: str, table: TableInfo) -> CompiledWhere:
    """Compile a request's where clause; raises WhereError (also for an over-long one)."""
    if len(where) > MAX_WHERE_LENGTH:
        raise WhereError(
            f"where clause is too long ({len(where)} characters, at most {MAX_WHERE_LENGTH})"
        )
    return compile_where(where, table)


def build_definition(
    table: TableInfo, where: str | None, columns: list[str] | None
) -> tuple[ShapeDefinition, CompiledWhere | None]:
    """The definition for a table, where clause text and column names (parsed from the
    request); raises InvalidDefinition naming every bad parameter."""
    errors: dict[str, list[str]] = {}
    selected: tuple[str, ...] | None = None
    if columns is not None:
        try:
            selected = select_columns(columns, table)
        except ValueError as exc:
            errors["columns"] = [str(exc)]
    compiled: CompiledWhere | None = None
    if where is not None:
        try:
            compiled = check_where(where, table)
        except WhereError as exc:
            errors["where"] = [str(exc)]
    if errors:
        raise InvalidDefinition(errors)
    return ShapeDefinition(table.schema, table.name, table.oid, where, selected), compiled


def compile_definition_where(definition: ShapeDefinition, table: TableInfo) -> CompiledWhere | None:
    """The compiled where clause of a stored definition (raises WhereError if it no longer
    compiles, e.g. after an upgrade narrowed what is supported)."""
    if definition.where is None:
        return None
    return compile_where(definition.where, table)
