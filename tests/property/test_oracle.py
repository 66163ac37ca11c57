"""The oracle: after any sequence of transactions, the shape rebuilt from the HTTP log equals
``SELECT * FROM t``. Seeded and reproducible; the seed is in the test id."""

from __future__ import annotations

import random

import pytest

from tests.helpers import ShapeFollower, table_rows

TEXTS = ["", "a", "b/c", 'q"uote', "ünï", "\\back", None, "x" * 300]


def random_statement(rng: random.Random, ids: list[int]) -> tuple[str, tuple]:
    choice = rng.random()
    if choice < 0.35 or not ids:
        new_id = rng.randint(1, 60)
        return (
            "INSERT INTO t VALUES (%s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET n = t.n + 1",
            (new_id, rng.choice(TEXTS), rng.choice([None, rng.randint(-5, 5)]), rng.random() < 0.5),
        )
    target = rng.choice(ids)
    if choice < 0.65:
        return ("UPDATE t SET title = %s, flag = NOT flag WHERE id = %s", (rng.choice(TEXTS), target))
    if choice < 0.75:
        return ("UPDATE t SET n = %s WHERE id = %s", (rng.choice([None, 1, 2]), target))
    if choice < 0.85:  # primary-key change (may collide: then the statement fails, rolled back)
        return ("UPDATE t SET id = %s WHERE id = %s", (rng.randint(61, 120), target))
    if choice < 0.9:
        return ("UPDATE t SET n = n WHERE id = %s", (target,))  # no-op update
    return ("DELETE FROM t WHERE id = %s", (target,))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_shape_equals_table_after_random_transactions(server, db, seed):
    rng = random.Random(seed)
    db.execute("CREATE TABLE t (id int PRIMARY KEY, title text, n int, flag bool)")
    db.execute("INSERT INTO t SELECT g, 'seed', g, true FROM generate_series(1, 20) g")
    follower = ShapeFollower(server.url, "t")
    assert follower.sync() == table_rows(db, "t")
    for _batch in range(12):
        for _txn in range(rng.randint(1, 6)):
            ids = [r[0] for r in db.execute("SELECT id FROM t").fetchall()]
            try:
                with db.transaction():
                    for _ in range(rng.randint(1, 5)):
                        sql, params = random_statement(rng, ids)
                        db.execute(sql, params)
                    if rng.random() < 0.1:
                        raise _Rollback
            except (_Rollback, Exception) as exc:  # noqa: B014 - collisions roll back too
                if not isinstance(exc, (_Rollback,)) and "duplicate key" not in str(exc):
                    raise
        expected = table_rows(db, "t")
        follower.wait_for(lambda rows, e=expected: rows == e)
    # a second client starting from scratch sees the same thing
    assert ShapeFollower(server.url, "t").sync() == table_rows(db, "t")


class _Rollback(Exception):
    pass
