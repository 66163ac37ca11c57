"""Fault injection under concurrent writes: SIGTERM, kill -9, a dropped replication
connection, a Postgres restart, and the race between a shape's snapshot and the stream.

Followers here are strict (``StrictFollower``): a 409 fails the test; so does an insert
of a key the follower already holds, or an update whose row version ``v`` does not
advance by exactly one. Every writer update bumps ``v``, so one lost or duplicated change
is caught at the message where it shows. After each scenario the messages a client
received (across crashes) must have strictly increasing log offsets, replay to exactly
the table, and equal what a fresh client reads from ``offset=-1``.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest
from psycopg import errors

from shapesync.embedded_pg import EmbeddedPostgres
from shapesync.pg.session import session_conninfo
from tests.conftest import ServerProcess
from tests.helpers import ShapeFollower, table_rows

pytestmark = pytest.mark.slow

TEXTS = ["a", "b/c", 'q"uote', "ünï", "\\back", None, "x" * 60]
SLOT_PID = "SELECT active_pid FROM pg_replication_slots WHERE database = current_database()"


# -- helpers --------------------------------------------------------------------------------
def wait_until(predicate, timeout: float, what: str):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def create_table(conn: psycopg.Connection, name: str, rows: int) -> None:
    conn.execute(f"CREATE TABLE {name} (id bigint PRIMARY KEY, v int NOT NULL, n int, note text)")
    conn.execute(
        f"INSERT INTO {name} SELECT g, 0, g, 'seed ' || g FROM generate_series(1, %s) g", (rows,))


def slot_pid(conn: psycopg.Connection) -> int | None:
    row = conn.execute(SLOT_PID).fetchone()
    return row[0] if row else None


def parse_offset(text: str) -> tuple[int, int]:
    tx, op = text.split("_")
    return int(tx), int(op)


class Unavailable(Exception):
    """503: the server is starting or reconnecting; the client retries."""


class StrictFollower(ShapeFollower):
    """A ShapeFollower that fails on 409 and on any change inconsistent with its rows, and
    whose rows and messages can be read from another thread."""

    def __init__(self, base_url: str, table: str) -> None:
        super().__init__(base_url, table)
        self.lock = threading.Lock()
        self.client.event_hooks = {"request": [], "response": [self._check_status]}

    def _check_status(self, response: httpx.Response) -> None:
        if response.status_code == 503:
            raise Unavailable(response.url)
        assert response.status_code != 409, (
            f"409 must-refetch for shape {self.shape_id} at offset {self.offset}")

    def apply(self, message: dict) -> None:
        headers = message["headers"]
        if "control" not in headers:
            key, op, where = message["key"], headers["operation"], message["offset"]
            if op == "insert":
                assert key not in self.rows, f"insert of present row {key} at {where}"
            elif op == "update" and "v" in message["value"]:
                assert key in self.rows, f"update for unknown row {key} at {where}"
                before, after = int(self.rows[key]["v"]), int(message["value"]["v"])
                assert after == before + 1, (
                    f"update of {key} at {where} moves v {before} -> {after}: "
                    "a change was lost or applied twice")
        with self.lock:
            super().apply(message)

    def rows_copy(self) -> dict[str, dict]:
        with self.lock:
            return {k: dict(v) for k, v in self.rows.items()}

    def data_messages(self) -> list[dict]:
        with self.lock:
            return [m for m in self.messages if "control" not in m["headers"]]


def assert_history(messages: list[dict], expected: dict[str, dict], table: str) -> None:
    """Snapshot items (offset 0_0) first, then log items with strictly increasing offsets;
    replaying all of them from nothing gives ``expected``."""
    data = [m for m in messages if "control" not in m["headers"]]
    offsets = [parse_offset(m["offset"]) for m in data]
    first_log = next((i for i, o in enumerate(offsets) if o != (0, 0)), len(offsets))
    assert all(o == (0, 0) for o in offsets[:first_log])
    log_offsets = offsets[first_log:]
    for i, (a, b) in enumerate(zip(log_offsets, log_offsets[1:], strict=False)):
        assert a < b, f"log offsets not increasing at item {first_log + i}: {a} then {b}"
    replay = StrictFollower("http://127.0.0.1:9", table)
    replay.client.close()
    for message in data:
        replay.apply(message)
    assert replay.rows == expected


class Writer(threading.Thread):
    """Commits small random transactions (inserts, updates, key changes, deletes) until
    stopped. Inserts use ids from the writer's own range; single-statement transactions also
    hit the shared seed rows, so writers contend. Every update bumps ``v``. With
    ``reconnect`` it rides out a Postgres restart."""

    def __init__(self, dsn: str, tables: list[str], seed: int, seed_rows: int,
                 reconnect: bool = False) -> None:
        super().__init__(daemon=True, name=f"writer-{seed}")
        self.conninfo = session_conninfo(dsn)
        self.tables = tables
        self.rng = random.Random(seed)
        self.seed_rows = seed_rows
        self.next_id = 1_000_000 * (seed + 1)
        self.mine: dict[str, list[int]] = {t: [] for t in tables}
        self.reconnect = reconnect
        self.commits = 0
        self.reconnects = 0
        self.error: BaseException | None = None
        self.halt = threading.Event()

    def run(self) -> None:
        try:
            while not self.halt.is_set():
                try:
                    with psycopg.connect(self.conninfo, autocommit=True) as conn:
                        while not self.halt.is_set():
                            self._transaction(conn)
                except psycopg.OperationalError:
                    if not self.reconnect:
                        raise
                    self.reconnects += 1
                    self.halt.wait(0.05)  # Postgres is restarting: try again
        except BaseException as exc:  # noqa: BLE001 - re-raised by stop()
            self.error = exc

    def _transaction(self, conn: psycopg.Connection) -> None:
        table = self.rng.choice(self.tables)
        count = 1 if self.rng.random() < 0.75 else self.rng.randint(2, 4)
        try:
            with conn.transaction():
                for _ in range(count):
                    # several statements touch only this writer's rows: no deadlocks
                    conn.execute(*self._statement(table, shared=count == 1))
        except (errors.DeadlockDetected, errors.UniqueViolation):
            return
        self.commits += 1

    def _pick(self, table: str, shared: bool) -> int:
        mine = self.mine[table]
        if mine and (not shared or self.rng.random() < 0.5):
            return self.rng.choice(mine)
        return self.rng.randint(1, self.seed_rows) if shared else -1

    def _statement(self, table: str, shared: bool) -> tuple[str, tuple]:
        rng, mine = self.rng, self.mine[table]
        r = rng.random()
        if r < 0.3:
            self.next_id += 1
            mine.append(self.next_id)
            return (f"INSERT INTO {table} VALUES (%s, 0, %s, %s)",
                    (self.next_id, rng.randint(0, 9), rng.choice(TEXTS)))
        if r < 0.75:
            return (f"UPDATE {table} SET v = v + 1, n = %s, note = %s WHERE id = %s",
                    (rng.randint(0, 9), rng.choice(TEXTS), self._pick(table, shared)))
        if r < 0.85 and mine:
            old = mine.pop(rng.randrange(len(mine)))
            self.next_id += 1
            mine.append(self.next_id)
            return f"UPDATE {table} SET id = %s, v = v + 1 WHERE id = %s", (self.next_id, old)
        return f"DELETE FROM {table} WHERE id = %s", (self._pick(table, shared),)

    def stop(self) -> None:
        self.halt.set()
        self.join(30)
        assert not self.is_alive(), "writer did not stop"
        if self.error is not None:
            raise self.error


def stop_writers(writers: list[Writer]) -> None:
    for w in writers:
        w.halt.set()
    for w in writers:
        w.stop()


def commits(writers: list[Writer]) -> int:
    return sum(w.commits for w in writers)


class FollowerThread(threading.Thread):
    """Follows a shape like a client that outlives server crashes: live long-polls from its
    last offset, retrying connection errors and 503s with the same shape_id and offset."""

    def __init__(self, follower: StrictFollower) -> None:
        super().__init__(daemon=True, name="follower")
        self.follower = follower
        self.halt = threading.Event()
        self.retries = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        f = self.follower
        try:
            while not self.halt.is_set():
                try:
                    f.request(live=f.up_to_date)
                except (httpx.TransportError, Unavailable):
                    self.retries += 1
                    self.halt.wait(0.05)
        except BaseException as exc:  # noqa: BLE001 - re-raised by stop()
            self.error = exc

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def stop(self, db: psycopg.Connection, table: str) -> None:
        self.halt.set()
        # a change that leaves the row as it is wakes the pending long-poll
        db.execute(f"UPDATE {table} SET n = n WHERE id = (SELECT min(id) FROM {table})")
        self.join(30)
        assert not self.is_alive(), "follower did not stop"
        self.check()


def wait_progress(writers: list[Writer], reader: FollowerThread | None, *, txns: int,
                  messages: int = 0, timeout: float = 20) -> None:
    """Wait until the writers committed ``txns`` more transactions and the follower got
    ``messages`` more log items."""
    c0 = commits(writers)
    m0 = len(reader.follower.data_messages()) if reader else 0

    def done() -> bool:
        for w in writers:
            if w.error is not None:
                raise w.error
        if reader is not None:
            reader.check()
            if len(reader.follower.data_messages()) < m0 + messages:
                return False
        return commits(writers) >= c0 + txns

    wait_until(done, timeout, f"{txns} commits and {messages} followed items")


def converge(reader: FollowerThread, expected: dict, timeout: float = 30) -> None:
    def done() -> bool:
        reader.check()
        return reader.follower.rows_copy() == expected

    try:
        wait_until(done, timeout, "the follower to converge to the table")
    except AssertionError:
        rows = reader.follower.rows_copy()
        missing = {k: v for k, v in expected.items() if rows.get(k) != v}
        extra = {k: v for k, v in rows.items() if k not in expected}
        raise AssertionError(f"not converged: differing={list(missing.items())[:5]} "
                             f"extra={list(extra.items())[:5]}") from None


def check_final(server_url: str, follower: StrictFollower, shape_id: str, expected: dict,
                table: str) -> None:
    assert follower.shape_id == shape_id
    assert_history(follower.messages, expected, table)
    fresh = StrictFollower(server_url, table)
    assert fresh.sync() == expected
    assert fresh.shape_id == shape_id
    # the same durable log: the crash-surviving client saw exactly what a new one reads
    assert fresh.data_messages() == follower.data_messages()


def unread_bytes(server_port: int, client_port: int) -> int | None:
    """Bytes the server has not read yet on the connection from ``client_port``."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1], fields[2]
        if (int(local.split(":")[1], 16) == server_port
                and int(remote.split(":")[1], 16) == client_port):
            return int(fields[4].split(":")[1], 16)
    return None


# -- 1. SIGTERM ----------------------------------------------------------------------------
def test_sigterm_answers_long_poll_exits_0_and_restart_continues(server_factory, db):
    create_table(db, "t", 20)
    server = server_factory().start()
    follower = StrictFollower(server.url, "t")
    follower.sync()
    db.execute("UPDATE t SET v = v + 1, n = -1 WHERE id = 1")
    expected = table_rows(db, "t")
    follower.wait_for(lambda rows: rows == expected)
    shape_id, offset = follower.shape_id, follower.offset
    assert offset != "0_0"

    # A client waiting in a live long-poll (on its own connection) when SIGTERM arrives.
    sent, ports, result = threading.Event(), [], {}

    def trace(name: str, info: dict) -> None:
        if name == "connection.connect_tcp.complete":
            ports.append(info["return_value"].get_extra_info("socket").getsockname()[1])
        elif name == "http11.send_request_body.complete":
            sent.set()

    def long_poll() -> None:
        try:
            with httpx.Client(timeout=60) as client:
                result["response"] = client.get(
                    f"{server.url}/v1/shape/t",
                    params={"offset": offset, "shape_id": shape_id, "live": "true", "cursor": ""},
                    extensions={"trace": trace})
        except Exception as exc:  # noqa: BLE001 - asserted below
            result["error"] = exc
        result["at"] = time.monotonic()

    poller = threading.Thread(target=long_poll, daemon=True)
    poller.start()
    wait_until(sent.is_set, 10, "the long-poll to be sent")
    wait_until(lambda: unread_bytes(server.port, ports[0]) == 0, 10,
               "the server to read the long-poll request")

    signalled = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    poller.join(15)
    assert not poller.is_alive(), "long-poll still waiting 15 s after SIGTERM"
    assert "error" not in result, result
    assert result["at"] - signalled < 5, "long-poll not answered promptly on shutdown"
    assert result["response"].status_code == 204
    assert result["response"].headers["electric-shape-id"] == shape_id
    assert result["response"].headers["electric-chunk-last-offset"] == offset
    try:
        code = server.proc.wait(max(0.1, signalled + 5 - time.monotonic()))
    except Exception:
        server.proc.kill()
        raise
    finally:
        server.log_file.close()
    assert code == 0, f"exit code {code} after SIGTERM:\n{server.logs()[-3000:]}"
    assert "Traceback" not in server.logs()

    # Restart on the same storage: the same shape and offset continue.
    server.start()
    follower.request()
    assert follower.shape_id == shape_id
    assert follower.offset == offset and follower.up_to_date
    seen = len(follower.data_messages())
    with db.transaction():
        db.execute("INSERT INTO t VALUES (100, 0, 1, 'after'), (101, 0, 2, NULL)")
        db.execute("UPDATE t SET v = v + 1, note = 'upd' WHERE id = 2")
    db.execute("DELETE FROM t WHERE id = 3")
    db.execute("UPDATE t SET id = 102, v = v + 1 WHERE id = 4")
    expected = table_rows(db, "t")
    follower.wait_for(lambda rows: rows == expected)
    new = [(m["headers"]["operation"], m["key"].split("/")[1]) for m in follower.data_messages()[seen:]]
    assert new == [("insert", '"100"'), ("insert", '"101"'), ("update", '"2"'),
                   ("delete", '"3"'), ("delete", '"4"'), ("insert", '"102"')]
    check_final(server.url, follower, shape_id, expected, "t")


# -- 2. kill -9 ------------------------------------------------------------------------------
def test_kill_9_mid_stream_loses_and_duplicates_nothing(server_factory, db, database):
    create_table(db, "t", 200)
    # small chunks: clients resume from chunk boundaries recovered from the index
    server = server_factory(env={"LOG_CHUNK_BYTES_THRESHOLD": "4096"}).start()
    follower = StrictFollower(server.url, "t")
    follower.sync()
    shape_id = follower.shape_id
    reader = FollowerThread(follower)
    reader.start()
    writers = [Writer(database, ["t"], seed=i, seed_rows=200) for i in range(3)]
    for w in writers:
        w.start()
    try:
        for _ in range(3):
            wait_progress(writers, reader, txns=150, messages=100)
            server.kill()
            wait_progress(writers, None, txns=150)  # commits while the server is down
            server.start()
            wait_progress(writers, reader, txns=100, messages=100)
        stop_writers(writers)
        expected = table_rows(db, "t")
        converge(reader, expected)
    finally:
        for w in writers:
            w.halt.set()
        reader.stop(db, "t")
    assert reader.retries > 0  # it did lose the server
    check_final(server.url, follower, shape_id, expected, "t")
    assert "restored shape" in server.logs()


# -- 3. replication connection lost, Postgres restart ---------------------------------------
def test_walsender_terminated_server_reconnects(server_factory, db, database):
    create_table(db, "t", 100)
    server = server_factory().start()
    follower = StrictFollower(server.url, "t")
    follower.sync()
    shape_id = follower.shape_id
    reader = FollowerThread(follower)
    reader.start()
    writers = [Writer(database, ["t"], seed=i, seed_rows=100) for i in range(2)]
    for w in writers:
        w.start()
    try:
        wait_progress(writers, reader, txns=100, messages=50)
        for attempt in range(2):  # the second failure waits 2 s: backoff doubles
            old_pid = wait_until(lambda: slot_pid(db), 10, "an active slot")
            killed = db.execute(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                "WHERE database = current_database()").fetchall()
            assert killed == [(True,)]
            terminated = time.monotonic()
            wait_until(lambda old=old_pid: slot_pid(db) not in (None, old), 15,
                       "the server to restart replication")
            assert time.monotonic() - terminated < 5 + 2 * attempt  # retries after 1 s, 2 s
            wait_until(lambda: httpx.get(f"{server.url}/v1/health").status_code == 200, 10,
                       "the server to report itself active again")
            wait_progress(writers, reader, txns=100, messages=50)
        assert server.logs().count("replication stream failed") == 2
        stop_writers(writers)
        expected = table_rows(db, "t")
        converge(reader, expected)
    finally:
        for w in writers:
            w.halt.set()
        reader.stop(db, "t")
    check_final(server.url, follower, shape_id, expected, "t")


def test_postgres_restart_server_reconnects(tmp_path):
    base = Path(tempfile.mkdtemp(prefix="shapesync-restart-"))
    os.chmod(base, 0o755)
    cluster = EmbeddedPostgres(base / "data", fast=True)
    cluster.start()
    server = reader = None
    writers: list[Writer] = []
    try:
        name = "r_" + uuid.uuid4().hex[:8]
        with psycopg.connect(cluster.dsn(), autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
        dsn = cluster.dsn(name)
        with psycopg.connect(session_conninfo(dsn), autocommit=True) as setup:
            create_table(setup, "t", 100)
        server = ServerProcess(dsn, tmp_path / "storage").start()
        follower = StrictFollower(server.url, "t")
        follower.sync()
        shape_id = follower.shape_id
        reader = FollowerThread(follower)
        reader.start()
        writers = [Writer(dsn, ["t"], seed=i, seed_rows=100, reconnect=True) for i in range(2)]
        for w in writers:
            w.start()
        wait_progress(writers, reader, txns=100, messages=50)

        cluster.restart()  # same data directory and port

        wait_progress(writers, reader, txns=100, messages=50, timeout=40)
        assert all(w.reconnects for w in writers)
        assert "replication stream failed" in server.logs()
        stop_writers(writers)
        with psycopg.connect(session_conninfo(dsn), autocommit=True) as db:
            expected = table_rows(db, "t")
            converge(reader, expected)
            reader.stop(db, "t")
        check_final(server.url, follower, shape_id, expected, "t")
    finally:
        for w in writers:
            w.halt.set()
        if reader is not None and reader.is_alive():
            reader.halt.set()
        if server is not None:
            server.stop()
        cluster.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


# -- 4. snapshot vs. stream -------------------------------------------------------------------
def run_concurrently(*calls) -> None:
    """Run the calls in threads at once; re-raise the first failure."""
    failures: list[BaseException] = []

    def run(call) -> None:
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(c,), daemon=True) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
        assert not t.is_alive(), "call did not finish"
    if failures:
        raise failures[0]


def test_snapshot_taken_during_concurrent_writes_matches_table(server, db, database):
    tables = [f"r{i}" for i in range(6)]
    for t in tables:
        create_table(db, t, 300)
    db.execute("CREATE TABLE side (id int PRIMARY KEY, n int)")
    db.execute("INSERT INTO side VALUES (1, 0)")
    writers = [Writer(database, tables, seed=i, seed_rows=300) for i in range(4)]
    for w in writers:
        w.start()
    followers: dict[str, list[StrictFollower]] = {}
    try:
        with psycopg.connect(session_conninfo(database), autocommit=True) as held:
            for t in tables:
                # A transaction open across the snapshot pins its xmin, so transactions
                # committed after it started and before the snapshot are visible to the
                # snapshot although their xids are above xmin: they must not be applied again.
                with held.transaction():
                    held.execute("UPDATE side SET n = n + 1")
                    wait_progress(writers, None, txns=150)
                    # two clients ask for the new shape at once while the writers keep going
                    pair = [StrictFollower(server.url, t), StrictFollower(server.url, t)]
                    run_concurrently(pair[0].sync, pair[1].sync)
                assert pair[0].shape_id == pair[1].shape_id
                followers[t] = pair
        wait_progress(writers, None, txns=300)
        stop_writers(writers)
    finally:
        for w in writers:
            w.halt.set()
    for t, pair in followers.items():
        expected = table_rows(db, t)
        for f in pair:
            f.wait_for(lambda rows, e=expected: rows == e)
            assert_history(f.messages, expected, t)


def lock_waits(conn: psycopg.Connection, table: str) -> bool:
    return conn.execute(
        "SELECT count(*) FROM pg_locks WHERE relation = %s::regclass AND NOT granted", (table,)
    ).fetchone()[0] > 0


@pytest.mark.parametrize("case", ["new_table", "replica_identity_full", "already_published"])
def test_transaction_open_on_the_table_while_the_shape_is_created(server, db, database, case):
    """A transaction that wrote to the table before the shape's snapshot and commits after it:
    its changes must reach the shape exactly once, including those made before the table
    joined the publication. Creating the shape may wait for the transaction (it then is in
    the snapshot), or not (its changes then come from the stream)."""
    create_table(db, "p", 10)
    if case == "replica_identity_full":
        db.execute("ALTER TABLE p REPLICA IDENTITY FULL")
    if case == "already_published":
        first = StrictFollower(server.url, "p")
        first.sync()
        assert first.client.delete("/v1/shape/p", params={"shape_id": first.shape_id}).status_code == 202
    follower = StrictFollower(server.url, "p")
    with psycopg.connect(session_conninfo(database), autocommit=True) as held:
        with held.transaction():
            held.execute("INSERT INTO p VALUES (500, 0, 1, 'held')")
            held.execute("UPDATE p SET v = v + 1, note = 'held' WHERE id = 1")
            syncing = threading.Thread(target=follower.sync, daemon=True)
            syncing.start()
            wait_until(lambda: not syncing.is_alive() or lock_waits(db, "p"), 20,
                       "the shape's snapshot, or its wait for the open transaction")
            held.execute("INSERT INTO p VALUES (501, 0, 2, 'held, later')")
            held.execute("DELETE FROM p WHERE id = 2")
        syncing.join(30)
    assert follower.up_to_date, "the initial sync failed (see the thread's exception above)"
    db.execute("INSERT INTO p VALUES (502, 0, 3, 'after')")
    expected = table_rows(db, "p")
    follower.wait_for(lambda rows: '"public"."p"/"502"' in rows)
    assert follower.rows == expected
    assert_history(follower.messages, expected, "p")
