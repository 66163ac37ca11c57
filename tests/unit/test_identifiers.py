"""Identifiers in requests: root_table and columns, with the reference's messages."""

from __future__ import annotations

import pytest

from shapesync.http.identifiers import IdentifierError, parse_identifier, parse_relation


def test_identifiers():
    assert parse_identifier('"PoT@To"') == "PoT@To"
    assert parse_identifier("PoTaTo") == "potato"
    assert parse_identifier('"fo""o"') == 'fo"o'
    assert parse_relation("public.items") == ("public", "items")
    assert parse_relation('"a.b"') == (None, "a.b")
    for bad, message in [
        (".invalid_shape", "Invalid zero-length delimited identifier"),
        ("a.b.c", "Invalid relation identifier, too many delimiters: a.b.c"),
        ("a b", "Invalid unquoted identifier contains special characters: a b"),
        ('"a"b"', 'Invalid identifier with unescaped quote: a"b'),
    ]:
        with pytest.raises(IdentifierError, match=message.replace(".", r"\.")):
            parse_relation(bad)
