"""Property test: the evaluator agrees with real Postgres on random typed expressions.

One table with a column of every supported type; each example inserts one random row,
reads it back as text (as pgoutput would send it), and for a handful of random boolean
expressions compares

- ``compile_where(expr).matches(row)`` with
- ``SELECT (<compiled.sql>) IS TRUE FROM t`` (a Postgres error must mean ``False``), and
- the same with the user's original text (so the re-rendering does not change meaning).
"""

from __future__ import annotations

import os

import psycopg
import pytest
from hypothesis import HealthCheck, event, given, seed, settings
from hypothesis import strategies as st

from shapesync.tables import ColumnInfo, TableInfo
from shapesync.where import WhereError, compile_where
from shapesync.where.errors import EvalError

COLUMNS = {
    # name: (sql type, our type, typname, element typname)
    "i2": ("int2", "int2"), "i4": ("int4", "int4"), "i8": ("int8", "int8"),
    "num": ("numeric", "numeric"), "f4": ("float4", "float4"), "f8": ("float8", "float8"),
    "b": ("bool", "bool"), "t": ("text", "text"), "vc": ("varchar(12)", "varchar"),
    "bp": ("char(4)", "bpchar"), "u": ("uuid", "uuid"), "d": ("date", "date"),
    "tm": ("time", "time"), "ts": ("timestamp", "timestamp"),
    "tz": ("timestamptz", "timestamptz"), "iv": ("interval", "interval"),
    "ai": ("int4[]", "int4[]"), "at": ("text[]", "text[]"), "e": ("mood", "mood"),
    "j": ("jsonb", "jsonb"),
}
MOODS = ("sad", "ok", "happy")


def table_info(conn: psycopg.Connection) -> TableInfo:
    rows = conn.execute(
        """SELECT a.attname, a.atttypid::int, t.typname, et.typname, a.atttypmod, a.attndims
           FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
           LEFT JOIN pg_type et ON et.oid = t.typelem AND t.typcategory = 'A'
           WHERE a.attrelid = 'w'::regclass AND a.attnum > 0 AND NOT a.attisdropped
           ORDER BY a.attnum""").fetchall()
    cols = tuple(ColumnInfo(n, oid, tn, et, mod, dims, False, None)
                 for n, oid, tn, et, mod, dims in rows)
    oid = conn.execute("SELECT 'w'::regclass::oid::int").fetchone()[0]
    return TableInfo(oid, "public", "w", cols)


# ---------------------------------------------------------------------------- values

SMALL_INTS = st.integers(-20, 20)


def ints(bits: int):
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return st.one_of(SMALL_INTS, st.integers(lo, hi), st.sampled_from([lo, hi, lo + 1, hi - 1]))


numerics = st.one_of(
    st.decimals(min_value=-10**6, max_value=10**6, places=2, allow_nan=False).map(str),
    st.decimals(min_value=-100, max_value=100, places=0, allow_nan=False).map(str),
    st.sampled_from(["0", "0.5", "-0.5", "1.50", "2.5", "-2.5", "0.333", "12345678901234567890.123",
                     "NaN", "Infinity", "-Infinity", "1e-5"]),
)
floats8 = st.one_of(
    st.floats(-1e6, 1e6).map(repr),
    st.sampled_from(["0", "-0", "0.1", "0.5", "1.5", "-2.5", "1e300", "-1e300", "1e-300",
                     "NaN", "Infinity", "-Infinity", "3"]),
)
floats4 = st.one_of(
    st.floats(-1e4, 1e4, width=32).map(repr),
    st.sampled_from(["0", "0.1", "1.5", "-2.5", "3e38", "NaN", "Infinity", "-Infinity"]),
)
ALPHABET = "aAbB _%\\'é"
texts = st.text(alphabet=ALPHABET, max_size=5)
uuids = st.sampled_from([
    "00000000-0000-0000-0000-000000000000", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A12", "ffffffff-ffff-ffff-ffff-ffffffffffff",
])
dates = st.one_of(
    st.dates().map(lambda d: d.isoformat()),
    st.sampled_from(["2024-01-01", "2024-02-29", "2000-01-01", "infinity", "-infinity",
                     "0044-03-15 BC", "12345-01-01"]),
)
times = st.times().map(lambda t: t.isoformat())
timestamps = st.one_of(
    st.datetimes().map(lambda t: t.isoformat(" ")),
    st.sampled_from(["2024-01-01 00:00:00", "2024-01-31 12:00:00", "infinity", "-infinity",
                     "0044-03-15 10:00:00.5 BC", "10000-01-01 00:00:00", "2024-02-29 23:59:59.999999"]),
)
timestamptzs = st.one_of(
    st.datetimes().map(lambda t: t.isoformat(" ") + "+00"),
    st.sampled_from(["2024-01-01 00:00:00+00", "2024-01-01 05:00:00+05:30", "infinity",
                     "0001-01-01 00:00:00+00 BC", "12345-06-07 08:09:10.5+00"]),
)
intervals = st.one_of(
    st.builds(lambda m, d, s: f"{m} months {d} days {s} seconds",
              st.integers(-30, 30), st.integers(-40, 40), st.integers(-200000, 200000)),
    st.sampled_from(["1 day", "24 hours", "1 mon", "30 days", "-1 day", "0", "1.5 days",
                     "P1Y2M3DT4H5M6.5S"]),
)


def arrays(elem, size=4):
    return st.lists(st.one_of(st.none(), elem), max_size=size)


def int_array_text(items):
    return "{" + ",".join("NULL" if x is None else str(x) for x in items) + "}"


def text_array_text(items):
    def q(s):
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return "{" + ",".join("NULL" if x is None else q(x) for x in items) + "}"


VALUE_STRATEGIES = {
    "i2": ints(16).map(str), "i4": ints(32).map(str), "i8": ints(64).map(str),
    "num": numerics, "f4": floats4, "f8": floats8, "b": st.sampled_from(["t", "f"]),
    "t": texts, "vc": texts, "bp": st.text(alphabet="ab ", max_size=4), "u": uuids,
    "d": dates, "tm": times, "ts": timestamps, "tz": timestamptzs, "iv": intervals,
    "ai": arrays(SMALL_INTS).map(int_array_text),
    "at": arrays(st.text(alphabet="ab ,", max_size=2)).map(text_array_text),
    "e": st.sampled_from(MOODS), "j": st.sampled_from(['{}', '{"a": 1}', "[]"]),
}


@st.composite
def rows(draw):
    return {c: draw(st.one_of(st.none(), s) if draw(st.integers(0, 5)) == 0 else s)
            for c, s in VALUE_STRATEGIES.items()}


# ---------------------------------------------------------------------------- expressions


def q(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


COLS_BY_TYPE = {
    "int2": ["i2"], "int4": ["i4"], "int8": ["i8"], "numeric": ["num"], "float4": ["f4"],
    "float8": ["f8"], "bool": ["b"], "text": ["t", "vc"], "bpchar": ["bp"], "uuid": ["u"],
    "date": ["d"], "time": ["tm"], "timestamp": ["ts"], "timestamptz": ["tz"],
    "interval": ["iv"], "int4[]": ["ai"], "text[]": ["at"],
}
NUMERIC_T = ["int2", "int4", "int8", "numeric", "float4", "float8"]
ORDERED_T = [*NUMERIC_T, "text", "bpchar", "uuid", "date", "time", "timestamp",
             "timestamptz", "interval", "bool", "int4[]", "text[]"]

LITERALS = {
    "int2": lambda: st.integers(-5, 5).map(lambda v: f"{v}::int2"),
    "int4": lambda: st.one_of(st.integers(-30, 30).map(str), st.just("2147483647")),
    "int8": lambda: st.one_of(st.just("9223372036854775807"), st.integers(-5, 5).map(lambda v: f"{v}::int8")),
    "numeric": lambda: st.sampled_from(["0.5", "1.50", "-2.5", "3.0", "'NaN'::numeric", "0.333", "10"
                                        "::numeric", "99999999999999999999"]),
    "float4": lambda: st.sampled_from(["0.1::float4", "1.5::real", "'NaN'::float4", "'-Infinity'::float4"]),
    "float8": lambda: st.sampled_from(["0.1::float8", "1e300::float8", "'NaN'::float8",
                                       "'Infinity'::float8", "2.5::double precision", "-0.0::float8"]),
    "bool": lambda: st.sampled_from(["true", "false", "NULL::bool", "'t'::bool", "'yes'::boolean"]),
    "text": lambda: texts.map(q),
    "bpchar": lambda: st.text(alphabet="ab ", max_size=3).map(lambda s: q(s) + "::char(3)"),
    "uuid": lambda: uuids.map(lambda s: q(s) + "::uuid"),
    "date": lambda: dates.map(lambda s: "date " + q(s)),
    "time": lambda: times.map(lambda s: q(s) + "::time"),
    "timestamp": lambda: timestamps.map(lambda s: q(s) + "::timestamp"),
    "timestamptz": lambda: timestamptzs.map(lambda s: q(s) + "::timestamptz"),
    "interval": lambda: intervals.map(lambda s: "interval " + q(s)),
    "int4[]": lambda: st.one_of(arrays(st.integers(-3, 3)).map(lambda x: q(int_array_text(x)) + "::int[]"),
                                st.lists(st.integers(-3, 3), min_size=1, max_size=3).map(
                                    lambda x: "ARRAY[" + ",".join(map(str, x)) + "]")),
    "text[]": lambda: arrays(st.text(alphabet="ab", max_size=2)).map(
        lambda x: q(text_array_text(x)) + "::text[]"),
}

ARITH_OPS = {"int2": "+-*/%", "int4": "+-*/%", "int8": "+-*/%", "numeric": "+-*/%",
             "float4": "+-*/", "float8": "+-*/"}


@st.composite
def expr(draw, t: str, depth: int = 2):
    """A SQL expression of type ``t`` (as a string)."""
    leaf = depth <= 0 or draw(st.integers(0, 3)) == 0
    if leaf:
        choice = draw(st.integers(0, 9))
        if t == "bool" and choice < 3:
            return draw(expr("bool", 1)) if depth > 0 else "b"
        if choice < 6 and t in COLS_BY_TYPE:
            return draw(st.sampled_from(COLS_BY_TYPE[t]))
        if choice == 6:
            return f"NULL::{t}"
        return draw(LITERALS[t]())
    if t == "bool":
        return draw(bool_expr(depth))
    if t in ARITH_OPS:
        kind = draw(st.integers(0, 7))
        if kind <= 2:
            op = draw(st.sampled_from(ARITH_OPS[t]))
            other = t
            if t in ("int4", "int8", "numeric", "float8") and draw(st.booleans()):
                # mixed types that resolve to t
                other = {"int4": "int2", "int8": "int4", "numeric": "int4", "float8": "float4"}[t]
            a, b = draw(expr(t, depth - 1)), draw(expr(other, depth - 1))
            if draw(st.booleans()):
                a, b = b, a
            return f"({a} {op} {b})"
        if kind == 3:
            return f"(- {draw(expr(t, depth - 1))})"
        if kind == 4:
            src = draw(st.sampled_from(NUMERIC_T + ["text"]))
            inner = draw(expr(src, depth - 1))
            if src == "text":
                inner = draw(LITERALS[t]()) if draw(st.booleans()) else inner
            if draw(st.integers(0, 2)) == 0:
                # the type-name function spelling: int4(x) is CAST(x AS int4)
                return f'"{t}"({inner})' if t == "numeric" else f"{t}({inner})"
            return f"CAST({inner} AS {t})"
        if kind == 5:
            fn = draw(st.sampled_from(["abs", "coalesce", "greatest", "least", "nullif"]))
            if fn == "abs":
                return f"abs({draw(expr(t, depth - 1))})"
            return f"{fn}({draw(expr(t, depth - 1))}, {draw(expr(t, depth - 1))})"
        if kind == 6 and t == "int4":
            s = draw(expr("text", depth - 1))
            return draw(st.sampled_from([f"length({s})", f"strpos({s}, 'a')",
                                         f"cardinality({draw(expr('int4[]', 0))})"]))
        if kind == 6 and t in ("numeric", "float8"):
            fn = draw(st.sampled_from(["round", "floor", "ceil", "trunc", "sign"]))
            return f"{fn}({draw(expr(t, depth - 1))})"
        if kind == 7 and t == "numeric":
            return draw(numeric_power(depth))
        return draw(expr(t, 0))
    if t == "text":
        kind = draw(st.integers(0, 6))
        if kind == 0:
            return f"({draw(expr('text', depth - 1))} || {draw(expr('text', depth - 1))})"
        if kind == 1:
            fn = draw(st.sampled_from(["lower", "upper", "btrim", "ltrim", "rtrim", "reverse"]))
            return f"{fn}({draw(expr('text', depth - 1))})"
        if kind == 2:
            src = draw(st.sampled_from([*NUMERIC_T, "bool", "date", "timestamp", "timestamptz",
                                        "interval", "time", "uuid", "bpchar", "int4[]", "text[]"]))
            if draw(st.integers(0, 3)) == 0:
                return f"text({draw(expr(src, depth - 1))})"
            return f"CAST({draw(expr(src, depth - 1))} AS text)"
        if kind == 3:
            return f"substr({draw(expr('text', depth - 1))}, {draw(st.integers(-1, 3))}, {draw(st.integers(0, 3))})"
        if kind == 4:
            return f"coalesce({draw(expr('text', depth - 1))}, {draw(expr('text', depth - 1))})"
        return draw(expr("text", 0))
    if t in ("date", "timestamp", "timestamptz", "time", "interval"):
        kind = draw(st.integers(0, 5))
        if t in ("timestamp", "timestamptz") and kind == 4:
            return draw(at_time_zone(t, depth))
        if kind == 5:
            return draw(type_name_call(t))
        if t == "date" and kind == 0:
            return f"({draw(expr('date', depth - 1))} + {draw(st.integers(-40, 40))})"
        if t in ("timestamp", "timestamptz") and kind == 0:
            return f"({draw(expr(t, depth - 1))} + {draw(expr('interval', depth - 1))})"
        if t in ("timestamp", "timestamptz") and kind == 1:
            return f"({draw(expr(t, depth - 1))} - {draw(expr('interval', depth - 1))})"
        if t == "timestamp" and kind == 2:
            return f"CAST({draw(expr('date', depth - 1))} AS timestamp)"
        if t == "interval" and kind == 0:
            return f"({draw(expr('timestamp', depth - 1))} - {draw(expr('timestamp', depth - 1))})"
        if t == "interval" and kind == 1:
            return f"({draw(expr('interval', depth - 1))} + {draw(expr('interval', depth - 1))})"
        if t == "interval" and kind == 2:
            return f"({draw(expr('interval', depth - 1))} * {draw(st.sampled_from(['2', '0.5', '-1.5']))})"
        return draw(expr(t, 0))
    if t in ("int4[]", "text[]"):
        kind = draw(st.integers(0, 3))
        if kind == 0:
            return draw(slice_expr(t, depth))
        if kind in (1, 2):
            return draw(concat_expr(t, depth))
        return draw(expr(t, 0))
    return draw(expr(t, 0))


@st.composite
def slice_expr(draw, t: str, depth: int):
    lo = draw(st.sampled_from(["", "", "0", "1", "2", "-1", "NULL", "i2"]))
    hi = draw(st.sampled_from(["", "1", "2", "3", "5", "NULL", "i2"]))
    extra = draw(st.sampled_from(["", "", "[1]", "[:1]"]))
    return f"({draw(expr(t, depth - 1))})[{lo}:{hi}]{extra}"


@st.composite
def concat_expr(draw, t: str, depth: int):
    """array || element, element || array, array || array (also untyped or NULL), and the
    array_append / array_prepend / array_cat functions."""
    elem = t[:-2]
    a = draw(expr(t, depth - 1))
    kind = draw(st.integers(0, 2))
    if kind == 0:
        b = draw(expr(elem, 0))
        if b.startswith("'"):
            b += "::text"  # an untyped literal would be read as an array
        fn = draw(st.sampled_from(["||", "array_append"]))
        if fn == "array_append":
            return f"array_append({a}, {b})" if draw(st.booleans()) else f"array_prepend({b}, {a})"
    else:
        untyped = ["NULL", "'{}'", "'{1,NULL}'", "'{3}'"] if elem == "int4" else [
            "NULL", "'{}'", "'{x,\"a b\"}'"]
        b = draw(expr(t, 0)) if kind == 1 else draw(st.sampled_from(untyped))
        if draw(st.integers(0, 3)) == 0:
            return f"array_cat({a}, {b})"
    return f"({a} || {b})" if draw(st.booleans()) else f"({b} || {a})"


@st.composite
def at_time_zone(draw, t: str, depth: int):
    src = "timestamptz" if t == "timestamp" else "timestamp"
    if draw(st.integers(0, 4)) == 0:
        src = "date" if t == "timestamp" else src  # dates convert through timestamptz
    zone = draw(ZONES)
    if draw(st.booleans()):
        return f"timezone({zone}, {draw(expr(src, depth - 1))})"
    return f"({draw(expr(src, depth - 1))} AT TIME ZONE {zone})"


@st.composite
def numeric_power(draw, depth: int):
    exponent = draw(st.sampled_from(["2", "3", "-1", "0", "0.5", "-2.5", "2.0", "i2", "'1.5'",
                                     "num"]))
    return f"({draw(expr('numeric', depth - 1))} ^ {exponent})"


@st.composite
def new_construct(draw, depth: int):
    """(type, expression): array slices / concatenation, AT TIME ZONE, numeric ^,
    type-name functions."""
    which = draw(st.integers(0, 4))
    if which <= 1:
        t = draw(st.sampled_from(["int4[]", "text[]"]))
        return t, draw(slice_expr(t, depth) if which == 0 else concat_expr(t, depth))
    if which == 2:
        t = draw(st.sampled_from(["timestamp", "timestamptz"]))
        return t, draw(at_time_zone(t, depth))
    if which == 3:
        return "numeric", draw(numeric_power(depth))
    t = draw(st.sampled_from(TYPE_NAME_FUNCTIONS))
    return t, draw(type_name_call(t))


TYPE_NAME_FUNCTIONS = ["int2", "int4", "int8", "numeric", "float4", "float8", "bool", "uuid",
                       "date", "time", "timestamp", "timestamptz", "interval"]


@st.composite
def type_name_call(draw, t: str):
    """The type-name function spelling of a cast from text: int4(x) is CAST(x AS int4)."""
    name = f'"{t}"' if t in ("numeric", "time", "timestamp", "interval") else t
    if t in LITERALS and draw(st.booleans()):
        arg = draw(LITERALS[t]())
    elif t in INPUT_SPELLINGS and draw(st.booleans()):
        arg = q(draw(INPUT_SPELLINGS[t]))
    else:
        arg = draw(expr("text", 0))
    return f"{name}({arg})"


ZONES = st.sampled_from([
    "'UTC'", "'Europe/Berlin'", "'America/New_York'", "'Asia/Kolkata'", "'+02:00'", "'-05'",
    "'utc+3'", "interval '2 hours'", "interval '-90 minutes'", "NULL", "iv",
])


@st.composite
def bool_expr(draw, depth: int):
    kind = draw(st.integers(0, 19))
    sub = depth - 1
    if kind in (18, 19):
        t, a = draw(new_construct(depth))
        op = draw(st.sampled_from(["=", "<>", "<", ">=", "IS DISTINCT FROM"]))
        if t in ("bool", "uuid", "int4[]", "text[]") and op in ("<", ">="):
            op = "="
        other = draw(expr(t, 0)) if t in COLS_BY_TYPE else draw(LITERALS[t]()) if t in LITERALS \
            else f"NULL::{t}"
        return f"({a} {op} {other})"
    if kind in (14, 15):
        # Postgres' input functions on odd spellings (constants are folded at compile time)
        t = draw(st.sampled_from(sorted(INPUT_SPELLINGS)))
        text = draw(INPUT_SPELLINGS[t])
        op = draw(st.sampled_from(["=", "<", ">="]))
        other = draw(expr(t, 0)) if t in COLS_BY_TYPE else draw(LITERALS["int4"]())
        return f"(CAST({q(text)} AS {t}) {op} {other})"
    if kind == 16:
        return draw(st.sampled_from([
            f"(mod({draw(expr('int4', sub))}, {draw(expr('int4', sub))}) = {draw(expr('int4', 0))})",
            f"(round({draw(expr('numeric', sub))}, {draw(st.integers(-2, 3))}) = {draw(expr('numeric', 0))})",
            f"(({draw(expr('float8', sub))} ^ {draw(st.sampled_from(['2', '0.5', '-1']))}) > {draw(expr('float8', 0))})",
            f"(justify_interval({draw(expr('interval', sub))}) = {draw(expr('interval', 0))})",
            f"(justify_days({draw(expr('interval', sub))})::text = {draw(expr('text', 0))})",
            f"(({draw(expr('date', sub))} - {draw(expr('date', sub))}) > {draw(expr('int4', 0))})",
            f"(({draw(expr('date', sub))} + {draw(expr('time', 0))}) < {draw(expr('timestamp', 0))})",
            f"(({draw(expr('time', sub))} - {draw(expr('time', 0))}) < {draw(expr('interval', 0))})",
            f"(({draw(expr('interval', sub))} / {draw(st.sampled_from(['3', '0.7', '-2']))}) < {draw(expr('interval', 0))})",
            f"(({draw(expr('text', sub))} || {draw(expr(draw(st.sampled_from(NUMERIC_T)), 0))}) = {draw(expr('text', 0))})",
            f"(ARRAY[{draw(expr('int4', 0))}, {draw(expr('int4', 0))}][{draw(st.integers(0, 3))}] = {draw(expr('int4', 0))})",
            f"({draw(expr('int4[]', 0))}[{draw(st.integers(0, 3))}] > {draw(expr('int4', 0))})",
            f"(CAST({draw(expr('numeric', sub))} AS numeric({draw(st.integers(3, 6))},{draw(st.integers(0, 2))})) = {draw(expr('numeric', 0))})",
            f"(CAST({draw(expr('text', sub))} AS varchar(2)) = {draw(expr('text', 0))})",
            f"(CAST({draw(expr('text', sub))} AS char(2)) = {draw(expr('bpchar', 0))})",
            f"(ARRAY[[{draw(expr('int4', 0))}, 1], [2, {draw(expr('int4', 0))}]] = {draw(expr('int4[]', 0))})",
            f"(greatest({draw(expr('text', sub))}, {draw(expr('text', sub))}) < {draw(expr('text', 0))})",
            f"(CAST({draw(expr('text', sub))} AS {draw(st.sampled_from(sorted(INPUT_SPELLINGS)))}) IS NOT NULL)",
        ]))
    if kind == 17:
        t = draw(st.sampled_from([*NUMERIC_T, "text", "date", "interval", "uuid"]))
        items = ", ".join(draw(expr(t, 0)) for _ in range(draw(st.integers(1, 4))))
        word = draw(st.sampled_from(["IN", "NOT IN"]))
        return f"({draw(expr(t, sub))} {word} ({items}))"
    if kind == 0:
        op = draw(st.sampled_from(["AND", "OR"]))
        n = draw(st.integers(2, 3))
        return "(" + f" {op} ".join(draw(expr("bool", sub)) for _ in range(n)) + ")"
    if kind == 1:
        return f"(NOT {draw(expr('bool', sub))})"
    if kind in (2, 3, 4):
        t = draw(st.sampled_from(ORDERED_T))
        op = draw(st.sampled_from(["=", "<>", "!=", "<", ">", "<=", ">="]))
        a = draw(expr(t, sub))
        if t in NUMERIC_T and draw(st.booleans()):
            t = draw(st.sampled_from(NUMERIC_T))  # mixed numeric comparison
        if t in COLS_BY_TYPE and t not in ("bool",) and draw(st.integers(0, 2)) == 0 and t not in (
                "int4[]", "text[]"):
            b = draw(untyped_literal(t))
        else:
            b = draw(expr(t, sub))
        return f"({a} {op} {b})"
    if kind == 5:
        t = draw(st.sampled_from(ORDERED_T))
        test = draw(st.sampled_from(["IS NULL", "IS NOT NULL"]))
        return f"({draw(expr(t, sub))} {test})"
    if kind == 6:
        test = draw(st.sampled_from(["IS TRUE", "IS NOT TRUE", "IS FALSE", "IS NOT FALSE",
                                     "IS UNKNOWN", "IS NOT UNKNOWN"]))
        return f"({draw(expr('bool', sub))} {test})"
    if kind == 7:
        t = draw(st.sampled_from(ORDERED_T))
        word = draw(st.sampled_from(["IS DISTINCT FROM", "IS NOT DISTINCT FROM"]))
        return f"({draw(expr(t, sub))} {word} {draw(expr(t, sub))})"
    if kind == 8:
        t = draw(st.sampled_from([*NUMERIC_T, "text", "date", "uuid", "bpchar", "interval"]))
        items = [draw(st.one_of(expr(t, 0), untyped_literal(t) if t != "bool" else expr(t, 0),
                                st.just("NULL")))
                 for _ in range(draw(st.integers(1, 4)))]
        word = draw(st.sampled_from(["IN", "NOT IN"]))
        return f"({draw(expr(t, sub))} {word} ({', '.join(items)}))"
    if kind == 9:
        t = draw(st.sampled_from([*NUMERIC_T, "text", "date", "timestamp"]))
        word = draw(st.sampled_from(["BETWEEN", "NOT BETWEEN", "BETWEEN SYMMETRIC",
                                     "NOT BETWEEN SYMMETRIC"]))
        return f"({draw(expr(t, sub))} {word} {draw(expr(t, 0))} AND {draw(expr(t, 0))})"
    if kind == 10:
        word = draw(st.sampled_from(["LIKE", "NOT LIKE", "ILIKE", "NOT ILIKE"]))
        pat = draw(st.text(alphabet="aAb%_\\é", max_size=4))
        if pat.endswith("\\") and not pat.endswith("\\\\"):
            pat += "a"
        src = draw(st.sampled_from(["t", "vc", "bp", "lower(t)", "upper(vc)"]))
        esc = draw(st.sampled_from(["", "", " ESCAPE '!'", " ESCAPE ''"]))
        return f"({src} {word} {q(pat)}{esc})"
    if kind == 11:
        t = draw(st.sampled_from(["int4", "text"]))
        arr_t = t + "[]"
        op = draw(st.sampled_from(["=", "<>", "<", ">="]))
        word = draw(st.sampled_from(["ANY", "ALL"]))
        return f"({draw(expr(t, sub))} {op} {word} ({draw(expr(arr_t, 0))}))"
    if kind == 12:
        t = draw(st.sampled_from(["int4[]", "text[]"]))
        op = draw(st.sampled_from(["@>", "<@", "&&"]))
        return f"({draw(expr(t, 0))} {op} {draw(expr(t, 0))})"
    e_op = draw(st.sampled_from(["=", "<>"]))
    return draw(st.sampled_from([
        f"(e {e_op} {q(draw(st.sampled_from(MOODS)))})",
        "(e IN ('sad', 'happy'))",
        f"(j IS {draw(st.sampled_from(['', 'NOT ']))}NULL)",
        f"starts_with({draw(expr('text', 0))}, {draw(expr('text', 0))})",
    ]))


WS = st.sampled_from(["", " ", "  ", "\t", "\n"])


def _spaced(inner):
    return st.builds(lambda a, x, b: a + x + b, WS, inner, WS)


INPUT_SPELLINGS = {
    "int2": _spaced(st.one_of(st.integers(-40000, 40000).map(str), st.sampled_from(
        ["0x1F", "-0x8000", "0o17", "0b101", "1_000", "1__0", "_1", "+5", "- 5", "", "1e3", "3."]))),
    "int4": _spaced(st.one_of(st.integers(-(2**32), 2**32).map(str), st.sampled_from(
        ["0x7FFFFFFF", "0x80000000", "-0x80000000", "1_000_000", "00012", "+0", "12a"]))),
    "int8": _spaced(st.sampled_from(["9223372036854775807", "9223372036854775808",
                                     "-9223372036854775808", "0xFFFFFFFFFFFFFFFF", "1_2"])),
    "numeric": _spaced(st.one_of(
        st.builds(lambda a, b, e: f"{a}.{b}e{e}", st.integers(-99, 99), st.integers(0, 999),
                  st.integers(-5, 5)),
        st.sampled_from(["NaN", "nan", "Infinity", "-inf", "+inf", ".5", "5.", "1_000.000_1",
                         "0x10", "1e", "-.5e-3", "00.100", "1e-20"]))),
    "float8": _spaced(st.one_of(
        st.floats(allow_nan=False).map(repr),
        st.sampled_from(["NaN", "-Infinity", "inf", "+INF", "1e308", "1e309", "-1e-320",
                         "1e-400", "0x1p-3", ".5", "5.", "1_0", "4.9e-324", "-0"]))),
    "float4": _spaced(st.one_of(
        st.floats(width=32, allow_nan=False).map(repr),
        st.sampled_from(["3.4e38", "3.5e38", "1e-45", "1e-46", "NaN", "-inf", "0.1"]))),
    "bool": _spaced(st.sampled_from(["t", "TRUE", "tr", "y", "yes", "ye", "on", "o", "of",
                                     "off", "1", "0", "f", "fa", "no", "n", "maybe", ""])),
    "date": _spaced(st.one_of(
        dates,
        st.sampled_from(["2024-1-5", "2024-02-30", "0000-01-01", "20240105", "2024-01-05 BC",
                         "epoch", "Infinity", "2024-01-05 10:00", "5874897-12-31",
                         "5874898-01-01", "4714-11-24 BC", "4714-11-23 BC"]))),
    "timestamp": _spaced(st.one_of(
        timestamps,
        st.sampled_from(["2024-01-05T10:00:00", "2024-01-05 10:00:00Z", "2024-01-05 10:00+05:30",
                         "2024-01-05 24:00:00", "2024-01-05 23:59:60", "2024-01-05 10:00:00.1234565",
                         "2024-01-05 10:00:00.9999995", "2024-01-05", "294276-12-31 23:59:59.999999",
                         "294277-01-01 00:00:00", "0001-01-01 00:00:00 BC", "epoch"]))),
    "timestamptz": _spaced(st.one_of(
        timestamptzs,
        st.sampled_from(["2024-01-05T10:00:00Z", "2024-01-05 10:00:00-03", "2024-01-05 10:00+0530",
                         "2024-01-05 10:00:00+05:30:15", "2024-01-05 10:00 +01", "2024-01-05",
                         "2024-01-05 10:00:00+16"]))),
    "time": _spaced(st.one_of(times, st.sampled_from(
        ["10:00", "10:00 PM", "12:00 am", "12:30 AM", "24:00:00", "24:00:01", "23:59:60",
         "10:00:00.5", "10:00+05", "allballs", "2024-01-05 10:00:00", "13:00 pm", "1:2:3"]))),
    "interval": _spaced(st.one_of(intervals, st.sampled_from(
        ["1", "1.5", "-1", "1 day 2 hours", "1 week", "2 weeks 1 day", "1.5 weeks", "1 year 1.5 months",
         "0.5 years", "1 decade", "1 century", "3 millennia", "-1 day +2 hours", "1:30", "-1:30:15.5",
         "1 day -01:00", "100 ms", "1.5 us", "P1W", "P0.5D", "PT1.5H", "P1Y-2M", "PT-0.5S",
         "@ 3 days ago", "1 day ago", "5 mins", "infinity", "-infinity", "P", "1 fortnight"]))),
    "uuid": _spaced(st.sampled_from([
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
        "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}", "a0eebc999c0b4ef8bb6d6bb9bd380a11",
        "a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11", "a0eebc99-9c0b4ef8-bb6d6bb9-bd380a11",
        "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1",
        "g0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"])),
    "int4[]": _spaced(st.sampled_from([
        "{1,2,3}", "{ 1 , 2 }", "{}", "{NULL}", "{null,1}", '{"1",2}', "{{1,2},{3,4}}",
        "{{1,2},{3}}", "[0:1]={1,2}", "[1:2][1:1]={{1},{2}}", "[0:0]={1,2}", "{1,2", "{1,,2}",
        "{{}}", "1,2", "{ }", "{1} x"])),
    "text[]": _spaced(st.sampled_from([
        '{a,b}', '{"a b", c}', '{ a b , c }', '{"",NULL,"NULL"}', '{\\a,b\\,c}',
        '{"a\\"b"}', '{a"b}', "{{a},{b}}", '{"{}"}', "{ }", "{a,}", '{ "x" }'])),
}


@st.composite
def untyped_literal(draw, t: str):
    """A bare string literal whose type comes from the other operand."""
    raw = {
        "int2": st.integers(-5, 5).map(str), "int4": st.integers(-5, 5).map(str),
        "int8": st.integers(-5, 5).map(str), "numeric": st.sampled_from(["1.5", "0", "-2.50", "NaN"]),
        "float4": st.sampled_from(["1.5", "0.1", "NaN", "-Infinity"]),
        "float8": st.sampled_from(["1.5", "0.1", "NaN", "Infinity", "1e-3"]),
        "text": texts, "bpchar": st.text(alphabet="ab ", max_size=3), "uuid": uuids,
        "date": dates, "time": times, "timestamp": timestamps, "timestamptz": timestamptzs,
        "interval": intervals, "bool": st.sampled_from(["t", "false"]),
    }[t]
    return q(draw(raw))


# ---------------------------------------------------------------------------- the test


@pytest.fixture
def wtable(db: psycopg.Connection):
    db.execute("CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')")
    cols = ", ".join(f"{name} {sqlt}" for name, (sqlt, _) in COLUMNS.items())
    db.execute(f"CREATE TABLE w ({cols})")
    return db, table_info(db)


def pg_eval(db: psycopg.Connection, sql: str):
    try:
        return db.execute(f"SELECT ({sql}) IS TRUE FROM w").fetchone()[0]
    except psycopg.Error as exc:
        return ("error", str(exc).splitlines()[0])


@seed(int(os.environ.get("WHERE_PROPERTY_SEED", "20241105")))
@settings(max_examples=int(os.environ.get("WHERE_PROPERTY_EXAMPLES", "300")), deadline=None,
          derandomize="WHERE_PROPERTY_SEED" not in os.environ,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(row=rows(), exprs=st.lists(bool_expr(3), min_size=4, max_size=4))
def test_evaluator_agrees_with_postgres(wtable, row, exprs):
    db, table = wtable
    db.execute("TRUNCATE w")
    names = list(COLUMNS)
    placeholders = ", ".join(f"%s::{COLUMNS[n][0]}" for n in names)
    db.execute(f"INSERT INTO w ({', '.join(names)}) VALUES ({placeholders})",
               [row[n] for n in names])
    select = ", ".join(f"CASE WHEN {n} IS NULL THEN NULL ELSE concat({n}) END" for n in names)
    values = db.execute(f"SELECT {select} FROM w").fetchone()
    text_row = dict(zip(names, values, strict=True))
    for clause in exprs:
        try:
            compiled = compile_where(clause, table)
        except WhereError as exc:
            # the generator only builds valid expressions; Postgres must reject it too
            result = pg_eval(db, clause)
            event("rejected")
            assert isinstance(result, tuple), (clause, str(exc), result)
            continue
        expected_sql = pg_eval(db, compiled.sql)
        expected_text = pg_eval(db, clause)
        ours = compiled.matches(text_row)
        event(f"postgres says {expected_sql if not isinstance(expected_sql, tuple) else 'error'}")
        expected = expected_sql is True
        assert ours == expected, (
            f"\nclause:   {clause}\nsql:      {compiled.sql}\nrow:      {text_row}\n"
            f"postgres: {expected_sql} (original text: {expected_text})\nours:     {ours}")
        if not isinstance(expected_text, tuple) and not isinstance(expected_sql, tuple):
            assert expected_text == expected_sql, (clause, compiled.sql, text_row)


def our_value(table: TableInfo, text: str, row: dict):
    """Our evaluation of a scalar expression, as Postgres output text: (text or None,
    rendered SQL), ("error", None) for a runtime error, ("rejected", None) at compile time."""
    import json

    from pglast.parser import parse_sql_json

    from shapesync.where.evaluate import compile_node
    from shapesync.where.fold import fold
    from shapesync.where.parse import PREFIX, Compiler
    from shapesync.where.render import render
    from shapesync.where.values import output_fn

    tree = json.loads(parse_sql_json(PREFIX + text))
    try:
        node = Compiler(text, table).expr(tree["stmts"][0]["stmt"]["SelectStmt"]["whereClause"])
        node = fold(node)
        sql = render(node)
        fn = compile_node(node)
    except (WhereError, EvalError):
        return "rejected", None
    try:
        value = fn(row)
    except EvalError:
        return "error", sql
    return (None if value is None else output_fn(node.type)(value)), sql


def pg_value(db: psycopg.Connection, sql: str):
    try:
        return db.execute(f"SELECT ({sql})::text FROM w").fetchone()[0]
    except psycopg.Error:
        return "error"


@seed(int(os.environ.get("WHERE_PROPERTY_SEED", "20241105")))
@settings(max_examples=int(os.environ.get("WHERE_PROPERTY_EXAMPLES", "300")), deadline=None,
          derandomize="WHERE_PROPERTY_SEED" not in os.environ,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(row=rows(), exprs=st.lists(new_construct(2), min_size=4, max_size=4))
def test_values_agree_with_postgres(wtable, row, exprs):
    """Value-level check of the array, time zone, numeric power and type-name constructs:
    our result as text against ``SELECT (<expr>)::text`` (the boolean test above only sees
    values through comparisons)."""
    db, table = wtable
    db.execute("TRUNCATE w")
    names = list(COLUMNS)
    placeholders = ", ".join(f"%s::{COLUMNS[n][0]}" for n in names)
    db.execute(f"INSERT INTO w ({', '.join(names)}) VALUES ({placeholders})",
               [row[n] for n in names])
    select = ", ".join(f"CASE WHEN {n} IS NULL THEN NULL ELSE concat({n}) END" for n in names)
    text_row = dict(zip(names, db.execute(f"SELECT {select} FROM w").fetchone(), strict=True))
    for _, text in exprs:
        expected = pg_value(db, text)
        ours, sql = our_value(table, text, text_row)
        event("postgres: error" if expected == "error" else "postgres: value")
        if ours == "rejected":
            assert expected == "error", (text, text_row, expected)
            continue
        assert ours == expected, (
            f"\nexpr:     {text}\nsql:      {sql}\nrow:      {text_row}\n"
            f"postgres: {expected}\nours:     {ours}")
        assert pg_value(db, sql) == expected, (text, sql, text_row)
