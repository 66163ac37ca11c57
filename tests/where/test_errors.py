"""Rejected clauses (messages and locations) and SQL injection resistance."""

from __future__ import annotations

import json

import pytest
from pglast.parser import parse_sql_json

from shapesync.where import WhereError, compile_where

from .conftest import make_table

TABLE = make_table()

REJECTED = [
    # clause, message fragment, location (None = no location)
    ("test", "unknown reference test", 0),
    ("id = 1 AND foo > 2", "unknown reference foo", 11),
    ("items.id = 1", "unknown reference items.id", 0),
    ("id IN (SELECT id FROM items)", "subqueries are not supported", 3),
    ("EXISTS (SELECT 1)", "subqueries are not supported", 0),
    ("id = (SELECT 1)", "subqueries are not supported", 5),
    ("id = 1; DROP TABLE items", 'unescaped ";" causing statement split', None),
    ("id = 1 LIMIT 1", "LIMIT is not allowed", None),
    ("id = 1 OFFSET 2", "OFFSET is not allowed", None),
    ("id = 1 ORDER BY id", "ORDER BY is not allowed", None),
    ("id = 1 GROUP BY id", "GROUP BY is not allowed", None),
    ("id = 1 HAVING true", "HAVING is not allowed", None),
    ("id = 1 FOR UPDATE", "FOR UPDATE/SHARE is not allowed", None),
    ("id = 1 UNION SELECT 1", "set operations", None),
    ("count(*) > 1", "aggregation is not supported in this context", 0),
    ("ceil(DISTINCT id) > 1", "aggregation is not supported in this context", 0),
    ("row_number() OVER () > 1", "aggregation is not supported in this context", 0),
    ("now() > created_at", "unknown or unsupported function now/0", 0),
    ("random() > 0.5", "unknown or unsupported function random/0", 0),
    ("nosuchfn(id)", "unknown or unsupported function nosuchfn/1", 0),
    ("created_at > CURRENT_TIMESTAMP", "current time", 13),
    ("created_at > 'now'", "depends on the current time", 13),
    ("id", "WHERE clause must return bool", 0),
    ("title || 'x'", "WHERE clause must return bool", 6),
    ("1 IS TRUE", "argument of IS TRUE must be bool, not int4", 2),
    ("3 > ANY (3)", "argument of ANY must be an array", 9),
    ("'{1,2,3}'::int[] @> '{2,1,2}'::bigint[]", "Could not select an operator overload", 17),
    ("title + 1 > 10", "Could not select an operator overload", 6),
    ("id = 'abc'", "invalid syntax for type integer: abc", 5),
    ("id = 99999999999 AND id::int2 = 1", None, None),  # fine: int8 literal
    ("s = 70000::int2", "out of range", 9),
    ("id = 1/0", "division by zero", 6),
    ("b = 'maybe'", "invalid syntax for type boolean: maybe", 4),
    ("title ~ 'a.*'", "unknown binary operator ~", 6),
    ("title SIMILAR TO 'a'", "SIMILAR TO is not supported", 6),
    ("CASE WHEN id = 1 THEN true END", "CaseExpr is not supported in this context", 0),
    ("ROW(id, n) = ROW(1, 2)", "RowExpr is not supported", 0),
    ("id = $1", "parameters ($n) are not supported", 5),
    ("title COLLATE \"C\" = 'a'", "COLLATE is not supported", 6),
    ("x'1F' = id", "BitString values are not supported", 0),
    ("mood < 'happy'", "enum ordering needs the catalog", 5),
    ("mood = title", "cannot be matched", 5),
    ("j = '{}'", 'column "j" of type jsonb is not supported here', 0),
    ("j->>'a' = 'x'", 'column "j" of type jsonb is not supported here', 0),
    ("raw = '\\x00'", 'column "raw" of type bytea', 0),
    ("id::money = 1", "unsupported type money", 4),
    ("ts::timestamp(3) = ts", "type modifiers on timestamp without time zone are not supported", 4),
    ("id = ", "syntax error at end of input", 4),
    ("id = 1) OR (1 = 1", 'syntax error at or near ")"', 6),
    ("title = 'x", "unterminated quoted string", 8),
    ("price % 1.5::float8 = 0", "Could not select an operator overload", 6),
    ("d + '1 day' = d", "operator is not unique", 2),
    ("'1' + '2' = 3", "operator is not unique", 4),
    ("nums @> '{1}'::int8[]", "Could not select an operator overload", 5),
    ("id LIKE '1%'", "Could not select an operator overload", 3),
    ("", "syntax error at end of input", 0),
]


@pytest.mark.parametrize("clause,message,location", REJECTED, ids=[r[0] for r in REJECTED])
def test_rejected(clause, message, location):
    if message is None:
        compile_where(clause, TABLE)
        return
    with pytest.raises(WhereError) as info:
        compile_where(clause, TABLE)
    err = info.value
    assert message in err.message, err.message
    assert err.location == location, (err.location, err.message)
    if location is None:
        assert str(err) == err.message
    else:
        assert str(err) == f"At location {location}: {err.message}"


def test_where_error_is_value_error():
    assert issubclass(WhereError, ValueError)
    e = WhereError("boom", 3)
    assert (e.message, e.location, str(e)) == ("boom", 3, "At location 3: boom")


# ---------------------------------------------------------------------------- injection


def _where_of(sql: str) -> dict:
    """Parse ``SELECT * FROM items WHERE <sql>``; exactly one plain SELECT is allowed."""
    tree = json.loads(parse_sql_json(f"SELECT * FROM items WHERE {sql}"))
    assert len(tree["stmts"]) == 1
    select = tree["stmts"][0]["stmt"]["SelectStmt"]
    assert set(select) <= {"targetList", "fromClause", "whereClause", "limitOption", "op"}
    return select["whereClause"]


def _strings(node) -> list[str]:
    out = []
    if isinstance(node, dict):
        if "sval" in node and isinstance(node["sval"], dict):
            out.append(node["sval"]["sval"])
        for v in node.values():
            out += _strings(v)
    elif isinstance(node, list):
        for v in node:
            out += _strings(v)
    return out


INJECTIONS = [
    "title = 'x'') OR (1=1'",
    "title = 'a''; DROP TABLE items; --'",
    "title = E'a\\'b'",
    "title = 'back\\slash'",
    "title = 'x' -- ' OR 1=1",
    "title = 'x' /* ) OR true */",
    "title = $$x') OR true --$$",
    "title = U&'\\0041'",
    '"Weird ""Col""" = 1',
]


@pytest.mark.parametrize("clause", INJECTIONS)
def test_sql_cannot_break_out(clause):
    w = compile_where(clause, TABLE)
    where = _where_of(w.sql)
    # a single comparison survives, whatever the literal contained
    assert "A_Expr" in where, w.sql
    # with standard_conforming_strings off, backslashes must still be escaped
    assert "\\" not in w.sql or "E'" in w.sql
    # string constants round-trip exactly
    original = _strings(json.loads(parse_sql_json("SELECT 1 WHERE " + clause)))
    rendered = _strings(where)
    for s in original:
        if s not in ("pg_catalog",) and not s.startswith(("=", "Weird")):
            assert s in rendered, (s, rendered)


def test_breakout_text_is_a_syntax_error():
    with pytest.raises(WhereError):
        compile_where("1=1) OR (1=1", TABLE)
    with pytest.raises(WhereError):
        compile_where("true) UNION (SELECT 1", TABLE)
    with pytest.raises(WhereError):
        compile_where("true; SELECT pg_sleep(10)", TABLE)


def test_sql_is_rendered_from_the_tree():
    w = compile_where("ID=1   and/*comment*/TITLE='a'", TABLE)
    assert w.sql == """(("id" = 1) AND ("title" = 'a'::text))"""
    w = compile_where('"Weird ""Col""" = 1', TABLE)
    assert w.sql == '''("Weird ""Col""" = 1)'''


def test_rendered_sql_runs_in_postgres(db):
    db.execute("CREATE TABLE items (id int, title text)")
    db.execute("INSERT INTO items VALUES (1, 'a''; DROP TABLE items; --'), (2, 'back\\slash')")
    for clause, ids in [
        ("title = 'a''; DROP TABLE items; --'", [1]),
        ("title = 'back\\slash'", [2]),
        ("title LIKE '%\\\\%'", [2]),
    ]:
        w = compile_where(clause, TABLE)
        got = [r[0] for r in db.execute(f"SELECT id FROM items WHERE {w.sql} ORDER BY id")]
        assert got == ids, (clause, w.sql)
        db.execute("SET standard_conforming_strings = off")
        got = [r[0] for r in db.execute(f"SELECT id FROM items WHERE {w.sql} ORDER BY id")]
        db.execute("SET standard_conforming_strings = on")
        assert got == ids, (clause, w.sql)
        assert w.matches({"id": str(ids[0]), "title": db.execute(
            "SELECT title FROM items WHERE id = %s", (ids[0],)).fetchone()[0]})
