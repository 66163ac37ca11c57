"""Connection strings with the reference's fixed display settings.

Applied as startup options to every connection, the replication one included, so values
are rendered identically by the snapshot and by pgoutput whatever the database's defaults.
"""

from __future__ import annotations

from psycopg.conninfo import conninfo_to_dict, make_conninfo

DISPLAY_SETTINGS = {
    "bytea_output": "hex",
    "DateStyle": "ISO,DMY",
    "TimeZone": "UTC",
    "extra_float_digits": "1",
    "IntervalStyle": "iso_8601",
    "client_encoding": "UTF8",
}


def session_conninfo(dsn: str, **extra: str) -> str:
    params = conninfo_to_dict(dsn)
    options = " ".join(f"-c {k}={v}" for k, v in DISPLAY_SETTINGS.items())
    if params.get("options"):
        options = f"{params['options']} {options}"
    params["options"] = options
    params.setdefault("application_name", "shapesync")
    params.update(extra)
    return make_conninfo("", **params)


def redact(dsn: str) -> str:
    """The DSN without its password, for logs."""
    params = conninfo_to_dict(dsn)
    if "password" in params:
        params["password"] = "***"
    return make_conninfo("", **params)
