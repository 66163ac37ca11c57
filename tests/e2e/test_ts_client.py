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
    stderr a JSON line per request, response and error."""

    def __init__(self, base_url: str, table: str) -> None:
        self.proc = subprocess.Popen(
            [NODE, "shape_client.mjs", base_url, table], cwd=E2E_DIR,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, bufsize=1,
        )
        self.updates: queue.Queue[dict] = queue.Queue()
        self.events: list[dict] = []
        self.rows: dict | None = None  # the latest update read from stdout
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
        """Read updates until the latest one equals ``expected``."""
        deadline = time.monotonic() + timeout
        while self.rows != expected:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.fail(f"{what}: client rows never matched the table", expected)
            if self.proc.poll() is not None and self.updates.empty():
                self.fail(f"{what}: client exited with {self.proc.returncode}", expected)
            try:
                self.rows = self.updates.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                pass

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
        return f"  <- {event['status']} {interesting}"
    if event.get("event") == "request":
        return f"  -> GET {event['url']}"
    return f"  !! {event}"


def _query(url: str) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(urlsplit(url).query).items()}


@pytest.fixture
def ts_client(server):
    clients: list[TsShapeClient] = []

    def start(table: str) -> TsShapeClient:
        client = TsShapeClient(server.url, table)
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.close()


# What the client's default parser does with each type (the rest stay strings); int8 becomes a
# BigInt, which shape_client.mjs prints as a string.
_AS_CLIENT = {"int2": int, "int4": int, "int8": str, "bool": bool, "text": str}


def expected_rows(db, table: str) -> dict[str, dict]:
    """The table keyed like the client's rows, values converted as the client parses them."""
    cur = db.execute(f"SELECT * FROM {table} ORDER BY id")
    types = [db.adapters.types.get(d.type_code).name for d in cur.description]
    names = [d.name for d in cur.description]
    result = {}
    for row in cur.fetchall():
        value = {
            name: None if v is None else _AS_CLIENT[typ](v)
            for name, typ, v in zip(names, types, row, strict=True)
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
    errors = [e for e in client.events if e.get("event") not in ("request", "response")]
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
    errors = [e for e in client.events if e.get("event") not in ("request", "response")]
    assert not errors, errors
