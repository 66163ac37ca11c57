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


# Numeric environment variables: name -> (Settings attribute, minimum value).
_INTEGERS = {
    "PORT": ("port", 1),
    "LOG_CHUNK_BYTES_THRESHOLD": ("chunk_bytes_threshold", 1),
    "CACHE_MAX_AGE": ("cache_max_age", 0),
    "CACHE_STALE_AGE": ("cache_stale_age", 0),
    "ELECTRIC_MAX_SHAPES": ("max_shapes", 0),
    "SHAPESYNC_MAX_CONCURRENT_SNAPSHOTS": ("max_concurrent_snapshots", 1),
    "SHAPESYNC_DDL_LOCK_TIMEOUT": ("ddl_lock_timeout_ms", 1),
    "SHAPESYNC_MAX_HEADER_BYTES": ("max_header_bytes", 1024),
    "SHAPESYNC_MAX_CONNECTIONS": ("max_connections", 0),
}
_SECONDS = {  # name -> attribute; finite, >= 0
    "SHAPESYNC_HEADER_TIMEOUT": "header_timeout",
    "SHAPESYNC_SEND_TIMEOUT": "send_timeout",
}


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
        for name, (attribute, minimum) in _INTEGERS.items():
            if name in env:
                setattr(s, attribute, _int(name, env[name], minimum))
        for name, attribute in _SECONDS.items():
            if name in env:
                setattr(s, attribute, _seconds(name, env[name]))
        if env.get("LISTEN_ON_IPV6") and _bool(env["LISTEN_ON_IPV6"]):
            s.host = "::"
        if "STORAGE_DIR" in env:
            s.storage_dir = Path(env["STORAGE_DIR"])
        if _bool(env.get("ENABLE_INTEGRATION_TESTING", "")) or _bool(env.get("ALLOW_SHAPE_DELETION", "")):
            s.allow_shape_deletion = True
        if "REPLICATION_STREAM_ID" in env:
            s.replication_stream_id = env["REPLICATION_STREAM_ID"]
        if "LOG_LEVEL" in env:
            s.log_level = env["LOG_LEVEL"].lower()
        s.secret = env.get("ELECTRIC_SECRET") or None  # empty counts as unset
        s.validate()
        return s

    def validate(self) -> None:
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,40}", self.replication_stream_id):
            raise ConfigError(
                "REPLICATION_STREAM_ID must be a lower-case identifier of at most 41 characters"
            )
        if self.database_id is not None and (problem := database_id_error(self.database_id)):
            raise ConfigError(f"DATABASE_ID {problem}")
        if self.log_level not in ("debug", "info", "warning", "error", "critical"):
            raise ConfigError(f"LOG_LEVEL must be debug, info, warning or error, not {self.log_level!r}")
