"""Idempotent server-side setup: publication, replication slot, table preparation."""

from __future__ import annotations

import asyncio
import logging

import psycopg
from psycopg import sql

from shapesync.tables import quote_ident

log = logging.getLogger(__name__)


async def ensure_publication(conn: psycopg.AsyncConnection, publication: str) -> bool:
    """Create the publication, publishing partitioned tables through their root (so a
    shape on one sees its partitions' changes); on Postgres 18+ make it publish stored
    generated columns.

    Before 18 pgoutput never sends generated columns, so shapes leave them out (see
    ``catalog.load_table``); from 18 on it can, and shapes include them.
    Returns True when the publication had to be created.
    """
    name = sql.Identifier(publication)
    cur = await conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (publication,))
    if await cur.fetchone() is None:
        await conn.execute(sql.SQL("CREATE PUBLICATION {}").format(name))
        log.info("created publication %s", publication)
        created = True
    else:
        created = False
    cur = await conn.execute(
        "SELECT pubviaroot FROM pg_publication WHERE pubname = %s", (publication,))
    row = await cur.fetchone()
    if row is not None and not row[0]:
        try:
            await conn.execute(sql.SQL(
                "ALTER PUBLICATION {} SET (publish_via_partition_root = true)").format(name))
        except psycopg.errors.InsufficientPrivilege:
            log.warning("publication %s is not ours to alter: partitioned tables need it to "
                        "publish_via_partition_root (ALTER PUBLICATION ... SET "
                        "(publish_via_partition_root = true))", publication)
    if conn.info.server_version >= 180000:
        cur = await conn.execute(
            "SELECT pubgencols::text FROM pg_publication WHERE pubname = %s", (publication,)
        )
        row = await cur.fetchone()
        if row is not None and row[0] != "s":
            await conn.execute(
                sql.SQL("ALTER PUBLICATION {} SET (publish_generated_columns = stored)").format(name)
            )
    return created


async def ensure_slot(conn: psycopg.AsyncConnection, slot: str) -> bool:
    """Create the logical slot if missing, or again if Postgres invalidated it (wal_status
    ``lost``: the WAL it needed is gone, e.g. past ``max_slot_wal_keep_size``); return True
    when it had to be created (changes since the old position are lost to us)."""
    lost = "wal_status = 'lost'" if conn.info.server_version >= 130000 else "false"
    cur = await conn.execute(
        f"SELECT plugin, database, current_database(), {lost} FROM pg_replication_slots "
        "WHERE slot_name = %s",
        (slot,),
    )
    row = await cur.fetchone()
    if row is not None:
        if row[0] != "pgoutput":
            raise RuntimeError(f"replication slot {slot} exists with plugin {row[0]}, not pgoutput")
        if row[1] != row[2]:
            raise RuntimeError(
                f"replication slot {slot} belongs to database {row[1]}; set REPLICATION_STREAM_ID "
                "to a name unique in this Postgres cluster"
            )
        if not row[3]:
            return False
        log.warning("replication slot %s was invalidated by Postgres (the WAL it needed was "
                    "removed): dropping and creating it again", slot)
        await drop_slot(conn, slot)
    await conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
    log.info("created replication slot %s", slot)
    return True


class TableBusy(RuntimeError):
    """Preparing the table waited longer than the lock timeout for other sessions' locks."""


class TableNotPrepared(RuntimeError):
    """The table is not ready for replication and our role may not make it so."""


async def prepare_table(
    conn: psycopg.AsyncConnection, publication: str, schema: str, table: str,
    lock_timeout_ms: int,
) -> None:
    """Add the table to the publication and give it REPLICA IDENTITY FULL, if needed.

    A table the operator prepared already (in the publication, identity FULL, and for a
    partitioned table the same identity on every partition) needs no DDL at all, so the
    server's role then needs no ownership of it.

    Full identity makes pgoutput send whole old rows on UPDATE/DELETE, which shapes need
    to evaluate where clauses on the old row and to compute changed columns. A partitioned
    table is published through its root (``publish_via_partition_root``, see
    ``ensure_publication``); its partitions each need the identity.

    When the table joins the publication, a transaction that wrote to it before that (in
    WAL order) and commits later has those changes decoded as unpublished, so the stream
    never carries them; a snapshot taken while it is still open does not contain them
    either. So everything runs in one transaction that first takes a SHARE lock on the
    table (it conflicts with writers' ROW EXCLUSIVE: every writer in flight finishes first,
    and is then visible to the snapshot; new ones wait for our commit), and only then joins
    the publication and alters identities. All or nothing: a timeout leaves the table as it
    was, so a retry waits for the writers again.

    ``lock_timeout`` bounds each lock wait: a table that another session keeps locked raises
    TableBusy, and the application's own queries on it, queued behind our lock request,
    wait no longer than that either. Use a connection of its own.
    """
    ident = sql.Identifier(schema, table)
    qualified = f"{quote_ident(schema)}.{quote_ident(table)}"
    recent = conn.info.server_version >= 150000
    cur = await conn.execute(
        _PUBLISHED_SQL.format(in_schema=_IN_SCHEMA_SQL if recent else "",
                              filtered=_FILTERED_SQL if recent else "false"),
        {"pub": publication, "t": qualified})
    row = await cur.fetchone()
    if row is not None and row[0]:
        raise TableNotPrepared(
            f'Table "{schema}.{table}" is published with a row filter or a column list: '
            "shapes need every row and column of it")
    added = row is None
    cur = await conn.execute(_NOT_FULL_SQL, {"t": qualified})
    not_full = [(nsp, rel) for nsp, rel in await cur.fetchall()]
    if not added and not not_full:
        return  # prepared already (by us, or by the operator): no DDL at all
    try:
        async with conn.transaction():
            await conn.execute("SELECT set_config('lock_timeout', %s, true)",
                               (f"{lock_timeout_ms}ms",))
            if added:
                await conn.execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(ident))
                await conn.execute(sql.SQL("ALTER PUBLICATION {} ADD TABLE {}").format(
                    sql.Identifier(publication), ident))
            for nsp, rel in not_full:
                await conn.execute(sql.SQL("ALTER TABLE {} REPLICA IDENTITY FULL").format(
                    sql.Identifier(nsp, rel)))
        if added:
            log.info("added %s.%s to publication %s", schema, table, publication)
    except psycopg.errors.LockNotAvailable:
        raise TableBusy(f"{schema}.{table}") from None
    except psycopg.errors.InsufficientPrivilege:
        raise TableNotPrepared(
            f'Table "{schema}.{table}" is not prepared for replication and the server\'s role '
            f"may not prepare it: as its owner run ALTER PUBLICATION {quote_ident(publication)} "
            f"ADD TABLE {quote_ident(schema)}.{quote_ident(table)}; ALTER TABLE "
            f"{quote_ident(schema)}.{quote_ident(table)} REPLICA IDENTITY FULL (and the same "
            "on each partition of a partitioned table)"
        ) from None
    except (psycopg.errors.WrongObjectType, psycopg.errors.FeatureNotSupported,
            psycopg.errors.ObjectNotInPrerequisiteState) as exc:
        log.warning("preparing %s.%s for replication failed: %s", schema, table,
                    str(exc).strip())
        raise TableNotPrepared(
            f'Table "{schema}.{table}" cannot be prepared for logical replication '
            f"(Postgres error {exc.sqlstate}; the server log has the details)") from None


# Whether the publication covers the table: listed, FOR ALL TABLES, or (Postgres 15+) FOR
# TABLES IN its schema. From the catalog tables, not the pg_publication_tables view, which
# opens (and so locks) every published table.
_PUBLISHED_SQL = """
SELECT {filtered} FROM pg_publication p
WHERE p.pubname = %(pub)s AND (
    p.puballtables
    OR EXISTS (SELECT 1 FROM pg_publication_rel r
               WHERE r.prpubid = p.oid AND r.prrelid = %(t)s::regclass)
    {in_schema})
"""
# (Postgres 15+) true when the table is listed with a row filter or a column list.
_FILTERED_SQL = """EXISTS (SELECT 1 FROM pg_publication_rel r
               WHERE r.prpubid = p.oid AND r.prrelid = %(t)s::regclass
               AND (r.prqual IS NOT NULL OR r.prattrs IS NOT NULL))"""
_IN_SCHEMA_SQL = """OR EXISTS (SELECT 1 FROM pg_publication_namespace pn JOIN pg_class c
               ON c.relnamespace = pn.pnnspid
               WHERE pn.pnpubid = p.oid AND c.oid = %(t)s::regclass)"""

# The table, and for a partitioned one every partition, whose replica identity is not FULL.
# (pg_inherits rather than pg_partition_tree, which locks the table: reading the catalog
# must never wait for another session's lock.)
_NOT_FULL_SQL = """
WITH RECURSIVE tree(oid) AS (
    SELECT %(t)s::regclass::oid
    UNION ALL
    SELECT i.inhrelid FROM pg_inherits i JOIN tree ON i.inhparent = tree.oid
    JOIN pg_class p ON p.oid = i.inhrelid AND p.relispartition
)
SELECT n.nspname, c.relname
FROM tree JOIN pg_class c ON c.oid = tree.oid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relreplident <> 'f'
ORDER BY c.oid <> %(t)s::regclass, c.relname
"""


async def unpublished_tables(conn: psycopg.AsyncConnection, publication: str,
                             oids: list[int]) -> set[int]:
    """Which of the tables ``oids`` were dropped or are no longer covered by the publication
    (their changes no longer reach us)."""
    in_schema = ("OR EXISTS (SELECT 1 FROM pg_publication_namespace pn WHERE "
                 "pn.pnpubid = p.oid AND pn.pnnspid = c.relnamespace)"
                 if conn.info.server_version >= 150000 else "")
    cur = await conn.execute(f"""
        SELECT t.oid::int FROM unnest(%(oids)s::oid[]) AS t(oid)
        WHERE NOT EXISTS (
            SELECT 1 FROM pg_class c JOIN pg_publication p ON p.pubname = %(pub)s
            WHERE c.oid = t.oid AND (
                p.puballtables
                OR EXISTS (SELECT 1 FROM pg_publication_rel r
                           WHERE r.prpubid = p.oid AND r.prrelid = c.oid)
                {in_schema}))""", {"oids": oids, "pub": publication})
    return {row[0] for row in await cur.fetchall()}


async def database_identity(conn: psycopg.AsyncConnection) -> str:
    """``system_identifier:timeline`` - changes on a different cluster or after PITR."""
    cur = await conn.execute(
        "SELECT system_identifier::text, timeline_id FROM pg_control_system(), pg_control_checkpoint()"
    )
    row = await cur.fetchone()
    assert row is not None  # the functions always return one row
    return f"{row[0]}:{row[1]}"


async def drop_slot(conn: psycopg.AsyncConnection, slot: str, timeout: float = 10.0) -> None:
    """Drop the slot, waiting (up to ``timeout``) for the walsender of our just-closed
    replication connection to let go of it."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        cur = await conn.execute(
            "SELECT active, active_pid FROM pg_replication_slots WHERE slot_name = %s", (slot,))
        row = await cur.fetchone()
        if row is None:
            return
        if not row[0]:
            await conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
            log.info("dropped replication slot %s", slot)
            return
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"replication slot {slot} is still in use by process {row[1]}")
        await asyncio.sleep(0.1)


async def drop_publication(conn: psycopg.AsyncConnection, publication: str) -> None:
    await conn.execute(sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(publication)))
    log.info("dropped publication %s", publication)
