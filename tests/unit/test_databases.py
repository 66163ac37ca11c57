"""Database URLs, ids, slot/publication names and the persisted list (no Postgres needed)."""

from __future__ import annotations

import asyncio
import stat

import pytest
from psycopg.conninfo import conninfo_to_dict

from shapesync.config import database_id_error
from shapesync.tenants.databases import (
    MAX_NAME,
    DatabaseStore,
    DatabaseUrl,
    StoredDatabase,
    identity_of,
    parse_database_url,
    replication_names,
    with_ipv6,
)


def test_url_parts_are_percent_decoded_with_the_references_defaults():
    parsed = parse_database_url("postgresql://us%40er:p%3Ass%2Fword@db.example/my%20db")
    assert isinstance(parsed, DatabaseUrl)
    assert conninfo_to_dict(parsed.conninfo) == {
        "host": "db.example", "port": "5432", "user": "us@er", "password": "p:ss/word",
        "dbname": "my db"}
    assert parsed.identity == "db.example:5432/my db"
    # database defaults to the user name; sslmode is kept
    parsed = parse_database_url("postgres://alice@h:6543?sslmode=require")
    assert conninfo_to_dict(parsed.conninfo) == {
        "host": "h", "port": "6543", "user": "alice", "dbname": "alice", "sslmode": "require"}


def test_with_sslmode_other_query_options_are_ignored_as_in_the_reference():
    parsed = parse_database_url("postgresql://u@h/d?sslmode=disable&replication=database&x=1")
    assert isinstance(parsed, DatabaseUrl)
    assert "replication" not in conninfo_to_dict(parsed.conninfo)


@pytest.mark.parametrize("url", ["postgresql://u@h:notaport/d", "postgresql://u@h:99999/d"])
def test_bad_ports_are_reported_not_raised(url):
    assert isinstance(parse_database_url(url), str)


def test_an_unparsable_url_is_not_quoted_back():
    # an unescaped "/" in the password makes the rest look like host:port
    assert parse_database_url("postgresql://app:s3cr3t/xyz@db/app") == "is not a valid URL"


def test_the_database_list_cannot_collide_with_a_databases_state_file(tmp_path):
    from shapesync.config import Settings
    from shapesync.tenants.tenant import Tenant

    store = DatabaseStore(tmp_path)
    entries = [StoredDatabase("other", "postgresql://u@h1/d"),
               StoredDatabase("databases", "postgresql://u@h2/d")]
    store.save(entries)
    tenant = Tenant("databases", "postgresql://u@h2/d", Settings(storage_dir=tmp_path),
                    default=False)
    tenant._save_state({"identity": "x"})
    assert store.load() == entries


def test_identity_of_conninfo_and_url_agree():
    parsed = parse_database_url("postgresql://postgres@127.0.0.1:5433/app")
    assert identity_of(parsed.conninfo) == "127.0.0.1:5433/app"
    assert identity_of("host=127.0.0.1 port=5433 user=postgres dbname=app") == "127.0.0.1:5433/app"
    assert identity_of("host=h user=bob") == "h:5432/bob"


@pytest.mark.parametrize("database_id,ok", [
    ("test_db", True), ("a", True), ("A-b.c_9", True), ("x" * 64, True),
    ("", False), ("x" * 65, False), ("../etc", False), (".hidden", False), ("-x", False),
    ("a/b", False), ("a b", False), ("é", False),
])
def test_database_ids_are_safe_as_directory_names(database_id, ok):
    assert (database_id_error(database_id) is None) is ok


def test_default_database_keeps_the_reference_names():
    assert replication_names("default", "anything", default=True) == (
        "electric_slot_default", "electric_publication_default")


def test_added_databases_get_unique_valid_names():
    names = set()
    for database_id in ("b", "B", "app-2", "app_2", "a" * 64, "x.y", "1487a362-ed4a-4639"):
        slot, publication = replication_names("s" * 41, database_id, default=False)
        for name in (slot, publication):
            assert len(name) <= MAX_NAME and name == name.lower()
            assert all(c.isalnum() or c == "_" for c in name)
        names.add(slot)
    assert len(names) == 7  # ids differing only in case or punctuation still differ


def test_with_ipv6_sets_hostaddr():
    conninfo = asyncio.run(with_ipv6("host=::1 port=5432 user=u dbname=d"))
    assert conninfo_to_dict(conninfo)["hostaddr"] == "::1"
    with pytest.raises(OSError):
        asyncio.run(with_ipv6("host=127.0.0.1 port=5432 user=u dbname=d"))


def test_store_round_trip_is_private(tmp_path):
    store = DatabaseStore(tmp_path)
    assert store.load() == []
    entries = [StoredDatabase("a", "postgresql://u:secret@h/d"), StoredDatabase("b", "postgresql://u@h2/d", True)]
    store.save(entries)
    assert store.load() == entries
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    store.path.write_text("{not json")
    with pytest.raises(RuntimeError, match="unreadable"):
        store.load()
