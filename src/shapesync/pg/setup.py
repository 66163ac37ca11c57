"""Idempotent server-side setup: publication, replication slot, table preparation."""

from __future__ import annotations

import asyncio
import logging

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)


async def ensure_publication(conn: psycopg.AsyncConnection, publication: str) -> bool:
    """Create the publication; on Postgres 18+ make it publish stored generated columns.

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
    """Create the logical slot if missing; return True when it had to be created."""
    cur = await conn.execute(
        "SELECT plugin, database, current_database() FROM pg_replication_slots WHERE slot_name = %s",
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
        return False
    await conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
    log.info("created replication slot %s", slot)
    return True


async def prepare_table(
    conn: psycopg.AsyncConnection, publication: str, schema: str, table: str
) -> None:
    """Add the table to the publication and give it REPLICA IDENTITY FULL, if needed.

    Full identity makes pgoutput send whole old rows on UPDATE/DELETE, which shapes need
    to evaluate where clauses on the old row and to compute changed columns.

    When the table joins the publication, a transaction that wrote to it before that (in
    WAL order) and commits later has those changes decoded as unpublished, so the stream
    never carries them; a snapshot taken while it is still open does not contain them
    either. So before returning (and before the caller takes its snapshot) wait for every
    such writer to finish: they then are visible to the snapshot. ALTER TABLE ... REPLICA
    IDENTITY waits for them by itself (ACCESS EXCLUSIVE); otherwise a SHARE lock, which
    conflicts with the writers' ROW EXCLUSIVE, does, and is released at once.
    """
    ident = sql.Identifier(schema, table)
    cur = await conn.execute(
        "SELECT 1 FROM pg_publication_tables WHERE pubname = %s AND schemaname = %s "
        "AND tablename = %s",
        (publication, schema, table),
    )
    added = await cur.fetchone() is None
    if added:
        await conn.execute(
            sql.SQL("ALTER PUBLICATION {} ADD TABLE {}").format(sql.Identifier(publication), ident)
        )
        log.info("added %s.%s to publication %s", schema, table, publication)
    cur = await conn.execute(
        "SELECT relreplident FROM pg_class WHERE oid = %s::regclass",
        (f'"{schema.replace(chr(34), chr(34) * 2)}"."{table.replace(chr(34), chr(34) * 2)}"',),
    )
    row = await cur.fetchone()
    if row is not None and row[0] != "f":
        await conn.execute(sql.SQL("ALTER TABLE {} REPLICA IDENTITY FULL").format(ident))
    elif added:
        async with conn.transaction():
            await conn.execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(ident))


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
