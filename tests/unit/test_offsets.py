"""Log offsets: the request grammar, ordering and keys."""

from __future__ import annotations

import pytest

from shapesync.offsets import BEFORE_ALL, FIRST, LogOffset, int_to_lsn, lsn_to_int, parse_offset


@pytest.mark.parametrize("text,expected", [
    ("-1", BEFORE_ALL), ("0_0", FIRST), ("26800584_4", LogOffset(26800584, 4)),
    ("0_02", LogOffset(0, 2)), ("+5_+1", LogOffset(5, 1)),
])
def test_parse_offset(text, expected):
    assert parse_offset(text) == expected


@pytest.mark.parametrize("text", ["10", "1_2_3", "1_2 ", "10_32.1", "abc", "-5_0", "0_-1", "", "-2"])
def test_parse_offset_rejects(text):
    with pytest.raises(ValueError):
        parse_offset(text)


def test_offset_order_text_and_key():
    offsets = [BEFORE_ALL, FIRST, LogOffset(5, 0), LogOffset(5, 3), LogOffset(6, 0)]
    assert sorted(reversed(offsets)) == offsets
    assert [o.key for o in offsets] == sorted(o.key for o in offsets)
    assert all(LogOffset.from_key(o.key) == o for o in offsets[1:])
    assert str(BEFORE_ALL) == "-1" and str(LogOffset(5, 3)) == "5_3"
    assert lsn_to_int("0/16B3748") == 23803720 and int_to_lsn(23803720) == "0/16B3748"
