"""The shared cache of read descriptors: bounded, least recently used closed first."""

from __future__ import annotations

import os

from shapesync.offsets import BEFORE_ALL
from shapesync.storage.open_files import ReadDescriptors
from shapesync.storage.shape_log import ShapeLog


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_at_most_capacity_descriptors_stay_open(tmp_path):
    paths = []
    for i in range(10):
        path = tmp_path / f"f{i}"
        path.write_bytes(b"x")
        paths.append(str(path))
    cache = ReadDescriptors(capacity=3)
    before = _open_fds()
    for path in paths:
        assert os.pread(cache.get(path), 1, 0) == b"x"
    assert len(cache) == 3 and _open_fds() == before + 3
    cache.get(paths[7])  # recently used: survives the next additions
    cache.get(paths[0])
    cache.get(paths[1])
    assert paths[7] in cache._fds and paths[8] not in cache._fds
    for path in paths:
        cache.forget(path)
    assert _open_fds() == before


def test_an_idle_shape_log_holds_no_descriptor(tmp_path):
    before = _open_fds()
    logs = [ShapeLog(tmp_path / str(i), 1000) for i in range(50)]
    for i, log in enumerate(logs):
        log.append_transaction(100 + i, [(0, b'{"n":1}')])
        log.write_pending()
        log.sync()
        log.publish()
    assert _open_fds() == before
    assert logs[0].read(BEFORE_ALL, logs[0].last_offset) == b',{"n":1}'
    for log in logs:
        log.close()
    assert _open_fds() == before
