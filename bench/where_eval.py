"""Where-clause evaluation benchmark: rows/s of ``CompiledWhere.matches``.

Standalone (no Postgres). Rows are dicts of Postgres output text, as the replication
stream delivers them; every row is converted from text on each call (nothing is cached
between rows), so the numbers include the lazy per-column parsing.

    .venv/bin/python bench/where_eval.py
    .venv/bin/python bench/where_eval.py --rows 200000
"""

from __future__ import annotations

import argparse
import random
import time

from shapesync.tables import ColumnInfo, TableInfo
from shapesync.where import compile_where

COLUMNS = [
    ("id", "int8", 20), ("status", "text", 25), ("n", "int4", 23), ("title", "text", 25),
    ("created_at", "timestamptz", 1184), ("price", "numeric", 1700), ("score", "float8", 701),
    ("tags", "_text", 1009),
]

CLAUSES = [
    "id = 5",
    "status IN ('a','b') AND n > 3",
    "title ILIKE '%foo%' OR created_at > '2024-01-01'",
    "price * 2 > 10.5 AND score BETWEEN 0.25 AND 0.75",
    "'x' = ANY(tags) OR title LIKE 'foo%'",
    "coalesce(lower(title), '') <> '' AND n % 7 = 3 AND status IS NOT NULL",
]


def table() -> TableInfo:
    cols = tuple(
        ColumnInfo(name, oid, typ, "text" if typ == "_text" else None, -1,
                   1 if typ.startswith("_") else 0, name == "id", 0 if name == "id" else None)
        for name, typ, oid in COLUMNS
    )
    return TableInfo(1, "public", "items", cols)


def make_rows(count: int, seed: int = 7) -> list[dict[str, str | None]]:
    rnd = random.Random(seed)
    words = ["foo", "bar", "Foobar", "baz", "qux", "hello world"]
    rows = []
    for i in range(count):
        rows.append({
            "id": str(i),
            "status": rnd.choice(["a", "b", "c", "d"]),
            "n": str(rnd.randint(0, 10)),
            "title": None if rnd.random() < 0.05 else " ".join(rnd.sample(words, 2)),
            "created_at": f"2023-{rnd.randint(1, 12):02d}-{rnd.randint(1, 28):02d} "
                          f"{rnd.randint(0, 23):02d}:{rnd.randint(0, 59):02d}:07.123+00"
                          if rnd.random() < 0.5 else
                          f"2024-{rnd.randint(1, 12):02d}-{rnd.randint(1, 28):02d} 10:00:00+00",
            "price": f"{rnd.randint(0, 2000) / 100:.2f}",
            "score": repr(rnd.random()),
            "tags": "{" + ",".join(rnd.sample(["x", "y", "z", "w"], 2)) + "}",
        })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="best of N timed passes")
    args = parser.parse_args()
    info = table()
    rows = make_rows(args.rows)
    print(f"{args.rows} rows, best of {args.repeat} passes")
    print(f"{'clause':<72} {'compile us':>10} {'rows/s':>12} {'us/row':>8} {'match %':>8}")
    for clause in CLAUSES:
        t0 = time.perf_counter()
        for _ in range(100):
            compiled = compile_where(clause, info)
        compile_us = (time.perf_counter() - t0) / 100 * 1e6
        matches = compiled.matches
        best = float("inf")
        hits = 0
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            hits = sum(1 for row in rows if matches(row))
            best = min(best, time.perf_counter() - t0)
        rate = args.rows / best
        print(f"{clause:<72} {compile_us:>10.0f} {rate:>12,.0f} {1e6 / rate:>8.2f} "
              f"{100 * hits / args.rows:>7.1f}%")


if __name__ == "__main__":
    main()
