"""Settings of http/protocol.py's client limits (the limits themselves are tested over
sockets in tests/abuse/test_slow_clients.py)."""

from __future__ import annotations

import pytest

from shapesync.config import ConfigError, Settings


def test_client_limit_settings_from_env():
    s = Settings.from_env({})
    assert (s.header_timeout, s.max_header_bytes, s.send_timeout, s.max_connections) == (30, 32768, 30, 0)
    s = Settings.from_env({"SHAPESYNC_HEADER_TIMEOUT": "2.5", "SHAPESYNC_MAX_HEADER_BYTES": "8192",
                           "SHAPESYNC_SEND_TIMEOUT": "0", "SHAPESYNC_MAX_CONNECTIONS": "1000"})
    assert (s.header_timeout, s.max_header_bytes, s.send_timeout, s.max_connections) == (2.5, 8192, 0, 1000)
    for env in ({"SHAPESYNC_HEADER_TIMEOUT": "soon"}, {"SHAPESYNC_SEND_TIMEOUT": "-1"},
                {"SHAPESYNC_SEND_TIMEOUT": "nan"}, {"SHAPESYNC_MAX_HEADER_BYTES": "100"},
                {"SHAPESYNC_MAX_CONNECTIONS": "-5"}):
        with pytest.raises(ConfigError):
            Settings.from_env(env)
