"""Settings from flags and the reference's environment variables (same names and defaults)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

DATABASE_ID_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
DATABASE_ID_RULE = "must be 1 to 64 characters: letters, digits, '_', '-' or '.', not starting with '.' or '-'"


def database_id_error(database_id: str) -> str | None:
    """Why ``database_id`` is not usable (it names a directory and goes in URLs), or None."""
    return None if DATABASE_ID_PATTERN.fullmatch(database_id) else DATABASE_ID_RULE


class ConfigError(ValueError):
    pass


def _bool(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def _int(name: str, value: str, minimum: int = 0) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {value!r}") from None
    if number < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {number}")
    return number


def _seconds(name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {value!r}") from None
    if not number >= 0 or number == float("inf"):
        raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")
    return number


@dataclass
class Settings:
    database_url: str | None = None
    database_id: str | None = None
    port: int = 3000
    host: str = "0.0.0.0"
    storage_dir: Path = field(default_factory=lambda: Path("./persistent"))
    chunk_bytes_threshold: int = 10 * 1024 * 1024
    cache_max_age: int = 60
    cache_stale_age: int = 300
    allow_shape_deletion: bool = False
    replication_stream_id: str = "default"
    long_poll_timeout: float = 20.0
    log_level: str = "info"
    # shape limits: 0 = no limit on shapes (least recently used ones go beyond it)
    max_shapes: int = 0
    max_concurrent_snapshots: int = 8
    ddl_lock_timeout_ms: int = 1000
    # -- authentication (http/auth.py) --
    # ELECTRIC_SECRET: required as ?secret= on shape and admin requests; without it the
    # shape API is open and the admin API answers loopback peers only. Never in a repr.
    secret: str | None = field(default=None, repr=False)
    # Slow and hostile clients (http/protocol.py); 0 turns a timeout or the limit off.
    header_timeout: float = 30.0
    max_header_bytes: int = 32 * 1024
    send_timeout: float = 30.0
    max_connections: int = 0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        s = cls()
        s.database_url = env.get("DATABASE_URL") or None
        s.database_id = env.get("DATABASE_ID") or None
        if s.database_id and not s.database_url:
            raise ConfigError("DATABASE_ID is set but DATABASE_URL is not")
        if "PORT" in env:
            s.port = _int("PORT", env["PORT"], 1)
        if env.get("LISTEN_ON_IPV6") and _bool(env["LISTEN_ON_IPV6"]):
            s.host = "::"
        if "STORAGE_DIR" in env:
            s.storage_dir = Path(env["STORAGE_DIR"])
        if "LOG_CHUNK_BYTES_THRESHOLD" in env:
            s.chunk_bytes_threshold = _int("LOG_CHUNK_BYTES_THRESHOLD", env["LOG_CHUNK_BYTES_THRESHOLD"], 1)
        if "CACHE_MAX_AGE" in env:
            s.cache_max_age = _int("CACHE_MAX_AGE", env["CACHE_MAX_AGE"])
        if "CACHE_STALE_AGE" in env:
            s.cache_stale_age = _int("CACHE_STALE_AGE", env["CACHE_STALE_AGE"])
        if _bool(env.get("ENABLE_INTEGRATION_TESTING", "")) or _bool(env.get("ALLOW_SHAPE_DELETION", "")):
            s.allow_shape_deletion = True
        if "REPLICATION_STREAM_ID" in env:
            s.replication_stream_id = env["REPLICATION_STREAM_ID"]
        if "LOG_LEVEL" in env:
            s.log_level = env["LOG_LEVEL"].lower()
        if "ELECTRIC_MAX_SHAPES" in env:
            s.max_shapes = _int("ELECTRIC_MAX_SHAPES", env["ELECTRIC_MAX_SHAPES"])
        if "SHAPESYNC_MAX_CONCURRENT_SNAPSHOTS" in env:
            s.max_concurrent_snapshots = _int(
                "SHAPESYNC_MAX_CONCURRENT_SNAPSHOTS", env["SHAPESYNC_MAX_CONCURRENT_SNAPSHOTS"], 1)
        if "SHAPESYNC_DDL_LOCK_TIMEOUT" in env:
            s.ddl_lock_timeout_ms = _int(
                "SHAPESYNC_DDL_LOCK_TIMEOUT", env["SHAPESYNC_DDL_LOCK_TIMEOUT"], 1)
        s.secret = env.get("ELECTRIC_SECRET") or None  # empty counts as unset
        s._client_limits_from_env(env)
        s.validate()
        return s

    def _client_limits_from_env(self, env: dict[str, str]) -> None:
        if "SHAPESYNC_HEADER_TIMEOUT" in env:
            self.header_timeout = _seconds("SHAPESYNC_HEADER_TIMEOUT", env["SHAPESYNC_HEADER_TIMEOUT"])
        if "SHAPESYNC_MAX_HEADER_BYTES" in env:
            self.max_header_bytes = _int("SHAPESYNC_MAX_HEADER_BYTES", env["SHAPESYNC_MAX_HEADER_BYTES"], 1024)
        if "SHAPESYNC_SEND_TIMEOUT" in env:
            self.send_timeout = _seconds("SHAPESYNC_SEND_TIMEOUT", env["SHAPESYNC_SEND_TIMEOUT"])
        if "SHAPESYNC_MAX_CONNECTIONS" in env:
            self.max_connections = _int("SHAPESYNC_MAX_CONNECTIONS", env["SHAPESYNC_MAX_CONNECTIONS"])

    def validate(self) -> None:
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,40}", self.replication_stream_id):
            raise ConfigError(
                "REPLICATION_STREAM_ID must be a lower-case identifier of at most 41 characters"
            )
        if self.database_id is not None and (problem := database_id_error(self.database_id)):
            raise ConfigError(f"DATABASE_ID {problem}")
        if self.log_level not in ("debug", "info", "warning", "error", "critical"):
            raise ConfigError(f"LOG_LEVEL must be debug, info, warning or error, not {self.log_level!r}")
