"""shapesync: the Electric HTTP sync API, served from Postgres logical replication."""

__version__ = "0.1.0"
