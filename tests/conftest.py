"""Shared fixtures: one real Postgres cluster per session, a fresh database per test, and
shapesync servers started as real processes (so kill -9 and restarts are real too)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from shapesync.embedded_pg import EmbeddedPostgres

REPO = Path(__file__).resolve().parent.parent


def start_cluster(prefix: str = "shapesync-test-", **options) -> EmbeddedPostgres:
    """A new throwaway cluster (fsync off), started; ``options`` go to EmbeddedPostgres."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(base, 0o755)
    cluster = EmbeddedPostgres(base / "data", fast=True, **options)
    cluster.start()
    return cluster


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[EmbeddedPostgres]:
    cluster = start_cluster()
    yield cluster
    cluster.stop("immediate")


def create_database(cluster: EmbeddedPostgres) -> str:
    """A fresh database in ``cluster``; its name."""
    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return name


def drop_database(cluster: EmbeddedPostgres, name: str) -> None:
    """Drop the database after its replication slots (which would keep WAL forever)."""
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            conn.execute(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                "WHERE database = %s AND active", (name,))
            conn.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                "WHERE database = %s AND NOT active", (name,))
            left = conn.execute(
                "SELECT count(*) FROM pg_replication_slots WHERE database = %s", (name,)
            ).fetchone()[0]
            if not left:
                break
            time.sleep(0.1)
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def database(pg_cluster: EmbeddedPostgres) -> Iterator[str]:
    """A fresh database; its replication slots are dropped before the database."""
    name = create_database(pg_cluster)
    yield pg_cluster.dsn(name)
    drop_database(pg_cluster, name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``shapesync serve`` in a subprocess, on a free port, with its own storage dir."""

    def __init__(self, dsn: str, storage: Path, env: dict[str, str] | None = None) -> None:
        self.dsn = dsn
        self.storage = storage
        self.extra_env = env or {}
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log_path = storage.parent / f"{storage.name}-server-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: bool = True) -> ServerProcess:
        dbname = psycopg.conninfo.conninfo_to_dict(self.dsn)["dbname"]
        env = {
            **os.environ,
            "DATABASE_URL": self.dsn,
            "DATABASE_ID": "test_db",
            "PORT": str(self.port),
            "STORAGE_DIR": str(self.storage),
            "REPLICATION_STREAM_ID": dbname,
            "ENABLE_INTEGRATION_TESTING": "true",
            "LOG_LEVEL": "info",
            **self.extra_env,
        }
        self.log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "shapesync", "serve", "--host", "127.0.0.1"],
            env=env, stdout=self.log_file, stderr=subprocess.STDOUT,
        )
        if wait:
            self.wait_healthy()
        return self

    def wait_healthy(self, timeout: float = 30, database_id: str | None = None) -> None:
        """Until the default database (or ``database_id``) reports active."""
        database_id = database_id or self.extra_env.get("DATABASE_ID", "test_db")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/v1/health", params={"database_id": database_id},
                             timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"server not healthy: {self.log_path.read_text()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        self.log_file.close()
        return code

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def server_factory(database: str, tmp_path: Path):
    servers: list[ServerProcess] = []

    def make(env: dict[str, str] | None = None, storage: Path | None = None) -> ServerProcess:
        server = ServerProcess(database, storage or tmp_path / "storage", env)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def server(server_factory) -> ServerProcess:
    return server_factory().start()


@pytest.fixture
def db(database: str) -> Iterator[psycopg.Connection]:
    from shapesync.pg.session import session_conninfo

    with psycopg.connect(session_conninfo(database), autocommit=True) as conn:
        yield conn
