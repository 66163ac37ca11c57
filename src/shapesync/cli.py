"""``shapesync serve``: run the sync service (with an embedded Postgres when no DATABASE_URL)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from pathlib import Path

import uvicorn

from shapesync.app import Service
from shapesync.config import ConfigError, Settings

log = logging.getLogger("shapesync")


class _Server(uvicorn.Server):
    """uvicorn, with live long-polls answered before it waits for open requests."""

    def __init__(self, config: uvicorn.Config, service: Service) -> None:
        super().__init__(config)
        self.service = service

    async def shutdown(self, sockets=None) -> None:
        self.service.begin_shutdown()
        await super().shutdown(sockets)

    @contextlib.contextmanager
    def capture_signals(self):
        """uvicorn re-raises the SIGTERM/SIGINT that stopped it once serving ends; with the
        default handler back in place that kills the process (exit -15) before
        ``service.stop()`` flushes shape logs and closes the replication connection. The
        signal has been handled by the graceful shutdown: forget it so we exit normally."""
        with super().capture_signals():
            yield
            captured = getattr(self, "_captured_signals", None)
            if isinstance(captured, list):
                captured.clear()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shapesync", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP sync service")
    serve.add_argument("--database-url", help="Postgres URL (env DATABASE_URL); omit for an embedded Postgres")
    serve.add_argument("--database-id", help="id of the default database (env DATABASE_ID)")
    serve.add_argument("--secret", help="API secret required on shape and admin requests "
                                        "(env ELECTRIC_SECRET, preferred: flags show in ps)")
    serve.add_argument("--port", type=int, help="HTTP port (env PORT, default 3000)")
    serve.add_argument("--host", help="listen address (default 0.0.0.0)")
    serve.add_argument("--storage-dir", type=Path, help="data directory (env STORAGE_DIR, default ./persistent)")
    serve.add_argument("--chunk-bytes", type=int, help="LOG_CHUNK_BYTES_THRESHOLD")
    serve.add_argument("--allow-shape-deletion", action="store_true", default=None,
                       help="enable DELETE /v1/shape (env ALLOW_SHAPE_DELETION)")
    serve.add_argument("--log-level", help="debug, info, warning or error (env LOG_LEVEL)")
    serve.add_argument("--max-shapes", type=int,
                       help="keep at most this many shapes per database, dropping the least "
                            "recently used (env ELECTRIC_MAX_SHAPES; 0 = no limit)")
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    settings = Settings.from_env()
    for attr, value in (
        ("database_url", args.database_url), ("database_id", args.database_id),
        ("secret", args.secret or None),
        ("port", args.port), ("host", args.host), ("storage_dir", args.storage_dir),
        ("chunk_bytes_threshold", args.chunk_bytes),
        ("allow_shape_deletion", args.allow_shape_deletion), ("log_level", args.log_level),
        ("max_shapes", args.max_shapes),
    ):
        if value is not None:
            setattr(settings, attr, value)
    settings.validate()
    return settings


async def serve(settings: Settings) -> None:
    embedded = None
    if not settings.database_url:
        from shapesync.embedded_pg import EmbeddedPostgres, EmbeddedPostgresError

        settings.storage_dir.mkdir(parents=True, exist_ok=True)
        try:  # a cluster left running by a killed shapesync is stopped first (embedded_pg)
            embedded = EmbeddedPostgres(settings.storage_dir.resolve() / "postgres")
            await asyncio.to_thread(embedded.start)
        except EmbeddedPostgresError as exc:
            print(f"shapesync: embedded Postgres: {exc}", file=sys.stderr, flush=True)
            raise SystemExit(1) from None
        settings.database_url = embedded.url
        print(f"Embedded Postgres is running; connect with: psql {embedded.url}", flush=True)
    service = Service(settings)
    try:
        await service.start()
        config = uvicorn.Config(
            service.app, host=settings.host, port=settings.port, lifespan="off",
            log_level=settings.log_level, access_log=False, timeout_graceful_shutdown=5,
            backlog=4096, server_header=False, http=_http_protocol(settings),
            timeout_keep_alive=5,  # uvicorn's default: idle kept-alive connections close after 5 s
        )
        log.info("shapesync listening on http://%s:%d", settings.host, settings.port)
        await _Server(config, service).serve()
    finally:
        await service.stop()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)


def _http_protocol(settings: Settings):
    """Our httptools protocol subclass (JSON error bodies, limits for slow and hostile
    clients), or uvicorn's choice without httptools (then without those limits)."""
    try:
        from shapesync.http.protocol import ClientLimits, HttpProtocol
    except ImportError:
        log.warning("httptools is not installed: no header, send or connection limits")
        return "auto"
    return HttpProtocol.with_limits(ClientLimits(
        header_timeout=settings.header_timeout, max_header_bytes=settings.max_header_bytes,
        send_timeout=settings.send_timeout, max_connections=settings.max_connections,
    ))


def _event_loop_runner():
    """uvloop when installed (it comes with uvicorn[standard]), else the stdlib loop.

    We start the loop ourselves (uvicorn.Server.serve inside our own coroutine), so
    uvicorn's own loop selection never runs; without this the server used the stdlib
    selector loop, which spends about twice as long per response in a live fan-out.
    SHAPESYNC_EVENT_LOOP=asyncio forces the stdlib loop.
    """
    if os.environ.get("SHAPESYNC_EVENT_LOOP", "auto") != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.run
    return asyncio.run


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = settings_from(args)
    except ConfigError as exc:
        print(f"shapesync: configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        _event_loop_runner()(serve(settings))
    except KeyboardInterrupt:
        pass
    return 0
