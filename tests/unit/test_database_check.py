"""check_database's overall time bound and its fixed messages, against fake servers on
127.0.0.1 (no Postgres needed): one that completes the startup handshake and then never
answers a query, and one that answers the startup with an error naming the host."""

from __future__ import annotations

import asyncio
import struct
import time

from shapesync.tenants.databases import COULD_NOT_CONNECT, COULD_NOT_INSPECT, check_database

SSL_OR_GSS = {80877103, 80877104}


def _message(kind: bytes, payload: bytes) -> bytes:
    return kind + struct.pack("!i", len(payload) + 4) + payload


async def _startup(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """Refuse SSL/GSS, read the startup packet; False for a cancel request or EOF."""
    while True:
        try:
            length = struct.unpack("!i", await reader.readexactly(4))[0]
            body = await reader.readexactly(length - 4)
        except asyncio.IncompleteReadError:
            return False
        code = struct.unpack("!i", body[:4])[0]
        if code in SSL_OR_GSS:
            writer.write(b"N")
            await writer.drain()
            continue
        return code != 80877102  # a CancelRequest: ignore it, like a stalled server


async def _serve(handler) -> tuple[asyncio.AbstractServer, int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_a_server_that_stalls_after_the_handshake_is_given_up_in_time(caplog):
    held: list[asyncio.StreamWriter] = []
    queries: list[bytes] = []

    async def handler(reader, writer):
        held.append(writer)
        if not await _startup(reader, writer):
            return
        writer.write(_message(b"R", struct.pack("!i", 0))  # AuthenticationOk
                     + _message(b"S", b"server_version\x0017.0\x00")
                     + _message(b"S", b"client_encoding\x00UTF8\x00")
                     + _message(b"S", b"standard_conforming_strings\x00on\x00")
                     + _message(b"K", struct.pack("!ii", 4242, 99))
                     + _message(b"Z", b"I"))
        await writer.drain()
        queries.append(await reader.read(1))  # the query ('Q'): never answered
        await reader.read()

    async def main():
        server, port = await _serve(handler)
        async with server:
            started = time.monotonic()
            problem = await check_database(
                f"host=127.0.0.1 port={port} user=u dbname=d sslmode=disable", timeout=1.5)
            elapsed = time.monotonic() - started
            for writer in held:
                writer.close()
            return problem, elapsed

    problem, elapsed = asyncio.run(main())
    assert queries == [b"Q"]  # it got as far as the query
    assert problem == COULD_NOT_CONNECT
    assert elapsed < 2.5
    assert "no answer within" in caplog.text


def test_server_error_text_is_not_passed_on():
    async def handler(reader, writer):
        if await _startup(reader, writer):
            fields = (b"SFATAL\x00C28000\x00Mno pg_hba.conf entry for host \"127.0.0.1\", "
                      b"user \"u\", database \"d\"\x00\x00")
            writer.write(_message(b"E", fields))
            await writer.drain()
        writer.close()

    async def main():
        server, port = await _serve(handler)
        async with server:
            return await check_database(f"host=127.0.0.1 port={port} user=u dbname=d", timeout=5)

    problem = asyncio.run(main())
    assert problem == COULD_NOT_CONNECT
    assert "127.0.0.1" not in problem and "pg_hba" not in problem


def test_messages_name_no_address():
    assert "could not connect" in COULD_NOT_CONNECT
    for text in (COULD_NOT_CONNECT, COULD_NOT_INSPECT):
        assert not any(ch.isdigit() for ch in text)
