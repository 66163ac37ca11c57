"""From a request's ``where`` and ``columns`` to a validated shape definition.

Kept apart from the HTTP layer so the same rules apply when a shape is restored from disk
(a stored where clause is compiled again against the stored table metadata).
"""

from __future__ import annotations

from shapesync.http.identifiers import IdentifierError, parse_identifier, split_outside_quotes
from shapesync.shapes.shape import ShapeDefinition
from shapesync.tables import TableInfo
from shapesync.where import CompiledWhere, WhereError, compile_where

MAX_WHERE_LENGTH = 16_384


def parse_columns(text: str) -> list[str]:
    """``a,"B c",d`` -> names (spec 9): split on commas outside quotes, no trimming."""
    return [parse_identifier(part) for part in split_outside_quotes(text, ",")]


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


def build_definition(
    table: TableInfo, where: str | None, columns: str | None, errors: dict[str, list[str]]
) -> tuple[ShapeDefinition, CompiledWhere | None] | None:
    """The definition for these parameters, or None with messages added to ``errors``."""
    selected: tuple[str, ...] | None = None
    if columns is not None:
        try:
            selected = select_columns(parse_columns(columns), table)
        except (IdentifierError, ValueError) as exc:
            errors.setdefault("columns", []).append(str(exc))
    compiled: CompiledWhere | None = None
    if where is not None:
        if len(where) > MAX_WHERE_LENGTH:
            errors.setdefault("where", []).append(
                f"where clause is too long ({len(where)} characters, at most {MAX_WHERE_LENGTH})"
            )
        else:
            try:
                compiled = compile_where(where, table)
            except WhereError as exc:
                errors.setdefault("where", []).append(str(exc))
    if "columns" in errors or "where" in errors:
        return None
    return ShapeDefinition(table.schema, table.name, table.oid, where, selected), compiled


def compile_definition_where(definition: ShapeDefinition, table: TableInfo) -> CompiledWhere | None:
    """The compiled where clause of a stored definition (raises WhereError if it no longer
    compiles, e.g. after an upgrade narrowed what is supported)."""
    if definition.where is None:
        return None
    return compile_where(definition.where, table)
