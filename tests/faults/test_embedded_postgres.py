"""The embedded Postgres after a crash: a watchdog stops it when ``shapesync serve`` is
killed -9, the next start stops an orphan left running on its data directory (one log line,
no traceback), and a stale postmaster.pid does not block a start.

Every test stops whatever Postgres it started, in ``finally``, whatever happened.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shapesync.embedded_pg import (
    EmbeddedPostgres,
    _is_postmaster,
    _postmaster_pid_file,
    _stop_postmaster,
)
from tests.conftest import free_port

ORPHAN_MESSAGE = "left running on"


def processes_in(data_dir: Path) -> list[int]:
    """Pids of the processes working in ``data_dir`` (a postmaster and all its children do)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.path.samefile(os.readlink(entry / "cwd"), data_dir):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def watchdog_of(server: subprocess.Popen) -> int:
    for pid in children(server.pid):
        try:
            if b"_watchdog_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except OSError:
            continue
    raise AssertionError("no watchdog process under the server")


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class EmbeddedServer:
    """``python -m shapesync serve`` without DATABASE_URL: it runs its own Postgres."""

    def __init__(self, storage: Path) -> None:
        self.storage = storage
        self.port = free_port()
        self.log_path = storage.parent / f"server-{self.port}.log"
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DATABASE_ID")}
        env |= {"PORT": str(self.port), "STORAGE_DIR": str(storage), "LOG_LEVEL": "info"}
        with open(self.log_path, "ab") as log_file:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "shapesync", "serve", "--host", "127.0.0.1"],
                env=env, stdout=log_file, stderr=subprocess.STDOUT,
            )

    def wait_healthy(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited: {self.logs()[-3000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/v1/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server not healthy: {self.logs()[-3000:]}")

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def storage() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="shapesync-embedded-"))
    os.chmod(base, 0o755)  # as root Postgres runs as another user, who must reach the data
    try:
        yield base / "storage"
    finally:
        data_dir = base / "storage" / "postgres"
        pid = _postmaster_pid_file(data_dir) if data_dir.exists() else None
        if pid and _is_postmaster(pid, data_dir):
            _stop_postmaster(pid, data_dir, timeout=3)
        if data_dir.exists():
            for leftover in processes_in(data_dir):
                os.kill(leftover, signal.SIGKILL)
        shutil.rmtree(base, ignore_errors=True)


def _cleanup_server(server: EmbeddedServer) -> None:
    try:
        watchdog = watchdog_of(server.proc) if server.proc.poll() is None else None
    except AssertionError:
        watchdog = None
    server.kill()
    if watchdog:
        wait_until(lambda: not Path(f"/proc/{watchdog}/cmdline").exists()
                   or b"_watchdog_main" not in Path(f"/proc/{watchdog}/cmdline").read_bytes(),
                   20, "the watchdog to finish")


def test_kill9_of_serve_stops_its_postgres_and_the_next_serve_starts(storage: Path) -> None:
    data_dir = storage / "postgres"
    first = EmbeddedServer(storage)
    second = None
    try:
        first.wait_healthy()
        postmaster = _postmaster_pid_file(data_dir)
        assert postmaster and _is_postmaster(postmaster, data_dir)
        first.kill()
        wait_until(lambda: not processes_in(data_dir), 10, "the orphaned Postgres to stop")
        assert "stopping its embedded Postgres" in first.logs()

        second = EmbeddedServer(storage)
        second.wait_healthy()
        assert ORPHAN_MESSAGE not in second.logs()
        assert "Traceback" not in second.logs()
        # A clean stop (SIGTERM) stops Postgres too.
        second.proc.send_signal(signal.SIGTERM)
        assert second.proc.wait(30) == 0
        wait_until(lambda: not processes_in(data_dir), 10, "Postgres to stop with its server")
    finally:
        _cleanup_server(first)
        if second:
            _cleanup_server(second)


def test_orphan_left_by_a_killed_watchdog_is_stopped_by_the_next_serve(storage: Path) -> None:
    data_dir = storage / "postgres"
    first = EmbeddedServer(storage)
    second = None
    try:
        first.wait_healthy()
        orphan = _postmaster_pid_file(data_dir)
        assert orphan
        os.kill(watchdog_of(first.proc), signal.SIGKILL)
        first.kill()
        time.sleep(1)
        assert _is_postmaster(orphan, data_dir), "the orphan should still be running"

        second = EmbeddedServer(storage)
        second.wait_healthy()
        logs = second.logs()
        assert logs.count(ORPHAN_MESSAGE) == 1, logs
        assert f"pid {orphan}" in logs
        assert "Traceback" not in logs and "already exists" not in logs
        assert not _is_postmaster(orphan, data_dir)
        assert _postmaster_pid_file(data_dir) != orphan
    finally:
        _cleanup_server(first)
        if second:
            _cleanup_server(second)


def test_stale_postmaster_pid_does_not_block_a_start(storage: Path) -> None:
    """postmaster.pid of a killed postmaster (Postgres ignores it, or we remove it when the
    pid is an unreaped zombie), one naming a dead pid (Postgres ignores it) and one naming a
    live unrelated process (we remove it)."""
    data_dir = storage / "postgres"
    storage.mkdir()
    cluster = EmbeddedPostgres(data_dir, fast=True)
    sleeper = None
    try:
        cluster.start()
        postmaster = _postmaster_pid_file(data_dir)
        assert postmaster
        os.kill(postmaster, signal.SIGKILL)
        wait_until(lambda: not processes_in(data_dir), 10, "the killed postmaster's children to exit")
        assert (data_dir / "postmaster.pid").exists()
        cluster.start()
        assert _postmaster_pid_file(data_dir) not in (None, postmaster)
        cluster.stop()

        reaped = subprocess.Popen(["true"])
        reaped.wait()  # a pid no process has: Postgres itself ignores the lock file
        lock = (data_dir / "postmaster.pid")
        lock.write_text(f"{reaped.pid}\n{data_dir}\n")
        if cluster.user:
            shutil.chown(lock, cluster.user, cluster.user)
        cluster.start()
        assert _postmaster_pid_file(data_dir) not in (None, reaped.pid)
        cluster.stop()

        sleeper = subprocess.Popen(["sleep", "60"])
        lock = (data_dir / "postmaster.pid")
        lock.write_text(f"{sleeper.pid}\n{data_dir}\n")
        if cluster.user:
            shutil.chown(lock, cluster.user, cluster.user)
        cluster.start()
        assert _postmaster_pid_file(data_dir) not in (None, sleeper.pid)
        assert sleeper.poll() is None, "an unrelated process must not be signalled"
    finally:
        cluster.stop("immediate")
        if sleeper:
            sleeper.kill()
            sleeper.wait()
