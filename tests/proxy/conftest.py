"""nginx (deploy/nginx.conf, the shipped file) as a caching proxy in front of a real shapesync
process. The config is rendered for a scratch directory: only the listen port, the upstream
port and the cache/log/pid paths are substituted, so what is tested is what users deploy.

nginx comes from the Debian package (`scripts/test` installs it as root or with sudo). Without it these tests fail,
unless SHAPESYNC_SKIP_PROXY=1 is set, which skips them."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO, free_port

CONFIG = REPO / "deploy" / "nginx.conf"


def nginx_binary() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None)
    if found:
        return found
    if os.environ.get("SHAPESYNC_SKIP_PROXY") == "1":
        pytest.skip("nginx is not installed (SHAPESYNC_SKIP_PROXY=1)")
    pytest.fail("nginx is not installed: the proxy tests need it (`apt-get install nginx-light`, "
                "as scripts/test does as root), or set SHAPESYNC_SKIP_PROXY=1 to skip them", pytrace=False)


def render(config: str, scratch: Path, port: int, upstream_port: int) -> str:
    """deploy/nginx.conf with its host-specific values replaced by ones under ``scratch``."""
    replacements = [
        ("listen 8080;", f"listen 127.0.0.1:{port};"),
        ("server 127.0.0.1:3000;", f"server 127.0.0.1:{upstream_port};"),
        ("/var/cache/nginx-shapesync", f"{scratch}/cache"),
        ("/var/log/nginx/", f"{scratch}/"),
        ("/run/nginx-shapesync.pid", f"{scratch}/nginx.pid"),
    ]
    for old, new in replacements:
        assert old in config, f"deploy/nginx.conf no longer contains {old!r}; update {__file__}"
        config = config.replace(old, new)
    # The compiled-in temp paths (/var/lib/nginx/...) are not writable without root.
    temp = "".join(f"    {kind}_temp_path {scratch}/tmp/{kind};\n"
                   for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    config = re.sub(r"^http \{\n", lambda m: m.group(0) + temp, config, count=1, flags=re.M)
    if os.geteuid() == 0:  # as root nginx would run its workers as `nobody`
        config = f"user {pwd.getpwuid(0).pw_name};\n" + config
    return config


@dataclass
class Nginx:
    port: int
    scratch: Path
    proc: subprocess.Popen

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def access_log(self) -> Path:
        return self.scratch / "shapesync-access.log"

    def log_lines(self) -> list[dict]:
        """The access log parsed: request URI, status, cache status, upstream status."""
        pattern = re.compile(
            r'"(?P<method>\S+) (?P<uri>\S+) [^"]*" (?P<status>\d+) \d+ '
            r'cache=(?P<cache>\S+) upstream=(?P<upstream>.+?) rt=')
        lines = []
        if self.access_log.exists():
            for line in self.access_log.read_text().splitlines():
                m = pattern.search(line)
                assert m, f"unparsable access log line: {line}"
                lines.append(m.groupdict())
        return lines

    def upstream_requests(self, contains: str = "/v1/shape/") -> list[str]:
        """The URIs nginx passed to shapesync (one entry per upstream request)."""
        return [line["uri"] for line in self.log_lines()
                if line["upstream"] != "-" and contains in line["uri"]]


def _wait_listening(port: int, proc: subprocess.Popen, scratch: Path, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("nginx exited: " + "".join(
                p.read_text() for p in scratch.glob("*.log") if p.exists()))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError("nginx is not listening")


@pytest.fixture
def nginx_factory(tmp_path: Path) -> Iterator:
    """``start(upstream_port)`` runs nginx with deploy/nginx.conf in front of that port."""
    binary = nginx_binary()
    started: list[Nginx] = []

    def start(upstream_port: int) -> Nginx:
        scratch = tmp_path / f"nginx{len(started)}"
        for sub in ("cache", "tmp"):
            (scratch / sub).mkdir(parents=True)
        port = free_port()
        conf = scratch / "nginx.conf"
        conf.write_text(render(CONFIG.read_text(), scratch, port, upstream_port))
        proc = subprocess.Popen(
            [binary, "-p", str(scratch), "-e", str(scratch / "startup-error.log"),
             "-c", str(conf), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL, stderr=open(scratch / "stderr.log", "wb"))
        nginx = Nginx(port, scratch, proc)
        started.append(nginx)
        _wait_listening(port, proc, scratch)
        return nginx

    yield start
    for nginx in started:
        if nginx.proc.poll() is None:
            nginx.proc.send_signal(signal.SIGTERM)  # fast shutdown of master and workers
            try:
                nginx.proc.wait(10)
            except subprocess.TimeoutExpired:
                nginx.proc.kill()
                nginx.proc.wait()
