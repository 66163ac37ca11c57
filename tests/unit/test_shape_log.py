"""The on-disk shape log: reads, chunk boundaries, durability and crash recovery."""

from __future__ import annotations

import orjson

from shapesync.offsets import BEFORE_ALL, FIRST, LogOffset
from shapesync.storage.shape_log import ShapeLog


def _item(n: int, size: int = 10) -> bytes:
    return orjson.dumps({"n": n, "pad": "x" * size})


def _commit(log: ShapeLog) -> None:
    log.write_pending()
    log.sync()
    log.publish()


def _read(log: ShapeLog, after, upto) -> list:
    data = log.read(after, upto)
    return orjson.loads(b"[" + data[1:] + b"]")


def test_append_is_invisible_until_published(tmp_path):
    log = ShapeLog(tmp_path, 10_000)
    assert log.last_offset == FIRST and log.read(BEFORE_ALL, FIRST) == b""
    log.append_transaction(100, [(0, _item(1)), (2, _item(2))])
    assert log.last_offset == FIRST
    _commit(log)
    assert log.last_offset == LogOffset(100, 2)
    assert [i["n"] for i in _read(log, FIRST, log.last_offset)] == [1, 2]
    assert [i["n"] for i in _read(log, LogOffset(100, 0), log.last_offset)] == [2]
    assert log.contains(LogOffset(100, 0)) and not log.contains(LogOffset(100, 1))
    assert not log.contains(LogOffset(200, 0))


def test_chunk_boundaries(tmp_path):
    body = _item(0, 50)
    threshold = int(len(body) * 1.5)  # boundary after every second item
    log = ShapeLog(tmp_path, threshold)
    log.append_transaction(100, [(0, body), (2, body), (4, body)])
    _commit(log)
    assert log.chunk_end(BEFORE_ALL) == LogOffset(100, 2)
    assert log.chunk_end(FIRST) == LogOffset(100, 2)
    assert log.chunk_end(LogOffset(100, 2)) == LogOffset(100, 4)  # last offset, no boundary
    assert len(_read(log, FIRST, log.chunk_end(FIRST))) == 2


def test_recovery_keeps_whole_transactions_and_boundaries(tmp_path):
    body = _item(0, 50)
    log = ShapeLog(tmp_path, int(len(body) * 1.5))
    log.append_transaction(100, [(0, body), (2, body)])
    _commit(log)
    log.close()
    reopened = ShapeLog(tmp_path, 10_000)
    assert reopened.last_offset == LogOffset(100, 2)
    assert reopened.chunk_end(FIRST) == LogOffset(100, 2)
    reopened.close()


def test_recovery_drops_partial_transaction_and_torn_bytes(tmp_path):
    log = ShapeLog(tmp_path, 10_000)
    log.append_transaction(100, [(0, _item(1))])
    _commit(log)
    log.append_transaction(200, [(0, _item(2)), (2, _item(3))])
    _commit(log)
    log.close()
    idx = tmp_path / "log.idx"
    data = tmp_path / "log.json"
    # simulate a crash in the middle of the second transaction
    idx.write_bytes(idx.read_bytes()[: 2 * 32])
    data.write_bytes(data.read_bytes()[:-5])
    recovered = ShapeLog(tmp_path, 10_000)
    assert recovered.last_offset == LogOffset(100, 0)
    assert [i["n"] for i in _read(recovered, FIRST, recovered.last_offset)] == [1]
    # replay appends the transaction again, cleanly
    recovered.append_transaction(200, [(0, _item(2)), (2, _item(3))])
    _commit(recovered)
    assert [i["n"] for i in _read(recovered, FIRST, recovered.last_offset)] == [1, 2, 3]
    recovered.close()


def test_recovery_detects_corrupt_bytes(tmp_path):
    log = ShapeLog(tmp_path, 10_000)
    log.append_transaction(100, [(0, _item(1))])
    log.append_transaction(200, [(0, _item(2))])
    _commit(log)
    log.close()
    data = tmp_path / "log.json"
    raw = bytearray(data.read_bytes())
    raw[-3] ^= 0xFF
    data.write_bytes(bytes(raw))
    recovered = ShapeLog(tmp_path, 10_000)
    assert recovered.last_offset == LogOffset(100, 0)
    recovered.close()

