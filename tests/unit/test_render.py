"""Response bodies: stored ``,{item}`` runs framed as JSON arrays, whole or streamed."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import orjson
import pytest

from shapesync.http.render import (
    PIECE_BYTES,
    UP_TO_DATE,
    JsonArrayBody,
    json_array,
    json_array_length,
    must_refetch_body,
)
from shapesync.storage.shape_log import FileSlice
from shapesync.storage.shape_storage import SnapshotAndLog

UP_TO_DATE_ITEM = {"headers": {"control": "up-to-date"}}


def _run(*items: dict) -> bytes:
    """Items as stored: each preceded by a comma."""
    return b"".join(b"," + orjson.dumps(item) for item in items)


# -- json_array -------------------------------------------------------------------------


def test_json_array_of_items():
    items = [{"n": 1}, {"n": 2}]
    assert orjson.loads(json_array(_run(*items), up_to_date=False)) == items


def test_json_array_appends_up_to_date():
    body = json_array(_run({"n": 1}), up_to_date=True)
    assert orjson.loads(body) == [{"n": 1}, UP_TO_DATE_ITEM]
    assert orjson.loads(UP_TO_DATE) == UP_TO_DATE_ITEM


def test_json_array_of_nothing():
    assert json_array(b"", up_to_date=False) == b"[]"
    assert orjson.loads(json_array(b"", up_to_date=True)) == [UP_TO_DATE_ITEM]


def test_must_refetch_body():
    assert must_refetch_body("gone") == [{"headers": {"control": "must-refetch"}, "reason": "gone"}]
    assert must_refetch_body("")[0]["reason"] == "the shape was removed"


# -- JsonArrayBody over a snapshot file and a log slice ----------------------------------


def _slice(path: Path, data: bytes) -> FileSlice:
    path.write_bytes(data)
    return FileSlice(os.open(path, os.O_RDONLY), 0, len(data))


def _source(tmp_path: Path, snapshot: bytes, log: bytes) -> SnapshotAndLog:
    return SnapshotAndLog(_slice(tmp_path / "snapshot.json", snapshot),
                          _slice(tmp_path / "log.json", log))


async def _stream(body: JsonArrayBody) -> list[bytes]:
    try:
        return [piece async for piece in body]
    finally:
        await body.aclose()


def _body(tmp_path: Path, snapshot: bytes, log: bytes) -> bytes:
    return b"".join(asyncio.run(_stream(JsonArrayBody(_source(tmp_path, snapshot, log)))))


SNAPSHOT = [{"n": 1}, {"n": 2}]
LOG = [{"n": 3}, {"n": 4, "s": "a,b]"}]


@pytest.mark.parametrize(
    ("snapshot", "log"),
    [(SNAPSHOT, LOG), ([], LOG), (SNAPSHOT, []), ([], []), ([{"n": 1}], [{"n": 2}])],
    ids=["both", "empty-snapshot", "empty-log", "both-empty", "one-each"],
)
def test_streamed_body_is_snapshot_then_log_items(tmp_path, snapshot, log):
    body = _body(tmp_path, _run(*snapshot), _run(*log))
    assert orjson.loads(body) == snapshot + log


def test_streamed_body_of_a_snapshot_larger_than_one_read_block(tmp_path):
    snapshot = [{"n": i, "pad": "x" * 20} for i in range(60_000)]
    stored = _run(*snapshot)
    assert len(stored) > 1.5 * PIECE_BYTES
    pieces = asyncio.run(_stream(JsonArrayBody(_source(tmp_path, stored, _run(*LOG)))))
    assert len(pieces) >= 3
    assert pieces[0].startswith(b"[{") and pieces[-1].endswith(b"]")
    assert orjson.loads(b"".join(pieces)) == snapshot + LOG


def test_streamed_body_of_a_large_snapshot_and_empty_log(tmp_path):
    snapshot = [{"n": i, "pad": "x" * 20} for i in range(60_000)]
    assert orjson.loads(_body(tmp_path, _run(*snapshot), b"")) == snapshot


def test_streamed_body_aclose_without_iterating_closes_the_file(tmp_path):
    source = _source(tmp_path, _run({"n": 1}), b"")
    link = Path(f"/proc/self/fd/{source.snapshot._fd}")
    assert link.resolve() == tmp_path / "snapshot.json"
    asyncio.run(JsonArrayBody(source).aclose())
    assert not link.exists() or link.resolve() != tmp_path / "snapshot.json"


@pytest.mark.parametrize("up_to_date", [True, False])
@pytest.mark.parametrize("items", [[], [{"n": 1}], LOG])
def test_json_array_length_matches_the_body(items, up_to_date):
    stored = _run(*items)
    assert json_array_length(len(stored), up_to_date) == len(json_array(stored, up_to_date))


def test_a_log_slice_streams_with_its_tail(tmp_path):
    items = [{"n": i, "pad": "y" * 30} for i in range(20_000)]
    stored = _run(*items)
    body = JsonArrayBody(_slice(tmp_path / "log.json", stored), b"," + UP_TO_DATE)
    pieces = asyncio.run(_stream(body))
    assert len(pieces) > 2 and max(len(p) for p in pieces) <= PIECE_BYTES + 1
    assert b"".join(pieces) == json_array(stored, True)
