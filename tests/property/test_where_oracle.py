"""The filtered oracle: shapes with a ``where`` clause and a ``columns`` selection, rebuilt
from the HTTP log, equal what Postgres itself selects.

Per seed: a random table (one- or two-column primary key, columns of varied types, NULLs), three
random where clauses from a small grammar (each one compiled by ``compile_where`` first, so only
accepted clauses are used) with random column selections, one live follower per clause, then
batches of random transactions (inserts, updates moving rows in and out, updates of unselected
columns, key changes, deletes, no-op updates, savepoint and whole-transaction rollbacks). After
every batch each follower's rows must equal

    SELECT <selected columns as output text> FROM t WHERE <clause>

evaluated by Postgres on the clause as the user wrote it. A row on which Postgres raises (division
by zero, overflow, a bad cast) is not in the shape: then the clause is evaluated row by row, an
error counting as false. At the end a new follower of each shape replays the log from -1, and one
of an equivalent new shape (the clause in parentheses) checks a fresh snapshot, which goes
through the snapshot's per-row fallback whenever Postgres raises on some row. The followers
also flag log items a correct server never sends (an update changing no selected column, an
insert of a row the shape already has). Every seed starts with rows on which each error-prone
construct raises, and must see Postgres raise at least once.

The tests at the end are minimal reproductions of what the oracle found.

Everything is seeded and ordered (``ORDER BY`` on every read that feeds the generator): a failure
message names the seed, the clause and the columns, and rerunning that seed replays it.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

import psycopg
import pytest

from shapesync.pg.catalog import load_table
from shapesync.pg.session import session_conninfo
from shapesync.where import WhereError, compile_where
from tests.helpers import ShapeFollower

CLAUSES_PER_SEED = 3
BATCHES = 10
MIN_ACCEPTED = 0.8  # the grammar must mostly produce clauses the compiler accepts

# ---------------------------------------------------------------------------- the table

INT4 = (None, "0", "0", "1", "2", "3", "-1", "5", "7", "10", "42", "-7", "2147483647")
INT8 = (None, "0", "1", "-5", "3", "12", "100", "9223372036854775807", "-9223372036854775808")
NUMERIC = (None, "0", "1.5", "-2.25", "10", "0.333", "3", "2.50", "1e20", "NaN")
FLOAT8 = (None, "0", "-0", "1.5", "2", "-3.25", "0.1", "1e300", "NaN", "Infinity", "-Infinity")
TEXT = (None, "", "abc", "ABC", "a/b", "x%y", "under_score", "Ünï", "12", "-3", "back\\slash",
        "it's", "b")
VARCHAR = (None, "", "1", "42", "abc", " 7", "x y", "9999999999", "-0", "3")
BOOL = (None, "true", "false")
DATES = (None, "2023-12-30", "2023-12-31", "2024-01-01", "2024-01-02", "2024-01-05",
         "2000-02-29", "infinity")
TIMESTAMPTZ = (None, "2024-01-01 00:00:00+00", "2024-01-01 12:30:00.5+00",
               "2023-12-31 23:59:59.999999+00", "2024-01-02 00:00:00+02", "2024-01-01 06:00:00-05",
               "-infinity")
UUIDS = (None, "00000000-0000-0000-0000-000000000000", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
         "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A12", "ffffffff-ffff-ffff-ffff-ffffffffffff")
INT_ARRAYS = (None, "{}", "{1,2}", "{3,NULL}", "{1,2,3}", "{0}", "{7}", "{{1,2},{3,4}}")
TEXT_ARRAYS = (None, "{}", "{a,b}", "{abc,NULL}", '{"a/b",x}', '{""}', "{ABC}")
MOODS = (None, "sad", "ok", "happy")
TAGS = (None, "red", "Blue", "RED", "")
KEY_TEXTS = ("a", "b/c", 'q"x', "", "z")


@dataclass(frozen=True)
class Column:
    name: str
    sql: str  # type in DDL and in the casts of inserted values
    kind: str  # what the clause grammar uses it as
    pool: tuple

    @property
    def ident(self) -> str:
        return f'"{self.name}"' if self.name != self.name.lower() else self.name


OPTIONAL = [
    Column("i8", "int8", "int8", INT8),
    Column("num", "numeric", "numeric", NUMERIC),
    Column("f8", "float8", "float8", FLOAT8),
    Column("vc", "varchar(10)", "varchar", VARCHAR),
    Column("d", "date", "date", DATES),
    Column("tz", "timestamptz", "tz", TIMESTAMPTZ),
    Column("u", "uuid", "uuid", UUIDS),
    Column("e", "mood", "enum", MOODS),
    Column("Tag", "text", "text", TAGS),
]


@dataclass
class Table:
    pk: list[Column]
    columns: list[Column]  # every column, the key ones first

    @property
    def non_key(self) -> list[Column]:
        return [c for c in self.columns if c not in self.pk]

    def of(self, *kinds: str) -> list[Column]:
        return [c for c in self.columns if c.kind in kinds]


def random_table(rng: random.Random) -> Table:
    pk = [Column("id", "int4", "int4", tuple(str(i) for i in range(1, 60)))]
    if rng.random() < 0.4:
        pk.append(Column("k", "text", "text", KEY_TEXTS))
    columns = [Column("i4", "int4", "int4", INT4), Column("t", "text", "text", TEXT),
               Column("b", "bool", "bool", BOOL)]
    columns += [c for c in OPTIONAL if rng.random() < 0.6]
    columns.append(rng.choice([Column("ai", "int4[]", "int4[]", INT_ARRAYS),
                               Column("at", "text[]", "text[]", TEXT_ARRAYS)]))
    rng.shuffle(columns)
    return Table(pk, pk + columns)


def create_table(db: psycopg.Connection, table: Table) -> None:
    if any(c.kind == "enum" for c in table.columns):
        db.execute("CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')")
    cols = ", ".join(f"{c.ident} {c.sql}" for c in table.columns)
    keys = ", ".join(c.ident for c in table.pk)
    db.execute(f"CREATE TABLE t ({cols}, PRIMARY KEY ({keys}))")


# ---------------------------------------------------------------------------- the grammar

NUM_TYPES = ("int4", "int8", "numeric", "float8")
INT_TYPES = ("int4", "int8")
TEXT_KINDS = ("text", "varchar")
CMP = ("=", "<>", "!=", "<", "<=", ">", ">=")
TEXT_LITERALS = ("'abc'", "'ABC'", "''", "'a/b'", "'b'", "'Z'", "'12'", "'red'", "'it''s'",
                 "'Ünï'")
LIKE_PATTERNS = ("'a%'", "'%b%'", "'_'", "'%/%'", "'A%'", "'%\\%%'", "''", "'%'", "'1%'",
                 "'%y'", "'__'", "'%c'")
DATE_LITERALS = ("'2023-12-31'", "'2024-01-01'", "'2024-01-03'", "'1999-01-01'")
TZ_LITERALS = ("'2024-01-01 06:00:00+00'", "'2024-01-01T12:00:00Z'", "'2023-12-31 20:00:00-05'",
               "'2024-01-01 12:30:00.5+00'")
UUID_LITERALS = ("'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", "'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A12'",
                 "'00000000-0000-0000-0000-000000000000'")
MOOD_LITERALS = ("'sad'", "'ok'", "'happy'")


class ClauseGen:
    """Random boolean expressions over a table's columns, typed enough to mostly compile."""

    def __init__(self, rng: random.Random, table: Table) -> None:
        self.rng = rng
        self.table = table

    def pick(self, *kinds: str) -> Column | None:
        cols = self.table.of(*kinds)
        return self.rng.choice(cols) if cols else None

    # -- numbers: (sql, type) ---------------------------------------------------------

    def num_literal(self) -> tuple[str, str]:
        r = self.rng
        if r.random() < 0.75:
            return str(r.choice([0, 1, 2, 3, 5, 10, -1, -3, 100])), "int4"
        return r.choice(["1.5", "2.5", "-0.5", "0.333"]), "numeric"

    def num(self, depth: int) -> tuple[str, str]:
        """A numeric expression that is not a constant."""
        r = self.rng
        options = ["col"] * 4
        if depth > 0:
            options += ["arith"] * 3 + ["coalesce", "abs", "neg", "cast", "minmax", "mod", "round"]
        if self.table.of(*TEXT_KINDS):
            options.append("length")
        if self.table.of("int4[]", "text[]"):
            options.append("card")
        if self.table.of("int4[]"):
            options.append("subscript")
        if self.table.of("date"):
            options.append("datediff")
        kind = r.choice(options)
        if kind == "col":
            c = self.pick(*NUM_TYPES)
            return c.ident, c.kind
        if kind == "arith":
            a, ta = self.num(depth - 1)
            b, tb = self.num(depth - 1) if r.random() < 0.5 else self.num_literal()
            op = r.choice(["+", "-", "*", "/", "/", "%"])
            if op == "%" and "float8" in (ta, tb):
                op = "/"
            if r.random() < 0.3:
                a, b = b, a
            return f"({a} {op} {b})", _num_common(ta, tb)
        if kind == "coalesce":
            a, ta = self.num(depth - 1)
            b, tb = self.num(depth - 1) if r.random() < 0.5 else self.num_literal()
            return f"coalesce({a}, {b})", _num_common(ta, tb)
        if kind == "abs":
            a, ta = self.num(depth - 1)
            return r.choice([f"abs({a})", f"@ {a}"]), ta
        if kind == "neg":
            a, ta = self.num(depth - 1)
            return f"(- {a})", ta
        if kind == "minmax":
            a, ta = self.num(depth - 1)
            b, tb = self.num_literal()
            return f"{r.choice(['greatest', 'least'])}({a}, {b})", _num_common(ta, tb)
        if kind == "mod":
            c = self.pick(*INT_TYPES)
            a, _ = self.num_literal() if r.random() < 0.5 else ("3", "int4")
            return f"mod({c.ident}, {a if a.lstrip('-').isdigit() else '3'})", c.kind
        if kind == "round":
            a, ta = self.num(depth - 1)
            if ta == "float8":
                return r.choice([f"round({a})", f"floor({a})", f"ceil({a})"]), "float8"
            return r.choice([f"round({a})", f"round({a}, 1)", f"trunc({a})"]), "numeric"
        if kind == "length":
            c = self.pick(*TEXT_KINDS)
            return f"{r.choice(['length', 'char_length', 'octet_length'])}({c.ident})", "int4"
        if kind == "card":
            c = self.pick("int4[]", "text[]")
            return r.choice([f"cardinality({c.ident})", f"array_length({c.ident}, 1)"]), "int4"
        if kind == "subscript":
            c = self.pick("int4[]")
            return f"{c.ident}[{r.choice([1, 2])}]", "int4"
        if kind == "datediff":
            c = self.pick("date")
            return f"({c.ident} - {r.choice(DATE_LITERALS)})", "int4"
        # casts, some of which fail on some rows (bad text, overflow, NaN)
        casts = []
        for c in self.table.of("varchar"):
            casts += [(f"{c.ident}::int4", "int4"), (f"CAST({c.ident} AS numeric)", "numeric")]
        for c in self.table.of("numeric"):
            casts += [(f"{c.ident}::int4", "int4"), (f"{c.ident}::float8", "float8")]
        for c in self.table.of("float8"):
            casts += [(f"{c.ident}::int8", "int8"), (f"{c.ident}::numeric", "numeric")]
        for c in self.table.of("int8"):
            casts += [(f"{c.ident}::int4", "int4")]
        for c in self.table.of("int4"):
            casts += [(f"{c.ident}::int8", "int8"), (f"{c.ident}::numeric(4,1)", "numeric"),
                      (f"{c.ident}::float8", "float8")]
        return r.choice(casts)

    # -- text ---------------------------------------------------------------------------

    def text(self, depth: int) -> str:
        r = self.rng
        c = self.pick(*TEXT_KINDS)
        if depth <= 0 or r.random() < 0.5:
            return c.ident
        inner = self.text(depth - 1)
        choice = r.randrange(12)
        if choice == 0:
            return f"lower({inner})"
        if choice == 1:
            return f"upper({inner})"
        if choice == 2:
            return f"({inner} || {r.choice(TEXT_LITERALS)})"
        if choice == 3:
            return f"coalesce({inner}, {r.choice(TEXT_LITERALS)})"
        if choice == 4:
            return f"substr({inner}, {r.choice([1, 2])})"
        if choice == 5:
            return f"{r.choice(['trim', 'reverse'])}({inner})"
        if choice == 6:
            return f"left({inner}, {r.choice([1, 2])})"
        if choice == 7:
            return f"replace({inner}, 'a', 'A')"
        if choice == 8:
            num, _ = self.num(0)
            return f"({inner} || {num})"
        # other types shown as text
        casts = [f"{x.ident}::text" for x in self.table.of(*NUM_TYPES, "bool", "date", "tz", "uuid",
                                                            "enum")]
        casts += [f"{x.ident}[1]" for x in self.table.of("text[]")]
        return r.choice(casts) if casts else inner

    # -- booleans -----------------------------------------------------------------------

    def atom(self) -> str:
        while True:
            sql = self._atom(self.rng.randrange(17))
            if sql is not None:
                return sql

    def _atom(self, choice: int) -> str | None:  # noqa: C901 - one branch per construct
        r = self.rng
        t = self.table
        if choice == 0:  # numeric comparison
            a, _ = self.num(2)
            b, _ = self.num(1) if r.random() < 0.3 else self.num_literal()
            return f"{a} {r.choice(CMP)} {b}"
        if choice == 1:  # text comparison
            return f"{self.text(2)} {r.choice(CMP)} {r.choice(TEXT_LITERALS)}"
        if choice == 2:  # LIKE / ILIKE
            op = r.choice(["LIKE", "ILIKE", "NOT LIKE", "NOT ILIKE", "~~", "~~*"])
            return f"{self.text(1)} {op} {r.choice(LIKE_PATTERNS)}"
        if choice == 3:  # BETWEEN
            a, _ = self.num(1)
            lo, _ = self.num_literal()
            hi, _ = self.num_literal()
            op = r.choice(["BETWEEN", "NOT BETWEEN", "BETWEEN SYMMETRIC"])
            return f"{a} {op} {lo} AND {hi}"
        if choice == 4:  # IN lists, NULL members sometimes
            c = r.choice(t.of("int4", "int8", "numeric", "text", "varchar", "uuid", "enum", "date"))
            pool = {"text": TEXT_LITERALS, "varchar": TEXT_LITERALS, "uuid": UUID_LITERALS,
                    "enum": MOOD_LITERALS, "date": DATE_LITERALS}.get(c.kind)
            items = [r.choice(pool) if pool else self.num_literal()[0]
                     for _ in range(r.randint(1, 4))]
            if r.random() < 0.3:
                items.insert(r.randrange(len(items) + 1), "NULL")
            op = "NOT IN" if r.random() < 0.35 else "IN"
            return f"{c.ident} {op} ({', '.join(items)})"
        if choice == 5:  # IS [NOT] NULL
            target = r.choice(t.columns).ident if r.random() < 0.7 else self.num(1)[0]
            return f"{target} IS {r.choice(['', 'NOT '])}NULL"
        if choice == 6:  # IS [NOT] DISTINCT FROM
            op = r.choice(["IS DISTINCT FROM", "IS NOT DISTINCT FROM"])
            if r.random() < 0.5:
                a, _ = self.num(1)
                b = r.choice([self.num_literal()[0], "NULL", self.num(0)[0]])
                return f"{a} {op} {b}"
            c = r.choice(t.of("text", "varchar", "bool", "enum", "date", "uuid"))
            lit = {"bool": "true", "enum": "'ok'", "date": "'2024-01-01'",
                   "uuid": UUID_LITERALS[0]}.get(c.kind, r.choice(TEXT_LITERALS))
            return f"{c.ident} {op} {r.choice([lit, 'NULL'])}"
        if choice == 7:  # booleans
            b = t.of("bool")[0].ident
            return r.choice([b, f"NOT {b}", f"{b} = true", f"{b} IS TRUE", f"{b} IS NOT FALSE",
                             f"{b} IS UNKNOWN", f"{b} <> ({self.num(0)[0]} > 2)",
                             f"({self.num(1)[0]} > 2) IS NOT TRUE"])
        if choice == 8:  # dates
            c = self.pick("date")
            if c is None:
                return None
            return r.choice([
                f"{c.ident} {r.choice(CMP)} {r.choice(DATE_LITERALS)}",
                f"{c.ident} + {r.choice([1, -2])} > {r.choice(DATE_LITERALS)}",
                f"{c.ident} BETWEEN '2023-12-31' AND '2024-01-02'",
                f"{c.ident}::text LIKE '2024%'",
            ])
        if choice == 9:  # timestamptz
            c = self.pick("tz")
            if c is None:
                return None
            other = [f"{c.ident} < {d.ident}" for d in t.of("date")]
            return r.choice([
                f"{c.ident} {r.choice(CMP)} {r.choice(TZ_LITERALS)}",
                f"{c.ident} + interval '6 hours' > {r.choice(TZ_LITERALS)}",
                f"{c.ident}::date = '2024-01-01'",
                f"{c.ident} - {r.choice(TZ_LITERALS)} > interval '1 hour'",
                *other,
            ])
        if choice == 10:  # uuid
            c = self.pick("uuid")
            if c is None:
                return None
            return r.choice([f"{c.ident} = {r.choice(UUID_LITERALS)}",
                             f"{c.ident} <> {r.choice(UUID_LITERALS)}",
                             f"{c.ident} > {r.choice(UUID_LITERALS)}",
                             f"{c.ident}::text LIKE 'a%'"])
        if choice == 11:  # int arrays
            c = self.pick("int4[]")
            if c is None:
                return None
            n, _ = self.num(0)
            return r.choice([
                f"{r.choice([1, 2, 3, 7])} = ANY({c.ident})", f"{n} = ANY({c.ident})",
                f"{n} <> ALL({c.ident})", f"{c.ident} @> '{{1}}'", f"{c.ident} @> ARRAY[1, 2]",
                f"{c.ident} <@ '{{1,2,3}}'", f"{c.ident} && ARRAY[2, 3]",
                f"{c.ident} = '{{1,2}}'", f"{c.ident}[1] = 1", f"{c.ident} @> ARRAY[{n}]",
                f"{r.choice([0, 1, 5])} > ANY({c.ident})",
            ])
        if choice == 12:  # text arrays
            c = self.pick("text[]")
            if c is None:
                return None
            return r.choice([
                f"{r.choice(TEXT_LITERALS)} = ANY({c.ident})",
                f"{self.text(0)} = ANY({c.ident})", f"{c.ident} @> '{{a}}'",
                f"{c.ident} && ARRAY['abc', 'x']", f"{c.ident}[1] LIKE 'a%'",
                f"{c.ident} <@ ARRAY['a', 'b', 'x', 'a/b']", f"{c.ident} = '{{}}'",
            ])
        if choice == 13:  # enums: = / <> with labels
            c = self.pick("enum")
            if c is None:
                return None
            return r.choice([f"{c.ident} = {r.choice(MOOD_LITERALS)}",
                             f"{c.ident} <> {r.choice(MOOD_LITERALS)}",
                             f"{c.ident}::text LIKE '%a%'",
                             f"{c.ident} IS DISTINCT FROM {r.choice(MOOD_LITERALS)}"])
        if choice == 14:  # text functions and casts
            return r.choice([
                f"starts_with({self.text(1)}, 'a')", f"strpos({self.text(1)}, 'b') > 0",
                f"{self.text(1)} = lower({self.text(0)})",
                f"coalesce({self.text(0)}, 'none') = 'none'",
            ])
        return self.error_prone()

    def error_prone(self) -> str:
        """An atom that raises in Postgres on some rows (non-key columns: their values vary)."""
        def of(*kinds: str) -> list[Column]:
            return [c for c in self.table.non_key if c.kind in kinds]

        options = [f"(10 / {c.ident}) > 1" for c in of(*INT_TYPES)]
        options += [f"({c.ident} * 1000000) > 5" for c in of("int4")]
        options += [f"sqrt({c.ident}) > 1" for c in of("int4", "float8")]
        options += [f"{c.ident}::int4 > 5" for c in of("varchar", "numeric")]
        options += [f"({c.ident} * {c.ident}) > 1" for c in of("float8", "int8")]
        options += [f"({c.ident} % {c.ident}) = 0" for c in of("int4", "numeric")]
        options += [f"({c.ident} + 1) / ({c.ident} - 1) <> 0" for c in of("int4")]
        return self.rng.choice(options)

    def boolean(self, depth: int) -> str:
        r = self.rng
        if depth <= 0 or r.random() < 0.3:
            return self.atom()
        choice = r.random()
        if choice < 0.75:  # n-ary AND / OR chains
            op = r.choice([" AND ", " OR "])
            parts = [self._operand(depth - 1) for _ in range(r.randint(2, 4))]
            return op.join(parts)
        if choice < 0.9:
            return f"NOT ({self.boolean(depth - 1)})"
        return f"({self.boolean(depth - 1)}) {r.choice(['IS NOT TRUE', 'IS FALSE', 'IS UNKNOWN'])}"

    def _operand(self, depth: int) -> str:
        sql = self.boolean(depth)
        if " AND " in sql or " OR " in sql or self.rng.random() < 0.3:
            return f"({sql})"
        return sql

    def clause(self, error_prone: bool) -> str:
        if not error_prone:
            return self.boolean(self.rng.randint(1, 3))
        r = self.rng
        err, rest = self.error_prone(), self._operand(r.randint(0, 2))
        choice = r.random()
        if choice < 0.2:
            return err
        if choice < 0.3:
            return f"NOT ({err})"
        # err first, in an OR: Postgres may reorder a top-level AND, but not an OR, so it
        # evaluates err on every row (other clauses use error-prone atoms anywhere)
        return f"{err} OR {rest}"


def _num_common(a: str, b: str) -> str:
    return max(a, b, key=NUM_TYPES.index)


def random_columns(rng: random.Random, table: Table) -> list[str] | None:
    """None (all columns) or the key plus a random subset."""
    if rng.random() < 0.25:
        return None
    names = [c.name for c in table.pk]
    names += [c.name for c in table.non_key if rng.random() < 0.5]
    rng.shuffle(names)
    return names


def columns_param(rng: random.Random, names: list[str]) -> str:
    parts = []
    for name in names:
        quoted = name != name.lower() or rng.random() < 0.3
        parts.append('"' + name.replace('"', '""') + '"' if quoted else name)
    return ",".join(parts)


# ---------------------------------------------------------------------------- writes


def random_value(rng: random.Random, column: Column) -> str | None:
    return rng.choice(column.pool)


def _key_where(table: Table, key: tuple) -> tuple[str, tuple]:
    return " AND ".join(f"{c.ident} = %s" for c in table.pk), key


def random_statement(rng: random.Random, table: Table, keys: list[tuple],
                     selections: list[list[str] | None]) -> tuple[str, tuple]:
    choice = rng.random()
    if choice < 0.25 or not keys:
        cols = table.columns
        values = [random_value(rng, c) for c in cols]
        names = ", ".join(c.ident for c in cols)
        casts = ", ".join(f"%s::{c.sql}" for c in cols)
        return f"INSERT INTO t ({names}) VALUES ({casts}) ON CONFLICT DO NOTHING", tuple(values)
    key_sql, key = _key_where(table, rng.choice(keys))
    if choice < 0.55:  # a few columns of one row: moves it in and out of the clauses
        cols = rng.sample(table.non_key, rng.randint(1, min(3, len(table.non_key))))
        sets = ", ".join(f"{c.ident} = %s::{c.sql}" for c in cols)
        return f"UPDATE t SET {sets} WHERE {key_sql}", (
            *[random_value(rng, c) for c in cols], *key)
    if choice < 0.63:  # only columns some shape does not select
        selected = rng.choice([s for s in selections if s is not None] or [[]])
        cols = [c for c in table.non_key if c.name not in selected] or table.non_key
        c = rng.choice(cols)
        return f"UPDATE t SET {c.ident} = %s::{c.sql} WHERE {key_sql}", (random_value(rng, c), *key)
    if choice < 0.68:  # many rows at once
        c = rng.choice(table.non_key)
        return (f"UPDATE t SET {c.ident} = %s::{c.sql} WHERE id %% 3 = %s",
                (random_value(rng, c), rng.randrange(3)))
    if choice < 0.72:  # relative update (may overflow: the savepoint rolls back)
        return f"UPDATE t SET i4 = i4 * %s + %s WHERE {key_sql}", (
            rng.choice([1, 2, -1]), rng.choice([0, 1, -1]), *key)
    if choice < 0.82:  # primary-key change (may collide: the savepoint rolls back)
        pk = rng.choice(table.pk)
        sets = [f"{pk.ident} = %s"]
        values = [int(v) if pk.kind == "int4" else v for v in [rng.choice(pk.pool)]]
        if rng.random() < 0.5:
            c = rng.choice(table.non_key)
            sets.append(f"{c.ident} = %s::{c.sql}")
            values.append(random_value(rng, c))
        return f"UPDATE t SET {', '.join(sets)} WHERE {key_sql}", (*values, *key)
    if choice < 0.88:  # no-op update
        c = rng.choice(table.non_key)
        return f"UPDATE t SET {c.ident} = {c.ident} WHERE {key_sql}", key
    if choice < 0.98:
        return f"DELETE FROM t WHERE {key_sql}", key
    return "DELETE FROM t WHERE id %% 5 = %s", (rng.randrange(5),)


# Rows on which each error-prone atom raises (so that every seed starts with some).
EDGE_ROWS = [
    {"i4": "0", "i8": "0", "num": "0", "f8": "1e300", "vc": "abc"},
    {"i4": "2147483647", "i8": "9223372036854775807", "num": "1e20", "f8": "-3.25",
     "vc": "9999999999"},
    {"i4": "1", "i8": "-9223372036854775808", "f8": "-Infinity"},
    {"i4": "-1", "num": "0", "vc": "x y"},
]


def insert_edge_rows(rng: random.Random, db: psycopg.Connection, table: Table) -> None:
    for n, edge in enumerate(EDGE_ROWS):
        cols = table.columns
        values = [str(61 + n) if c.name == "id" else edge.get(c.name, random_value(rng, c))
                  for c in cols]
        names = ", ".join(c.ident for c in cols)
        casts = ", ".join(f"%s::{c.sql}" for c in cols)
        db.execute(f"INSERT INTO t ({names}) VALUES ({casts})", values)


def current_keys(db: psycopg.Connection, table: Table) -> list[tuple]:
    order = ", ".join(c.ident for c in table.pk)
    return [tuple(r) for r in db.execute(f"SELECT {order} FROM t ORDER BY {order}").fetchall()]


def run_batch(rng: random.Random, db: psycopg.Connection, table: Table,
              selections: list[list[str] | None]) -> None:
    for _txn in range(rng.randint(1, 5)):
        keys = current_keys(db, table)
        try:
            with db.transaction():
                for _ in range(rng.randint(1, 5)):
                    sql, params = random_statement(rng, table, keys, selections)
                    try:
                        with db.transaction():  # a savepoint: a failed statement is undone alone
                            db.execute(sql, params)
                    except (psycopg.errors.UniqueViolation, psycopg.errors.DataError):
                        pass
                if rng.random() < 0.1:
                    raise _Rollback
        except _Rollback:
            pass


class _Rollback(Exception):
    pass


# ---------------------------------------------------------------------------- the oracle

# What Postgres raises while evaluating a clause on a row: data exceptions (class 22: division
# by zero, overflow, invalid input) and "cannot convert NaN/infinity to integer" (0A000).
ROW_ERRORS = (psycopg.errors.DataError, psycopg.errors.FeatureNotSupported)


def expected_rows(db: psycopg.Connection, table: Table, clause: str,
                  selected: list[str] | None) -> tuple[dict[str, dict], bool]:
    """Postgres' answer in the follower's format, and whether Postgres raised on some row."""
    names = selected or [c.name for c in table.columns]
    idents = ['"' + n.replace('"', '""') + '"' for n in names]
    keys = ", ".join(f"concat({c.ident})" for c in table.pk)
    values = ", ".join(f"CASE WHEN {i} IS NULL THEN NULL ELSE concat({i}) END" for i in idents)
    raised = False
    try:
        with db.transaction():
            rows = db.execute(f"SELECT {keys}, {values} FROM t WHERE {clause}").fetchall()
    except ROW_ERRORS:
        # Postgres raised on some row: evaluate the clause row by row, an error meaning false
        raised = True
        # Still as a WHERE clause (the planner treats quals differently from expressions in
        # a select list: it drops `col IS NOT NULL` on a NOT NULL column, for one), on just
        # that row: a TID scan fetches it, the clause filters it.
        escaped = clause.replace("%", "%%")  # the ctid is a parameter
        rows = []
        for ctid, *row in db.execute(f"SELECT ctid::text, {keys}, {values} FROM t").fetchall():
            try:
                with db.transaction():
                    db.execute("SET LOCAL enable_seqscan = off")
                    ok = db.execute(f"SELECT count(*) FROM t WHERE ctid = %s::tid AND ({escaped})",
                                    (ctid,)).fetchone()[0] == 1
            except ROW_ERRORS:
                ok = False
            if ok:
                rows.append(row)
    result = {}
    for row in rows:
        key_parts = row[:len(table.pk)]
        key = '"public"."t"/' + "/".join('"' + k.replace("/", "//") + '"' for k in key_parts)
        result[key] = dict(zip(names, row[len(table.pk):], strict=True))
    return result, raised


@dataclass
class Subject:
    """One followed shape."""

    clause: str
    selected: list[str] | None
    columns: str | None  # as sent

    def params(self, clause: str | None = None) -> dict:
        params = {"where": clause or self.clause}
        if self.columns is not None:
            params["columns"] = self.columns
        return params

    def describe(self, seed: int) -> str:
        return f"seed={seed} where={self.clause!r} columns={self.columns!r}"


def diff(expected: dict[str, dict], actual: dict[str, dict]) -> str:
    lines = []
    for key in sorted(set(expected) | set(actual)):
        e, a = expected.get(key), actual.get(key)
        if e != a:
            lines.append(f"  {key}: postgres={e} shape={a}")
    return "\n".join(lines[:20]) + ("\n  ..." if len(lines) > 20 else "")


class CheckingFollower(ShapeFollower):
    """A follower that also notes log items a correct server never sends: an update that
    changes no selected column (spec 7.5 drops those) and an insert of a row it already has."""

    def __init__(self, base_url: str, params: dict, key_columns: list[str]) -> None:
        self.key_columns = set(key_columns)
        self.anomalies: list[str] = []
        super().__init__(base_url, "t", params)

    def apply(self, message: dict) -> None:
        op = message["headers"].get("operation")
        key = message.get("key")
        if op == "insert" and key in self.rows:
            self.anomalies.append(f"insert of a row the shape has: {message}")
        elif op == "update" and key in self.rows:
            old = self.rows[key]
            if all(old.get(c) == v for c, v in message["value"].items()
                   if c not in self.key_columns):
                self.anomalies.append(f"update changing no selected column: {message}")
        super().apply(message)


def wait_equal(follower: ShapeFollower, expected: dict, context: str, timeout: float = 15) -> None:
    """Long-poll until the follower's rows equal ``expected``; on failure name the context."""
    deadline = time.monotonic() + timeout
    try:
        if not follower.up_to_date:
            follower.sync()
        while follower.rows != expected:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"shape differs from Postgres:\n{diff(expected, follower.rows)}")
            follower.request(live=True)
            if not follower.up_to_date:
                follower.sync()
    except AssertionError as exc:
        raise AssertionError(f"{context}: {exc}") from None


async def _load(dsn: str):
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        return await load_table(conn, None, "t")


def generate_clauses(rng: random.Random, db: psycopg.Connection, table: Table, info,
                     count: int) -> list[str]:
    """``count`` clauses the compiler accepts (the first one error-prone), preferring ones
    that split the initial rows (a clause matching no row or every row tests little)."""
    gen = ClauseGen(rng, table)
    clauses: list[str] = []
    attempts = 0
    rejected: list[tuple[str, str]] = []
    total = db.execute("SELECT count(*) FROM t").fetchone()[0]
    tries = 0
    while len(clauses) < count:
        attempts += 1
        clause = gen.clause(error_prone=not clauses)
        try:
            compile_where(clause, info)
        except WhereError as exc:
            rejected.append((clause, str(exc)))
            continue
        tries += 1
        if tries < 8 and len(expected_rows(db, table, clause, None)[0]) in (0, total):
            continue
        clauses.append(clause)
        tries = 0
    # over a few extra clauses, so that the acceptance rate means something
    for _ in range(20):
        attempts += 1
        clause = gen.clause(error_prone=rng.random() < 0.3)
        try:
            compile_where(clause, info)
        except WhereError as exc:
            rejected.append((clause, str(exc)))
    accepted = 1 - len(rejected) / attempts
    assert accepted >= MIN_ACCEPTED, (
        f"the grammar produced too many clauses the compiler rejects ({accepted:.0%} accepted):\n"
        + "\n".join(f"  {c!r}: {e}" for c, e in rejected[:10]))
    return clauses


def check_seed(server, db: psycopg.Connection, database: str, seed: int) -> None:
    rng = random.Random(seed)
    table = random_table(rng)
    create_table(db, table)
    for _ in range(25):
        sql, params = random_statement(rng, table, [], [])
        db.execute(sql, params)
    insert_edge_rows(rng, db, table)
    info = asyncio.run(_load(session_conninfo(database)))
    subjects = []
    for clause in generate_clauses(rng, db, table, info, CLAUSES_PER_SEED):
        selected = random_columns(rng, table)
        columns = None if selected is None else columns_param(rng, selected)
        subjects.append(Subject(clause, selected, columns))
    key_names = [c.name for c in table.pk]
    followers = [CheckingFollower(server.url, s.params(), key_names) for s in subjects]
    raised_any = False

    def check_all(stage: str) -> None:
        nonlocal raised_any
        for subject, follower in zip(subjects, followers, strict=True):
            expected, raised = expected_rows(db, table, subject.clause, subject.selected)
            raised_any |= raised
            wait_equal(follower, expected, f"{subject.describe(seed)}, {stage}")

    check_all("initial snapshot")
    selections = [s.selected for s in subjects]
    for batch in range(BATCHES):
        run_batch(rng, db, table, selections)
        check_all(f"after batch {batch}")
    for s in subjects:
        # a new client replays the shape's log from the start, and a new shape (the same
        # clause in parentheses: same meaning, other identity) takes a fresh snapshot
        replay = CheckingFollower(server.url, s.params(), key_names)
        wait_equal(replay, expected_rows(db, table, s.clause, s.selected)[0],
                   f"{s.describe(seed)}, log replay by a new client")
        fresh = CheckingFollower(server.url, s.params(f"({s.clause})"), key_names)
        wait_equal(fresh, expected_rows(db, table, s.clause, s.selected)[0],
                   f"{s.describe(seed)}, fresh snapshot of the same clause in parentheses")
    for s, follower in zip(subjects, followers, strict=True):
        assert not follower.anomalies, f"{s.describe(seed)}:\n" + "\n".join(follower.anomalies[:5])
    assert raised_any, f"seed={seed}: no clause ever raised in Postgres; the grammar lost its errors"


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
def test_filtered_shapes_equal_postgres(server, db, database, seed):
    check_seed(server, db, database, seed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(100, 120))
def test_filtered_shapes_equal_postgres_more_seeds(server, db, database, seed):
    check_seed(server, db, database, seed)


# ---------------------------------------------------------------------------- found by the oracle


def test_rounding_an_integer_takes_the_float8_overload(db, database):
    """round/trunc/ceil/floor/sign of an integer are double precision in Postgres (float8 is
    the numeric category's preferred type); they were typed numeric."""
    db.execute("CREATE TABLE t (id int PRIMARY KEY, i4 int4, i8 int8)")
    db.execute("INSERT INTO t VALUES (1, 1, 9223372036854775807)")
    info = asyncio.run(_load(session_conninfo(database)))
    row = {"id": "1", "i4": "1", "i8": "9223372036854775807"}
    for clause in ["round(i8) > 9223372036854775806",  # float8 cannot tell them apart
                   "trunc(i4) / 3 = 0.3333333333333333", "sign(i4) / 3 = 0.3333333333333333",
                   "ceil(i4) / 3 < 0.33333333333333333", "floor(i8) = 9223372036854775807"]:
        expected = db.execute(f"SELECT ({clause}) IS TRUE FROM t").fetchone()[0]
        assert compile_where(clause, info).matches(row) is expected, clause
    with pytest.raises(psycopg.errors.UndefinedFunction):
        db.execute("SELECT round(i4) % 2 FROM t")
    with pytest.raises(WhereError):
        compile_where("round(i4) % 2 = 0", info)


def test_snapshot_when_postgres_raises_feature_not_supported_on_a_row(server, db):
    """``'NaN'::numeric::int4`` raises SQLSTATE 0A000 (feature_not_supported), not a data
    exception (class 22): the filtered snapshot must still fall back to filtering each row."""
    db.execute("CREATE TABLE t (id int PRIMARY KEY, num numeric)")
    db.execute("INSERT INTO t VALUES (1, 'NaN'), (2, 7), (3, 1)")
    rows = ShapeFollower(server.url, "t", {"where": "num::int4 > 5"}).sync()
    assert set(rows) == {'"public"."t"/"2"'}


def test_is_not_null_on_a_not_null_column_with_an_erroring_arm(server, db):
    """Postgres >= 17 plans `col IS NOT NULL` on a NOT NULL column as TRUE, so another arm of
    an OR that would raise is never evaluated; the compiler folds it the same way, so rows
    are in the shape whichever path (snapshot or live) they came by."""
    if db.info.server_version < 170000:
        pytest.skip("Postgres < 17 evaluates the NullTest")
    db.execute("CREATE TABLE t (id int PRIMARY KEY, i4 int)")
    db.execute("INSERT INTO t VALUES (1, 0)")
    clause = "10 / i4 > 1 OR id IS NOT NULL"
    follower = ShapeFollower(server.url, "t", {"where": clause})
    follower.sync()
    db.execute("INSERT INTO t VALUES (2, 0), (3, 5)")  # 2: like 1; 3: matches without error
    follower.wait_for(lambda rows: '"public"."t"/"3"' in rows)
    in_postgres = {r[0] for r in db.execute(f"SELECT id FROM t WHERE {clause}").fetchall()}
    assert in_postgres == {1, 2, 3}
    assert set(follower.rows) == {'"public"."t"/"1"', '"public"."t"/"2"', '"public"."t"/"3"'}
