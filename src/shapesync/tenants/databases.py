"""The databases (tenants) a server syncs: validation, naming and the persisted list.

The default database comes from DATABASE_URL / DATABASE_ID on every start; databases
added through the admin API are kept in ``STORAGE_DIR/databases.json`` (it holds
their URLs, passwords included, so it is written with mode 0600) and started again on
restart. Nothing here logs or returns a password.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

import orjson
import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from shapesync.pg.session import redact, session_conninfo
from shapesync.storage.files import write_atomically

log = logging.getLogger(__name__)

CHECK_TIMEOUT_S = 10  # the whole Add Database check: connecting and the queries
_SSLMODES = ("disable", "allow", "prefer", "require")
MAX_NAME = 63  # Postgres identifiers (slot and publication names)


class DatabaseRejected(ValueError):
    """An Add Database request that cannot be honoured; ``body`` is the 400 response body."""

    def __init__(self, body: object) -> None:
        super().__init__(str(body))
        self.body = body


@dataclass(frozen=True)
class DatabaseUrl:
    """A validated database URL: the libpq conninfo to use and the database's identity."""

    conninfo: str
    identity: str  # "<host>:<port>/<dbname>", what two tenants may not share


def parse_database_url(url: str) -> DatabaseUrl | str:
    """The reference's checks of an Add Database URL, with its messages; a str is the error."""
    try:
        parts = urlsplit(url)
        port = parts.port or 5432
    except ValueError:
        return "is not a valid URL"  # not the parser's text: it can quote a password
    if parts.scheme not in ("postgres", "postgresql"):
        return f'has invalid URL scheme: "{parts.scheme}"'
    if not parts.hostname:
        return "missing host"
    user = unquote(parts.username or "")
    if not user:
        return "has invalid or missing username"
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    sslmode = query.get("sslmode")
    if sslmode is not None:
        if sslmode in ("verify-ca", "verify-full"):
            return (f'has unsupported "sslmode" value "{sslmode}". Consider using the '
                    "DATABASE_REQUIRE_SSL configuration option")
        if sslmode not in _SSLMODES:
            return f'has invalid "sslmode" value: "{sslmode}"'
    elif "replication" in query:
        return ('has unsupported "replication" query option. Electric opens both a replication '
                "connection and regular connections to Postgres as needed")
    elif query:
        return "has unsupported query options: " + ", ".join(f'"{k}"' for k in sorted(query))
    dbname = unquote(parts.path.lstrip("/")) or user
    params = {"host": parts.hostname, "port": str(port), "user": user, "dbname": dbname}
    if parts.password is not None:
        params["password"] = unquote(parts.password)
    if sslmode is not None:
        params["sslmode"] = sslmode
    return DatabaseUrl(make_conninfo("", **params), f"{parts.hostname}:{port}/{dbname}")


def identity_of(dsn: str) -> str:
    """``host:port/dbname`` of a conninfo string or URL (as the reference compares them)."""
    params = conninfo_to_dict(dsn)
    host = params.get("host") or "localhost"
    return f"{host}:{params.get('port') or 5432}/{params.get('dbname') or params.get('user') or ''}"


def replication_names(stream_id: str, database_id: str, default: bool) -> tuple[str, str]:
    """(slot, publication) for a database.

    The default database keeps the reference's names (``electric_slot_<stream_id>``), so
    an existing deployment keeps its slot. Every added database gets a suffix made from
    its id (readable part + hash): slot names are global to a Postgres cluster, and two
    databases of one cluster must never share a slot.
    """
    slot, publication = f"electric_slot_{stream_id}", f"electric_publication_{stream_id}"
    if default:
        return slot, publication
    readable = re.sub(r"[^a-z0-9_]", "_", database_id.lower())[:16]
    digest = hashlib.sha256(database_id.encode()).hexdigest()[:8]
    suffix = f"_{readable}_{digest}"
    return slot[: MAX_NAME - len(suffix)] + suffix, publication[: MAX_NAME - len(suffix)] + suffix


COULD_NOT_CONNECT = "could not connect (the shapesync log has the reason)"
NO_IPV6 = "has no IPv6 address"
COULD_NOT_INSPECT = "could not inspect the database (the shapesync log has the reason)"
NO_ROLE = "could not inspect the database: the connecting role was not found"
NO_LOGICAL = ("has {}; logical replication needs wal_level = logical "
              "(ALTER SYSTEM SET wal_level = logical, then restart Postgres)")
NO_REPLICATION = "names a role without the REPLICATION attribute (ALTER ROLE ... WITH REPLICATION)"
NO_CREATE = "names a role that may not CREATE in the database (needed for the publication)"
_WAL_LEVELS = ("minimal", "replica")  # the values NO_LOGICAL may name
# Checks given up on, still cleaning up (psycopg cancels a running query, for 10 s at most).
_abandoned: set[asyncio.Task] = set()


async def check_database(conninfo: str, timeout: float = CHECK_TIMEOUT_S) -> str | None:
    """Connect once and check what replication needs; the problem as a fixed sentence, or
    None. Connecting and the queries together take at most ``timeout`` seconds.

    The sentences never carry what the server or libpq said (host, port, the error text):
    an admin caller would learn from them whether some address is open or what answers
    there. The reason goes to the log instead."""
    task = asyncio.ensure_future(_check_database(conninfo, timeout))
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if done:
        return task.result()
    # Not awaited: cancelling a query makes psycopg ask the server to cancel it first,
    # which a stalled server never answers (psycopg gives up after 10 s).
    task.cancel()
    _abandoned.add(task)
    task.add_done_callback(_abandoned.discard)
    log.warning("database check for %s: no answer within %.0f s", redact(conninfo), timeout)
    return COULD_NOT_CONNECT


async def _check_database(conninfo: str, timeout: float) -> str | None:
    try:
        conn = await psycopg.AsyncConnection.connect(
            session_conninfo(conninfo), autocommit=True, connect_timeout=max(1, math.ceil(timeout)))
    except (psycopg.Error, OSError) as exc:
        log.warning("database check for %s: could not connect: %s", redact(conninfo),
                    str(exc).strip() or type(exc).__name__)
        return COULD_NOT_CONNECT
    try:
        async with conn:
            cur = await conn.execute(
                "SELECT current_setting('wal_level'), r.rolsuper, r.rolreplication, "
                "has_database_privilege(current_database(), 'CREATE') "
                "FROM pg_roles r WHERE r.rolname = current_user")
            row = await cur.fetchone()
    except (psycopg.Error, OSError) as exc:
        log.warning("database check for %s: could not inspect it: %s", redact(conninfo),
                    str(exc).strip() or type(exc).__name__)
        return COULD_NOT_INSPECT
    if row is None:
        return NO_ROLE
    wal_level, superuser, replication, can_create = row
    if wal_level != "logical":
        known = wal_level in _WAL_LEVELS
        return NO_LOGICAL.format(f"wal_level = {wal_level}" if known else "another wal_level")
    if not (superuser or replication):
        return NO_REPLICATION
    if not (superuser or can_create):
        return NO_CREATE
    return None


@dataclass(frozen=True)
class StoredDatabase:
    id: str
    url: str
    use_ipv6: bool = False


class DatabaseStore:
    """The databases added through the admin API, in one small JSON file.

    ``STORAGE_DIR/databases.json``, outside ``state/`` where each database keeps
    ``<id>.json``: no database id can name the same file."""

    def __init__(self, storage_dir: Path) -> None:
        self.path = storage_dir / "databases.json"

    def load(self) -> list[StoredDatabase]:
        try:
            entries = orjson.loads(self.path.read_bytes())
            return [StoredDatabase(e["id"], e["url"], bool(e.get("use_ipv6"))) for e in entries]
        except FileNotFoundError:
            return []
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            # Written atomically, so this is damage from outside: refuse to guess which
            # databases to serve (and whose shapes to keep) rather than drop some silently.
            raise RuntimeError(f"{self.path} is unreadable ({exc}); fix or remove it") from None

    def save(self, databases: list[StoredDatabase]) -> None:
        """Atomically, durably, readable by the owner only (the URLs hold passwords)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = orjson.dumps([{"id": d.id, "url": d.url, "use_ipv6": d.use_ipv6}
                             for d in databases])
        write_atomically(self.path, data, mode=0o600)


async def with_ipv6(conninfo: str) -> str:
    """The conninfo with ``hostaddr`` set to the host's IPv6 address (DATABASE_USE_IPV6);
    raises OSError when the host has none. The lookup runs off the event loop."""
    params = conninfo_to_dict(conninfo)
    host = str(params.get("host") or "localhost")
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, int(params.get("port") or 5432), family=socket.AF_INET6, type=socket.SOCK_STREAM)
    params["hostaddr"] = infos[0][4][0]
    return make_conninfo("", **params)
