"""Identifiers in requests (the ``root_table`` path segment, ``columns``), parsed with the
reference's rules so that bad names get its error messages before Postgres is asked anything.
"""

from __future__ import annotations

import re

_UNQUOTED = re.compile(r"[^\W\d][\w$]*", re.UNICODE)


class IdentifierError(ValueError):
    """A malformed identifier (message for the client)."""


def parse_identifier(text: str) -> str:
    """One identifier: ``"quoted"`` keeps case (``""`` -> ``"``); unquoted is lower-cased."""
    if "\x00" in text:  # Postgres text cannot hold NUL: no relation or column has one
        raise IdentifierError("Invalid identifier: contains a NUL character")
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
    """Split on ``sep`` where it is not inside double quotes (quotes are kept)."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
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


def parse_columns(text: str) -> list[str]:
    """``a,"B c",d`` -> names: split on commas outside quotes, each part one identifier
    (no trimming, as the reference)."""
    return [parse_identifier(part) for part in split_outside_quotes(text, ",")]
