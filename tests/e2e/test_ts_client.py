"""End to end: the official TypeScript client (@electric-sql/client, tests/e2e/node_modules)
follows a shape served by a real shapesync process, and after every change its rows, parsed
the way the client parses them, must equal the table as Postgres has it."""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

pytestmark = pytest.mark.e2e

E2E_DIR = Path(__file__).resolve().parent
NODE = shutil.which("node")
if NODE is None:
    pytest.skip("node is not installed", allow_module_level=True)
if not (E2E_DIR / "node_modules" / "@electric-sql" / "client").is_dir():
    pytest.skip("tests/e2e/node_modules missing (run `npm ci` in tests/e2e)",
                allow_module_level=True)

STEP_TIMEOUT = 15.0


class TsShapeClient:
    """``node shape_client.mjs``: its stdout is a JSON line of all rows per Shape update, its
    stderr a JSON line per request, response, error and update (a marker)."""

    def __init__(self, base_url: str, table: str, options: dict | None = None) -> None:
        args = [NODE, "shape_client.mjs", base_url, table]
        if options:
            args.append(json.dumps(options))
        self.proc = subprocess.Popen(
            args, cwd=E2E_DIR,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, bufsize=1,
        )
        self.updates: queue.Queue[dict] = queue.Queue()
        self.events: list[dict] = []
        self.rows: dict | None = None  # the latest update read from stdout
        self.rows_seen = 0  # how many updates self.rows is from the start
        self._threads = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _read_stdout(self) -> None:
        for line in self.proc.stdout:
            self.updates.put(json.loads(line))

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            try:
                self.events.append(json.loads(line))
            except ValueError:
                self.events.append({"event": "stderr", "line": line.rstrip("\n")})

    def wait_rows(self, expected: dict, what: str, timeout: float = STEP_TIMEOUT) -> None:
        """Read updates until the latest one equals ``expected``; then wait until
        ``self.events`` holds at least everything the client reported up to that update
        (stdout and stderr are read by different threads: the "update" markers on stderr
        say where the rows read from stdout belong among the exchanges)."""
        deadline = time.monotonic() + timeout
        while self.rows != expected:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.fail(f"{what}: client rows never matched the table", expected)
            if self.proc.poll() is not None and self.updates.empty():
                self.fail(f"{what}: client exited with {self.proc.returncode}", expected)
            try:
                self.rows = self.updates.get(timeout=min(remaining, 0.5))
                self.rows_seen += 1
            except queue.Empty:
                pass
        while self._markers() < self.rows_seen:
            if time.monotonic() > deadline:
                self.fail(f"{what}: stderr lags behind stdout")
            time.sleep(0.01)

    def _markers(self) -> int:
        return sum(1 for e in list(self.events) if e.get("event") == "update")

    def wait_event(self, predicate, what: str, timeout: float = STEP_TIMEOUT) -> dict:
        """Wait for a stderr event (request/response/error) matching ``predicate``."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            events = list(self.events)
            for event in events[seen:]:
                if predicate(event):
                    return event
            seen = len(events)
            if time.monotonic() > deadline:
                self.fail(f"{what}: no such client event")
            time.sleep(0.02)

    def wait_long_polling(self, what: str, timeout: float = STEP_TIMEOUT) -> int:
        """After wait_rows: wait until the client's latest exchange is a live request still
        awaiting its response; return the number of events so far."""
        deadline = time.monotonic() + timeout
        while True:
            events = list(self.events)
            if (events[-1].get("event") == "request"
                    and _query(events[-1]["url"]).get("live") == "true"):
                return len(events)
            if time.monotonic() > deadline:
                self.fail(f"{what}: the client is not long-polling")
            time.sleep(0.02)

    def fail(self, message: str, expected: dict | None = None) -> None:
        exchanges = "\n".join(_describe(e) for e in self.events[-30:])
        detail = f"{message}\nlatest client rows: {self.rows}"
        if expected is not None:
            detail += f"\nexpected:           {expected}"
        pytest.fail(f"{detail}\nlast client events:\n{exchanges}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for thread in self._threads:
            thread.join(5)


def _describe(event: dict) -> str:
    if event.get("event") == "response":
        headers = event["headers"]
        interesting = {k: v for k, v in headers.items() if k.startswith("electric-")}
        return f"  <- {event['status']} {interesting} {event.get('body', '')[:300]}"
    if event.get("event") == "request":
        return f"  -> GET {event['url']}"
    if event.get("event") == "update":
        return f"  == Shape update, {event['size']} rows"
    return f"  !! {event}"


def _query(url: str) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(urlsplit(url).query).items()}


@pytest.fixture
def ts_client(server):
    clients: list[TsShapeClient] = []

    def start(table: str, **options) -> TsShapeClient:
        """``options``: ShapeStream's ``where`` (str) and ``columns`` (list of str), and
        ``databaseId`` (str)."""
        client = TsShapeClient(server.url, table, options)
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.close()


# What the client's default parser does with each type; int8 becomes a BigInt, which
# shape_client.mjs prints as a string. Every other type stays the text Postgres outputs for it
# (numeric, timestamptz, ...), which expected_rows gets by selecting it ``::text`` (the db
# fixture's session has the server's display settings, spec 4.4). Arrays (``dims`` in the
# schema) become lists of their elements parsed the same way.
_AS_CLIENT = {"int2": int, "int4": int, "int8": str, "bool": bool, "text": str}


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _as_client(parse, value):
    if value is None:
        return None
    if isinstance(value, list):
        return [_as_client(parse, v) for v in value]
    return parse(value)


def expected_rows(db, table: str, columns: list[str] | None = None,
                  where: str | None = None) -> dict[str, dict]:
    """What the shape holds, keyed like the client's rows and with values converted as the
    client parses them: ``SELECT <columns> FROM <table> WHERE <where>`` as Postgres answers
    it. ``columns`` are SQL identifiers, exactly as given to the client."""
    source = f"SELECT {', '.join(columns) if columns else '*'} FROM {table}"
    if where:
        source += f" WHERE {where}"
    probe = db.execute(f"SELECT * FROM ({source}) AS shape LIMIT 0")
    select, parsers = [], []
    for d in probe.description:
        typname, elem = db.execute(
            "SELECT t.typname, e.typname FROM pg_type t LEFT JOIN pg_type e "
            "ON e.oid = t.typelem AND t.typcategory = 'A' WHERE t.oid = %s",
            (d.type_code,)).fetchone()
        if (elem or typname) in _AS_CLIENT:
            select.append(_quote(d.name))
            parsers.append(_AS_CLIENT[elem or typname])
        else:
            assert elem is None, f"no client parsing rule here for {typname} arrays"
            select.append(f"{_quote(d.name)}::text")
            parsers.append(str)
    names = [d.name for d in probe.description]
    cur = db.execute(f"SELECT {', '.join(select)} FROM ({source}) AS shape ORDER BY id")
    result = {}
    for row in cur.fetchall():
        value = {
            name: _as_client(parse, v)
            for name, parse, v in zip(names, parsers, row, strict=True)
        }
        result[f'"public"."{table}"/"{value["id"]}"'] = value
    return result


def create_items(db) -> None:
    db.execute("""
        CREATE TABLE items (
            id int PRIMARY KEY,
            title text NOT NULL,
            done bool NOT NULL DEFAULT false,
            big bigint NOT NULL,
            note text
        )""")
    db.execute("""
        INSERT INTO items VALUES
            (1, 'first', false, 9007199254740993, 'has a note'),
            (2, 'o''brien "quoted" ✓ /slash', true, -9223372036854775808, NULL),
            (3, 'third', false, 0, '')""")


STEPS = [
    ("insert", ["INSERT INTO items VALUES (4, 'fourth', true, 9223372036854775807, 'n4')"]),
    ("update", ["UPDATE items SET title = 'second, renamed', done = false WHERE id = 2"]),
    ("delete", ["DELETE FROM items WHERE id = 3"]),
    ("primary-key change", ["UPDATE items SET id = 10, title = 'was one' WHERE id = 1"]),
    ("multi-statement transaction", [
        "INSERT INTO items VALUES (5, 'fifth', false, 5, NULL)",
        "UPDATE items SET big = big - 1, done = NOT done WHERE id = 4",
        "DELETE FROM items WHERE id = 2",
        "UPDATE items SET id = 6 WHERE id = 5",
        "INSERT INTO items VALUES (7, 'seventh', true, 7, 'n7')",
    ]),
    ("NULL update", ["UPDATE items SET note = NULL WHERE id IN (4, 10)"]),
    ("NULL to value", ["UPDATE items SET note = 'back' WHERE id = 4"]),
]


def test_ts_client_follows_every_change(server, db, ts_client):
    create_items(db)
    client = ts_client("items")
    client.wait_rows(expected_rows(db, "items"), "initial snapshot")
    for label, statements in STEPS:
        with db.transaction():
            for statement in statements:
                db.execute(statement)
        client.wait_rows(expected_rows(db, "items"), label)
    errors = [e for e in client.events
              if e.get("event") not in ("request", "response", "update")]
    assert not errors, errors


def test_ts_client_refetches_after_shape_deletion(server, db, ts_client):
    create_items(db)
    client = ts_client("items")
    client.wait_rows(expected_rows(db, "items"), "initial snapshot")
    live = client.wait_event(
        lambda e: e.get("event") == "request" and _query(e["url"]).get("live") == "true",
        "live request")
    old_id = _query(live["url"])["shape_id"]

    deleted_at = len(client.events)
    response = httpx.delete(f"{server.url}/v1/shape/items", params={"shape_id": old_id})
    assert response.status_code == 202, (response.status_code, response.text)
    with db.transaction():
        db.execute("INSERT INTO items VALUES (8, 'after delete', true, 8, NULL)")
        db.execute("UPDATE items SET note = 'changed after delete' WHERE id = 1")
    client.wait_rows(expected_rows(db, "items"), "resync after deletion")

    after = client.events[deleted_at:]
    statuses = [e["status"] for e in after if e.get("event") == "response"]
    assert 409 in statuses, [_describe(e) for e in after]
    # after the 409 the client starts over from offset -1 and ends up on a new shape
    refetch = [e for e in after
               if e.get("event") == "request" and _query(e["url"]).get("offset") == "-1"]
    assert refetch, [_describe(e) for e in after]
    new_ids = {e["headers"].get("electric-shape-id") for e in after
               if e.get("event") == "response" and e["status"] == 200}
    assert new_ids and old_id not in new_ids, (old_id, new_ids)

    # and it keeps following the new shape live
    db.execute("DELETE FROM items WHERE id = 2")
    client.wait_rows(expected_rows(db, "items"), "live change on the new shape")
    errors = [e for e in client.events
              if e.get("event") not in ("request", "response", "update")]
    assert not errors, errors


# --- filtered, column-restricted shapes (spec 7.5, 8, 9) ---------------------------------------

def create_tasks(db) -> None:
    db.execute("""
        CREATE TABLE tasks (
            id int PRIMARY KEY,
            title text NOT NULL,
            done bool NOT NULL DEFAULT false,
            priority int2,
            due timestamptz,
            estimate numeric(8, 3),
            tags text[],
            scores int4[],
            "OwnerName" text,
            secret text
        )""")
    db.execute("""
        INSERT INTO tasks VALUES
            (1, 'alpha', false, 3, '2024-11-05 12:31:07.123+01', 12.340, '{a,"b c"}',
             '{1,2,3}', 'ann', 's1'),
            (2, 'beta', true, 5, NULL, NULL, NULL, '{}', NULL, 's2'),
            (3, 'gamma', false, 1, '2031-01-01 00:00:00+00', 0.5, '{}', '{NULL,7}', 'bob',
             's3'),
            (4, 'delta', false, NULL, NULL, 99999.999, '{x}', NULL, 'O''Brien "q" ✓', 's4'),
            (5, 'epsilon', false, 2, '2029-12-31 23:59:59.999999+00', -3,
             '{"with,comma","quote\\"d",back\\\\slash}', '{-1,0,2147483647}', 'ann', NULL),
            (6, 'zeta', true, 4, NULL, NULL, NULL, NULL, 'cy', 's6')""")


# (where, columns): a where clause on a column that is not selected and a 3-operand AND with a
# timestamptz comparison; and an OR chain whose operands are NULL for some rows (so only SQL
# three-valued logic agrees with the snapshot), with a mixed-case column, quoted, selected.
FILTERED_SHAPES = {
    "and": (
        "done = false AND priority >= 2 AND (due IS NULL OR due < '2030-01-01 00:00:00+00')",
        ["id", "title", "priority", "due", "estimate", "tags"],
    ),
    "or-null-mixed-case": (
        "\"OwnerName\" IS NULL OR priority IS NULL AND NOT done OR estimate > 10.5",
        ["id", '"OwnerName"', "done", "estimate", "scores", "due"],
    ),
}

# (label, statements run in one transaction). Comments say what happens to each shape
# ("and" / "or"); rows not mentioned stay outside the shape or unchanged.
FILTERED_STEPS = [
    ("insert matching", [
        # and: in; or: out (estimate 1.5)
        "INSERT INTO tasks VALUES (10, 'new in', false, 2, '2025-06-01 08:00:00+02', 1.5,"
        " '{new}', '{10}', 'dee', 'x')",
    ]),
    ("insert not matching", [
        # and: out (done); or: in (OwnerName NULL)
        "INSERT INTO tasks VALUES (11, 'new out', true, 9, NULL, 11, NULL, '{11}', NULL, 'y')",
        # neither
        "INSERT INTO tasks VALUES (12, 'nowhere', true, 1, NULL, 1, NULL, NULL, 'z', NULL)",
    ]),
    ("update moving rows in", [
        # and: in through a column it does not select; or: stays in, done changes
        "UPDATE tasks SET done = false WHERE id = 2",
        # and: in; or: stays out
        "UPDATE tasks SET priority = 2, due = NULL WHERE id = 3",
        # or: in (NULL OR NULL AND TRUE OR TRUE); and: stays out
        "UPDATE tasks SET estimate = 10.501 WHERE id = 6",
    ]),
    ("update moving rows out", [
        # and: out
        "UPDATE tasks SET priority = 1 WHERE id = 1",
        # or: out (FALSE OR FALSE OR NULL); and: stays in, only non-selected columns change
        "UPDATE tasks SET \"OwnerName\" = 'eve' WHERE id = 2",
        # and: out (due too late); or: stays out
        "UPDATE tasks SET due = '2030-01-01 00:00:00+00' WHERE id = 3",
    ]),
    ("update staying in, selected columns change", [
        # and: title, estimate, tags change; or: stays out
        "UPDATE tasks SET title = 'epsilon 2', estimate = 2.500,"
        " tags = array_append(tags, 'more') WHERE id = 5",
        # or: scores and due change; and: stays out
        "UPDATE tasks SET scores = '{5,NULL}', due = '2024-02-29 00:00:00+00' WHERE id = 4",
        # both: a selected column set to NULL (and: due; or: due)
        "UPDATE tasks SET due = NULL WHERE id = 10",
    ]),
    ("update of non-selected columns only", [
        "UPDATE tasks SET secret = coalesce(secret, '') || '!'",
        # and: row 5 is in, OwnerName not selected; or: row 5 stays out
        "UPDATE tasks SET \"OwnerName\" = 'zed' WHERE id = 5",
        # or: row 4 is in, title not selected; and: row 4 is out
        "UPDATE tasks SET title = 'delta?' WHERE id = 4",
    ]),
    ("primary-key change", [
        # and: key change of a row in the shape; or: out
        "UPDATE tasks SET id = 50 WHERE id = 5",
        # or: key change of a row in the shape; and: out
        "UPDATE tasks SET id = 40 WHERE id = 4",
        # and: key change moving the row out; or: key change moving the row in
        "UPDATE tasks SET id = 20, done = true, \"OwnerName\" = NULL WHERE id = 2",
    ]),
    ("delete", [
        "DELETE FROM tasks WHERE id = 50",  # and: in
        "DELETE FROM tasks WHERE id = 11",  # or: in
        "DELETE FROM tasks WHERE id = 12",  # neither
    ]),
    ("multi-statement transaction", [
        "INSERT INTO tasks VALUES (60, 'tx in', false, 7, NULL, 20, '{t}', '{6}', NULL, NULL)",
        "INSERT INTO tasks VALUES (61, 'tx out', true, 0, NULL, 0, NULL, NULL, 'q', NULL)",
        "UPDATE tasks SET priority = 3 WHERE id = 1",           # and: back in
        "UPDATE tasks SET done = true WHERE id = 10",           # and: out
        "UPDATE tasks SET estimate = estimate + 1 WHERE id = 60",  # both: stays in, changes
        "UPDATE tasks SET id = 62, tags = '{}' WHERE id = 60",  # both: key change
        "UPDATE tasks SET secret = 'hidden' WHERE id = 62",     # both: non-selected only
        "INSERT INTO tasks VALUES (63, 'short-lived', false, 2, NULL, 99, NULL, NULL, NULL,"
        " NULL)",
        "DELETE FROM tasks WHERE id = 63",                      # both: in and out again
        "UPDATE tasks SET priority = 1 WHERE id = 61",
        "UPDATE tasks SET done = false, priority = 2 WHERE id = 61",  # and: in, in 2 updates
        "UPDATE tasks SET \"OwnerName\" = NULL WHERE id = 61",    # or: in
        "UPDATE tasks SET \"OwnerName\" = 'back' WHERE id = 61",  # or: out again
        "DELETE FROM tasks WHERE id = 40",                      # or: in
        "DELETE FROM tasks WHERE id = 3",                       # neither
    ]),
    ("NULL in the where clause's columns", [
        # and: out (priority >= 2 is NULL); or: stays in, now as FALSE OR TRUE OR NULL
        "UPDATE tasks SET priority = NULL, estimate = NULL WHERE id = 1",
        # and: stays out; or: out (FALSE OR FALSE OR NULL)
        "UPDATE tasks SET estimate = NULL WHERE id = 6",
    ]),
]

NON_SELECTED_ONLY = "update of non-selected columns only"


@pytest.mark.parametrize("shape", list(FILTERED_SHAPES))
def test_ts_client_follows_filtered_shape(server, db, ts_client, shape):
    where, columns = FILTERED_SHAPES[shape]
    create_tasks(db)
    client = ts_client("tasks", where=where, columns=columns)
    expected = expected_rows(db, "tasks", columns, where)
    assert expected and len(expected) < 6, "the filter should matter for the initial rows"
    client.wait_rows(expected, "initial snapshot")
    for label, statements in FILTERED_STEPS:
        if label == NON_SELECTED_ONLY:
            before = client.wait_long_polling(label)
        with db.transaction():
            for statement in statements:
                db.execute(statement)
        client.wait_rows(expected_rows(db, "tasks", columns, where), label)
        if label == NON_SELECTED_ONLY:
            # spec 7.5: such updates produce no message, so no live request returns data
            time.sleep(0.5)
            woken = [e for e in client.events[before:]
                     if e.get("event") == "response" and e["status"] == 200]
            assert not woken, [_describe(e) for e in woken]

    requests = [e for e in client.events if e.get("event") == "request"]
    for request in requests:
        query = _query(request["url"])
        assert (query.get("where"), query.get("columns")) == (where, ",".join(columns)), query
    errors = [e for e in client.events
              if e.get("event") not in ("request", "response", "update")]
    assert not errors, errors


@pytest.mark.parametrize("shape", list(FILTERED_SHAPES))
@pytest.mark.parametrize("rotation", ["delete", "truncate"])
def test_ts_client_filtered_shape_survives_rotation(server, db, ts_client, shape, rotation):
    """After a 409 (shape deleted via the API, or invalidated by TRUNCATE) the client starts
    over with the same where/columns, and the new shape filters its snapshot and live
    changes the same way."""
    where, columns = FILTERED_SHAPES[shape]
    create_tasks(db)
    client = ts_client("tasks", where=where, columns=columns)
    client.wait_rows(expected_rows(db, "tasks", columns, where), "initial snapshot")
    live = client.wait_event(
        lambda e: e.get("event") == "request" and _query(e["url"]).get("live") == "true",
        "live request")
    old_id = _query(live["url"])["shape_id"]

    rotated_at = len(client.events)
    if rotation == "delete":
        response = httpx.delete(f"{server.url}/v1/shape/tasks", params={"shape_id": old_id})
        assert response.status_code == 202, (response.status_code, response.text)
    with db.transaction():
        if rotation == "truncate":
            db.execute("TRUNCATE tasks")
        # in for "and", out for "or"; and the reverse
        db.execute("INSERT INTO tasks VALUES (70, 'after', false, 2, NULL, 1, '{r}', '{7}',"
                   " 'o', NULL)")
        db.execute("INSERT INTO tasks VALUES (71, 'after', true, 2, NULL, 1, NULL, NULL,"
                   " NULL, NULL)")
        db.execute("UPDATE tasks SET secret = 'changed' WHERE id = 1")
    client.wait_rows(expected_rows(db, "tasks", columns, where), f"resync after {rotation}")

    after = client.events[rotated_at:]
    statuses = [e["status"] for e in after if e.get("event") == "response"]
    assert 409 in statuses, [_describe(e) for e in after]
    refetch = [e for e in after
               if e.get("event") == "request" and _query(e["url"]).get("offset") == "-1"]
    assert refetch, [_describe(e) for e in after]
    new_ids = {e["headers"].get("electric-shape-id") for e in after
               if e.get("event") == "response" and e["status"] == 200}
    assert new_ids and old_id not in new_ids, (old_id, new_ids)

    # live changes on the new shape are filtered too: rows move in, out and change
    for label, statements in [
        ("live on the new shape: moves", [
            "UPDATE tasks SET done = NOT done WHERE id IN (70, 71)",
            "INSERT INTO tasks VALUES (72, 'late', false, NULL, NULL, 50, NULL, NULL, 'p',"
            " NULL)",
        ]),
        ("live on the new shape: changes", [
            "UPDATE tasks SET priority = 3, estimate = 11, \"OwnerName\" = NULL"
            " WHERE id IN (70, 71, 72)",
        ]),
    ]:
        with db.transaction():
            for statement in statements:
                db.execute(statement)
        client.wait_rows(expected_rows(db, "tasks", columns, where), label)

    for request in (e for e in client.events if e.get("event") == "request"):
        query = _query(request["url"])
        assert (query.get("where"), query.get("columns")) == (where, ",".join(columns)), query
    errors = [e for e in client.events
              if e.get("event") not in ("request", "response", "update")]
    assert not errors, errors


def test_ts_clients_on_two_databases_one_removed(server, db, pg_cluster, ts_client):
    """Add Database, the official client on each database (database_id in its URL), then
    Remove Database while both are live: the removed one's client gets a 404 error, the
    other keeps following."""
    from shapesync.pg.session import session_conninfo
    from tests.conftest import create_database, drop_database

    name = create_database(pg_cluster)
    try:
        url = f"postgresql://postgres@127.0.0.1:{pg_cluster.port}/{name}"
        r = httpx.post(f"{server.url}/v1/admin/database",
                       json={"database_url": url, "database_id": "other"}, timeout=30)
        assert (r.status_code, r.json()) == (200, "other"), r.text
        server.wait_healthy(database_id="other")
        import psycopg

        with psycopg.connect(session_conninfo(pg_cluster.dsn(name)), autocommit=True) as other:
            create_items(db)
            create_items(other)
            other.execute("UPDATE items SET title = 'in the other database' WHERE id = 1")
            main_client = ts_client("items", databaseId="test_db")
            other_client = ts_client("items", databaseId="other")
            main_client.wait_rows(expected_rows(db, "items"), "default database")
            other_client.wait_rows(expected_rows(other, "items"), "added database")
            other.execute("DELETE FROM items WHERE id = 3")
            other_client.wait_rows(expected_rows(other, "items"), "live on the added database")
            other_client.wait_long_polling("before removal")

            r = httpx.delete(f"{server.url}/v1/admin/database/other", timeout=30)
            assert r.status_code == 200
            error = other_client.wait_event(lambda e: e.get("event") == "error", "404 error")
            assert error["status"] == 404, error
            db.execute("INSERT INTO items VALUES (9, 'still live', false, 9, NULL)")
            main_client.wait_rows(expected_rows(db, "items"), "default database after removal")
    finally:
        drop_database(pg_cluster, name)
