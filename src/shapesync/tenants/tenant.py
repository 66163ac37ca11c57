"""One database: its connections, slot, publication, shapes and storage directory.

A Tenant wires the stages for its database (``pg.replication`` -> ``shapes.sink`` ->
storage) and offers the HTTP layer what requests need: table metadata, shapes by
definition or id, shape creation and deletion. One that fails never holds up another.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import shutil

import orjson
import psycopg

from shapesync.changes import Relation
from shapesync.config import Settings
from shapesync.pg import setup
from shapesync.pg.catalog import TableLookupError, load_table
from shapesync.pg.replication import ReplicationClient
from shapesync.pg.session import redact, session_conninfo
from shapesync.shapes.definition import ShapeDefinition, compile_definition_where
from shapesync.shapes.registry import ShapeRegistry
from shapesync.shapes.shape import Shape
from shapesync.shapes.sink import ShapeSink, StorageFailure
from shapesync.shapes.snapshot import SnapshotSlots, run_snapshot
from shapesync.storage.files import write_atomically
from shapesync.tables import TableInfo
from shapesync.tenants.databases import replication_names
from shapesync.where import CompiledWhere

log = logging.getLogger(__name__)


CONNECT_TIMEOUT_S = 10
RETRY_AFTER_S = 5  # what 503 answers tell clients to wait
TABLE_CHECK_INTERVAL_S = 2.0  # how often dropped or unpublished tables are looked for


class NotReady(RuntimeError):
    """The database is not connected yet, or no longer served (answered with 503/404).
    The message is shown to clients: it never carries server details (hosts, ports,
    Postgres' own messages), which go to the log instead."""


class SlotTaken(RuntimeError):
    """Another server holds this database's replication slot (its advisory lock)."""


class Busy(RuntimeError):
    """Try again shortly (503 + Retry-After): the table is locked by another session, or
    too many shapes are being created at once. The message is shown to clients."""


class Tenant:
    def __init__(self, database_id: str, dsn: str, settings: Settings, *,
                 default: bool = True, snapshot_slots: SnapshotSlots | None = None) -> None:
        self.id = database_id
        self.dsn = dsn
        self.slot_name, self.publication_name = replication_names(
            settings.replication_stream_id, database_id, default)
        self.conninfo = session_conninfo(dsn)
        self.state_path = settings.storage_dir / "state" / f"{database_id}.json"
        self.registry = ShapeRegistry(settings.storage_dir / "shapes" / database_id,
                                      settings.chunk_bytes_threshold)
        self.sink = ShapeSink(self.registry, on_relation=self._forget_table,
                              on_stalled=self._remove)
        self.max_shapes = settings.max_shapes
        self.ddl_lock_timeout_ms = settings.ddl_lock_timeout_ms
        self.snapshot_slots = snapshot_slots or SnapshotSlots(settings.max_concurrent_snapshots)
        self.status = "starting"
        self.closed = False  # stopped: no new shapes, connections or reads
        self.removed = False
        self.replication = ReplicationClient(
            dsn, self.slot_name, self.publication_name, self.sink,
            on_streaming=self._on_streaming, before_start=self._prepare,
        )
        self._catalog: psycopg.AsyncConnection | None = None
        self._lock_conn: psycopg.AsyncConnection | None = None  # holds the slot's lock
        self._catalog_lock = asyncio.Lock()
        self._table_locks: dict[tuple[str, str], asyncio.Lock] = {}  # shape creation per table
        # a table whose preparation timed out: no new attempt (and lock request) before then
        self._busy_until: dict[tuple[str, str], float] = {}
        self._snapshot_tasks: dict[str, asyncio.Task] = {}  # by shape id, while running
        self._tables: dict[tuple[str | None, str], TableInfo] = {}
        self._prepared = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self._task: asyncio.Task | None = None
        self._watcher: asyncio.Task | None = None

    @property
    def status(self) -> str:
        """``starting``, ``waiting`` (another server holds the slot), ``active``,
        ``storage_failing`` (active, but shape logs cannot be written) or ``stopping``."""
        if self._status == "active" and self.sink.failing:
            return "storage_failing"
        return self._status

    @status.setter
    def status(self, value: str) -> None:
        self._status = value

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        self.registry.restore()
        log.info("database %s: %s, %d shapes restored", self.id, redact(self.dsn), len(self.registry))
        self._task = asyncio.create_task(self.replication.run(), name=f"replication-{self.id}")
        self._watcher = asyncio.create_task(self._watch_tables(), name=f"tables-{self.id}")

    async def stop(self) -> None:
        self.status = "stopping"
        self.closed = True
        self.registry.wake_all()
        await self.replication.stop()
        for task in (self._task, self._watcher):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        # Closed above: a shape creation in flight stops at its next ensure_open, before
        # it starts a snapshot task.
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.sink.has_unflushed:
            try:
                await self.sink.flush()
            except StorageFailure as exc:  # not confirmed: Postgres replays it next time
                log.error("database %s: %s", self.id, exc)
        self.registry.close()
        for conn in (self._catalog, self._lock_conn):
            if conn is not None:
                await conn.close()

    async def remove(self) -> list[str]:
        """Stop for good and delete everything this database left: its live waiters are
        answered (they get 404), its slot and the publication we created are dropped, its
        shape logs and state are deleted. Returns what could not be cleaned up in Postgres
        (the database may be down), for the log."""
        self.removed = True
        for shape in self.registry.all():
            shape.invalidate("the database was removed")
        await self.stop()
        problems = []
        try:
            conn = await psycopg.AsyncConnection.connect(
                self.conninfo, autocommit=True, connect_timeout=5)
            async with conn:
                await setup.drop_slot(conn, self.slot_name)
                if self._load_state().get("created_publication"):
                    await setup.drop_publication(conn, self.publication_name)
        except (psycopg.Error, OSError, TimeoutError) as exc:
            problems.append(f"replication slot {self.slot_name} and publication "
                            f"{self.publication_name} were not dropped: {str(exc).strip()}")
        shutil.rmtree(self.registry.root, ignore_errors=True)
        self.state_path.unlink(missing_ok=True)
        return problems

    def _on_streaming(self, up: bool) -> None:
        if self.status == "stopping":
            return
        if up:
            self.status = "active"
        elif self.status != "waiting":  # (waiting: for another server's slot lock)
            self.status = "starting"

    async def _hold_slot_lock(self) -> None:
        """One server per slot: hold a session advisory lock named after the slot on a
        connection of its own. Postgres releases it when that server stops or dies, so a
        second server waits (health: ``waiting``) and takes over within seconds."""
        if self._lock_conn is not None and not self._lock_conn.closed \
                and not self._lock_conn.broken:
            return
        self._lock_conn = None
        conn = await psycopg.AsyncConnection.connect(
            self.conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
        key = int.from_bytes(hashlib.sha256(self.slot_name.encode()).digest()[:8], "big",
                             signed=True)
        cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (key,))
        row = await cur.fetchone()
        if row is None or not row[0]:
            await conn.close()
            self.status = "waiting"
            raise SlotTaken(f"another server is using replication slot {self.slot_name}; "
                            "waiting for it to stop")
        self._lock_conn = conn
        if self.status == "waiting":
            log.info("database %s: replication slot %s is ours now", self.id, self.slot_name)
            self.status = "starting"

    async def _prepare(self) -> None:
        """Before each (re)connection: the slot's lock, publication, slot, identity."""
        await self._hold_slot_lock()
        async with self._catalog_lock:
            conn = await self._catalog_conn()
            state = self._load_state()
            publication_created = await setup.ensure_publication(conn, self.publication_name)
            if publication_created:
                # saved at once: a removal that interrupts us must know to drop it
                state["created_publication"] = True
                self._save_state(state)
            created = await setup.ensure_slot(conn, self.slot_name)
            identity = await setup.database_identity(conn)
        previous = state.get("identity")
        if previous is not None and previous != identity and len(self.registry):
            log.warning("database identity changed (%s -> %s): dropping all shapes", previous, identity)
            self._remove_all("the database was replaced or restored")
        elif created and len(self.registry):
            log.warning("replication slot was missing or invalidated and had to be created: "
                        "dropping all shapes")
            self._remove_all("the replication slot was lost")
        elif publication_created and len(self.registry):
            log.warning("publication %s was missing and had to be created: dropping all shapes",
                        self.publication_name)
            self._remove_all("the publication was dropped")
        self._save_state({**state, "identity": identity})
        self._prepared.set()

    def _load_state(self) -> dict:
        try:
            return orjson.loads(self.state_path.read_bytes())
        except (FileNotFoundError, orjson.JSONDecodeError):
            return {}

    def _save_state(self, state: dict) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(self.state_path, orjson.dumps(state))

    def ensure_open(self) -> None:
        """Raise NotReady once stopped: callers check after every await, since the
        database may have been removed (or the server stopped) meanwhile."""
        if self.closed:
            raise NotReady("the database was removed" if self.removed else "shutting down")

    async def _catalog_conn(self) -> psycopg.AsyncConnection:
        self.ensure_open()
        if self._catalog is None or self._catalog.closed or self._catalog.broken:
            self._catalog = await psycopg.AsyncConnection.connect(
                self.conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
        return self._catalog

    # -- tables ---------------------------------------------------------------------------
    async def table(self, schema: str | None, name: str) -> TableInfo:
        """Table metadata (schema None: the search path decides), cached until a Relation
        message says the table changed; raises TableLookupError or NotReady."""
        if (cached := self._tables.get((schema, name))) is not None:
            return cached
        if not self._prepared.is_set():
            raise NotReady("database is not connected yet")
        async with self._catalog_lock:
            try:
                info = await load_table(await self._catalog_conn(), schema, name)
            except psycopg.OperationalError as exc:
                log.warning("database %s: catalog query failed: %s", self.id, str(exc).strip())
                raise NotReady("the database is unreachable") from None
            except psycopg.Error as exc:
                log.warning("database %s: looking up %s failed: %s", self.id, name,
                            str(exc).strip())
                raise NotReady("the database could not look the table up") from None
        self._tables[(schema, name)] = info
        return info

    def _forget_table(self, relation: Relation) -> None:
        """A Relation message: drop cached metadata of the table it names (by oid or name)."""
        self._tables = {
            k: v for k, v in self._tables.items()
            if v.oid != relation.relation_id and (v.schema, v.name) != (relation.schema, relation.name)
        }

    # -- shapes ---------------------------------------------------------------------------
    def find_shape(self, definition: ShapeDefinition) -> Shape | None:
        shape = self.registry.get(definition)
        return self.registry.touch(shape) if shape is not None else None

    def shape_by_id(self, shape_id: str) -> Shape | None:
        shape = self.registry.by_shape_id(shape_id)
        return self.registry.touch(shape) if shape is not None else None

    def removal_reason(self, shape_id: str) -> str | None:
        return self.registry.removal_reason(shape_id)

    async def get_or_create(self, definition: ShapeDefinition, table: TableInfo,
                            where: CompiledWhere | None = None) -> Shape:
        """The shape for ``definition``; a new one joins replication at once and takes
        its snapshot in the background (``Shape.wait_snapshot`` tells when it is done).

        Creation is serialised per table only: a table whose preparation waits for another
        session's lock (Busy after the DDL lock timeout) never holds up other tables.
        Raises NotReady, Busy, or TableLookupError when the table cannot be prepared."""
        self.ensure_open()
        if (shape := self.find_shape(definition)) is not None:
            return shape
        lock = self._table_locks.setdefault((table.schema, table.name), asyncio.Lock())
        async with lock:
            self.ensure_open()
            if (shape := self.find_shape(definition)) is not None:
                return shape
            key = (table.schema, table.name)
            loop = asyncio.get_running_loop()
            if loop.time() < self._busy_until.get(key, 0.0):
                raise Busy(f'Table "{table.schema}.{table.name}" is locked by another '
                           "session: try again shortly")
            try:
                await self._prepare_table(table)
            except Busy:
                # Every attempt queues a lock request that the application's queries on the
                # table wait behind: clients retrying must not add more of them.
                self._busy_until[key] = loop.time() + RETRY_AFTER_S
                raise
            self._busy_until.pop(key, None)
            self.ensure_open()
            if where is None and definition.where is not None:
                where = compile_definition_where(definition, table)
            if not self.snapshot_slots.try_acquire():
                raise Busy("too many shapes are being created at once: try again shortly")
            try:
                self._make_room()
                shape = self.registry.create(definition, table, where)
            except OSError as exc:
                self.snapshot_slots.release()
                log.error("database %s: cannot store a new shape: %s", self.id, exc)
                raise Busy("the server cannot store a new shape now: try again shortly") from None
            log.info("created shape %s on %s.%s", shape.id, table.schema, table.name)
            task = asyncio.create_task(self._snapshot(shape), name=f"snapshot-{shape.id}")
            self._tasks.add(task)
            self._snapshot_tasks[shape.id] = task
            task.add_done_callback(functools.partial(self._snapshot_done, shape_id=shape.id))
            return shape

    def _snapshot_done(self, task: asyncio.Task, shape_id: str) -> None:
        """Whatever ended the snapshot task (even a cancellation before it ran)."""
        self._tasks.discard(task)
        self._snapshot_tasks.pop(shape_id, None)
        self.snapshot_slots.release()

    def _make_room(self) -> None:
        """Below ELECTRIC_MAX_SHAPES, drop the least recently used shapes (409 for them)."""
        while self.max_shapes and len(self.registry) >= self.max_shapes:
            victim = self.registry.least_recently_used()
            if victim is None:
                return
            log.info("database %s: %d shapes, at most %d (ELECTRIC_MAX_SHAPES): dropping the "
                     "least recently used, %s", self.id, len(self.registry), self.max_shapes,
                     victim.id)
            self._remove(victim, "the server keeps a limited number of shapes and this one "
                                 "was the least recently used")

    async def _prepare_table(self, table: TableInfo) -> None:
        """Publication membership and replica identity, on a connection of its own with a
        short lock timeout (no lock of ours is held while Postgres makes us wait)."""
        try:
            conn = await psycopg.AsyncConnection.connect(
                self.conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
        except psycopg.OperationalError as exc:
            log.warning("database %s: cannot connect: %s", self.id, str(exc).strip())
            raise NotReady("the database is unreachable") from None
        try:
            async with conn:
                if await setup.ensure_publication(conn, self.publication_name):
                    # dropped behind our back (its shapes go with the table check)
                    log.warning("database %s: publication %s was missing: created it again",
                                self.id, self.publication_name)
                    self._save_state({**self._load_state(), "created_publication": True})
                await setup.prepare_table(conn, self.publication_name, table.schema,
                                          table.name, self.ddl_lock_timeout_ms)
        except setup.TableBusy:
            raise Busy(f'Table "{table.schema}.{table.name}" is locked by another session: '
                       "try again shortly") from None
        except setup.TableNotPrepared as exc:
            raise TableLookupError(str(exc)) from None
        except psycopg.errors.UndefinedTable:
            raise TableLookupError("table not found") from None
        except psycopg.Error as exc:
            log.warning("database %s: preparing %s.%s failed: %s", self.id, table.schema,
                        table.name, str(exc).strip())
            raise NotReady("the database could not prepare the table for replication") from None

    async def _snapshot(self, shape: Shape) -> None:
        if not await run_snapshot(self.conninfo, shape):
            self.sink.remove(shape, "snapshot failed")

    def _remove_all(self, reason: str) -> None:
        for shape in self.registry.all():
            self._remove(shape, reason)
        self._tables.clear()

    async def _watch_tables(self) -> None:
        """Every TABLE_CHECK_INTERVAL: drop the shapes of tables that were dropped (a new
        table of the same name then gets new shapes with its own rows) or that left the
        publication; pgoutput says nothing of either."""
        while not self.closed:
            await asyncio.sleep(TABLE_CHECK_INTERVAL_S)
            oids = sorted({s.definition.table_oid for s in self.registry.all()})
            if not oids or not self._prepared.is_set() or self.closed:
                continue
            try:
                async with self._catalog_lock:
                    gone = await setup.unpublished_tables(
                        await self._catalog_conn(), self.publication_name, oids)
            except (psycopg.Error, OSError, NotReady) as exc:
                log.debug("database %s: table check skipped: %s", self.id, exc)
                continue
            for oid in gone:
                shapes = self.registry.for_tables({oid})
                if shapes:
                    log.warning("database %s: table %s.%s was dropped or left the publication: "
                                "dropping its %d shape(s)", self.id, shapes[0].table.schema,
                                shapes[0].table.name, len(shapes))
                for shape in shapes:
                    self._remove(shape, "the table was dropped or left the publication")
                self._tables = {k: v for k, v in self._tables.items() if v.oid != oid}

    def delete_shape(self, shape: Shape, reason: str) -> None:
        """Remove a shape (its clients get 409 and refetch)."""
        self._remove(shape, reason)

    def _remove(self, shape: Shape, reason: str) -> None:
        """Remove a shape; a snapshot still running for it is cancelled (its thread,
        connection and snapshot slot are freed rather than spent on a file nobody reads)."""
        self.sink.remove(shape, reason)
        task = self._snapshot_tasks.get(shape.id)
        if task is not None:
            task.cancel()

    def wake_all(self) -> None:
        """Answer every live waiter now (shutdown must not wait for them)."""
        self.registry.wake_all()
