"""Postgres wire and catalog: logical replication, snapshots, setup, table metadata."""
