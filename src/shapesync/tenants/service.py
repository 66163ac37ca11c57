"""The databases one server serves: started from settings and the stored list, added
and removed at run time (Add / Remove Database)."""

from __future__ import annotations

import asyncio
import logging
import uuid

from shapesync.config import Settings
from shapesync.pg.session import redact
from shapesync.shapes.snapshot import SnapshotSlots
from shapesync.storage.files import write_atomically
from shapesync.tenants.databases import (
    CHECK_TIMEOUT_S,
    NO_IPV6,
    DatabaseRejected,
    DatabaseStore,
    StoredDatabase,
    check_database,
    identity_of,
    parse_database_url,
    with_ipv6,
)
from shapesync.tenants.tenant import Tenant

log = logging.getLogger(__name__)


def default_database_id(settings: Settings) -> str:
    """DATABASE_ID, else an id generated once and kept in the storage directory, so that
    shapes survive restarts (the reference draws a new random id on every start)."""
    if settings.database_id:
        return settings.database_id
    path = settings.storage_dir / "state" / "default_database_id"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        new_id = str(uuid.uuid4())
        write_atomically(path, new_id.encode())
        return new_id


class TenantService:
    """Every database of one server process; ``start``/``stop`` bracket its life.
    ``tenants`` is live: requests look databases up in it as they are added and removed."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.tenants: dict[str, Tenant] = {}
        self.store = DatabaseStore(settings.storage_dir)
        self._admin_lock = asyncio.Lock()
        self.snapshot_slots = SnapshotSlots(settings.max_concurrent_snapshots)

    async def start(self) -> None:
        if self.settings.database_url:
            database_id = default_database_id(self.settings)
            tenant = Tenant(database_id, self.settings.database_url, self.settings,
                            snapshot_slots=self.snapshot_slots)
            self.tenants[database_id] = tenant
            await tenant.start()
        for stored in self.store.load():
            if stored.id in self.tenants:
                log.warning("database %s is both DATABASE_ID and an added database; "
                            "using DATABASE_URL", stored.id)
                continue
            try:
                dsn = await self._connection_string(stored, strict=False)
            except DatabaseRejected as exc:
                log.error("database %s cannot be started: %s", stored.id, exc.body)
                continue
            tenant = Tenant(stored.id, dsn, self.settings, default=False,
                            snapshot_slots=self.snapshot_slots)
            self.tenants[stored.id] = tenant
            await tenant.start()

    async def stop(self) -> None:
        await asyncio.gather(*(tenant.stop() for tenant in list(self.tenants.values())))

    # -- admin: Add Database / Remove Database ------------------------------------------
    @staticmethod
    async def _connection_string(stored: StoredDatabase, strict: bool = True) -> str:
        """The conninfo for a stored database. Not ``strict`` (at startup), a failed IPv6
        lookup (DNS down for now, say) falls back to libpq resolving the name itself on
        every connection attempt, rather than leaving the database out."""
        parsed = parse_database_url(stored.url)
        if isinstance(parsed, str):
            raise DatabaseRejected({"database_url": [parsed]})
        if not stored.use_ipv6:
            return parsed.conninfo
        try:
            return await with_ipv6(parsed.conninfo)
        except OSError as exc:
            if not strict:
                log.warning("database %s: no IPv6 address now (%s); connecting without the "
                            "IPv6 preference", stored.id, exc)
                return parsed.conninfo
            # Not the resolver's text: what it says about a name is not for the caller.
            log.warning("database %s: no IPv6 address: %s", stored.id, exc)
            raise DatabaseRejected({"database_url": [NO_IPV6]}) from None

    def _ensure_free(self, database_id: str, identity: str) -> None:
        """Raise DatabaseRejected when the id or the database is already served."""
        if database_id in self.tenants:
            raise DatabaseRejected(f"Database {database_id} already exists.")
        if any(identity_of(t.dsn) == identity for t in self.tenants.values()):
            raise DatabaseRejected(
                f"The database {identity} is already in use by another tenant.")

    async def add_database(self, stored: StoredDatabase) -> None:
        """Validate, check the server, persist, start. Raises DatabaseRejected.

        The checks that talk to the network (IPv6 lookup, connecting, the queries) run
        outside the admin lock and within CHECK_TIMEOUT_S together, so a server that
        stalls holds up no other admin request; id and database are checked again under
        the lock, before the database is persisted and started."""
        if stored.id in self.tenants:
            raise DatabaseRejected(f"Database {stored.id} already exists.")
        parsed = parse_database_url(stored.url)
        if isinstance(parsed, str):
            raise DatabaseRejected({"database_url": [parsed]})
        identity = identity_of(parsed.conninfo)
        self._ensure_free(stored.id, identity)
        deadline = asyncio.get_running_loop().time() + CHECK_TIMEOUT_S
        try:
            async with asyncio.timeout_at(deadline):
                dsn = await self._connection_string(stored)
        except TimeoutError:
            raise DatabaseRejected({"database_url": [NO_IPV6]}) from None
        remaining = max(0.1, deadline - asyncio.get_running_loop().time())
        problem = await check_database(dsn, timeout=remaining)
        if problem is not None:
            raise DatabaseRejected({"database_url": [problem]})
        async with self._admin_lock:
            self._ensure_free(stored.id, identity)  # added by another request meanwhile?
            tenant = Tenant(stored.id, dsn, self.settings, default=False,
                            snapshot_slots=self.snapshot_slots)
            self.store.save([*self.store.load(), stored])
            self.tenants[stored.id] = tenant
            log.info("database %s added: %s", stored.id, redact(dsn))
            await tenant.start()

    async def remove_database(self, database_id: str) -> bool:
        """Stop the database and delete what it left behind; False if it is unknown."""
        async with self._admin_lock:
            tenant = self.tenants.pop(database_id, None)
            if tenant is None:
                return False
            for problem in await tenant.remove():
                log.warning("database %s: %s", database_id, problem)
            # Forgotten last: a crash during removal brings the database back on restart
            # (and it can be removed again) instead of leaving its slot holding WAL forever.
            self.store.save([d for d in self.store.load() if d.id != database_id])
            log.info("database %s removed", database_id)
            return True
