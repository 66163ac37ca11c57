"""Caching rules: ETag format, If-None-Match matching, the live cursor."""

from __future__ import annotations

import pytest

from shapesync.http import cache

EPOCH = cache.CURSOR_EPOCH


def test_etag_is_shape_request_offset_and_chunk_end_unquoted():
    assert cache.etag("3833821-1721812114261", "-1", "0_0") == "3833821-1721812114261:-1:0_0"
    assert cache.etag("test-shape-id", "50_0", "100_0") == "test-shape-id:50_0:100_0"


@pytest.mark.parametrize("header_values,matches", [
    (["s:-1:0_0"], True),
    (['"s:-1:0_0"'], True),
    (['"other", "s:-1:0_0"'], True),  # any element of a list
    (["other", ' "s:-1:0_0" '], True),  # any of several headers, trimmed
    (["W/\"s:-1:0_0\""], False),  # no weak-validator handling, as the reference
    (["s:-1:0_1"], False),
    ([""], False),
    ([], False),
])
def test_if_none_match(header_values, matches):
    assert cache.if_none_match(header_values, "s:-1:0_0") is matches


@pytest.mark.parametrize("elapsed,expected", [
    (0, 0), (1, 20), (19, 20), (20, 20), (21, 40), (1_000_001, 1_000_020),
])
def test_cursor_is_the_end_of_the_current_timeout_bucket(elapsed, expected):
    assert cache.next_cursor(20, None, now=EPOCH + elapsed + 0.9) == str(expected)


def test_cursor_is_zero_without_a_timeout():
    assert cache.next_cursor(0.5, None, now=EPOCH + 12345) == "0"


def test_cursor_never_repeats_the_one_the_client_sent():
    now = EPOCH + 33
    bucket_end = cache.next_cursor(20, None, now=now)
    assert bucket_end == "40"
    assert cache.next_cursor(20, "20", now=now) == "40"  # a different cursor: no change
    for _ in range(200):
        bumped = int(cache.next_cursor(20, "40", now=now))
        assert 41 <= bumped <= 40 + 100_000


def test_cache_control_values():
    assert cache.INITIAL_CACHE_CONTROL == (
        "public, max-age=604800, s-maxage=3600, stale-while-revalidate=2629746")
    assert cache.LIVE_CACHE_CONTROL == "public, max-age=5, stale-while-revalidate=5"
    assert cache.catch_up_cache_control(60, 300) == "public, max-age=60, stale-while-revalidate=300"


def test_cursor_and_etag_rules():
    assert cache.next_cursor(20, None, now=cache.CURSOR_EPOCH + 41) == "60"
    assert cache.next_cursor(20, None, now=cache.CURSOR_EPOCH + 40) == "40"
    assert cache.next_cursor(0, None) == "0"
    bumped = int(cache.next_cursor(20, "60", now=cache.CURSOR_EPOCH + 41))
    assert 61 <= bumped <= 100060
    assert cache.if_none_match(['"a:b:c", x'], "a:b:c")
    assert cache.if_none_match(["x, a:b:c"], "a:b:c")
    assert not cache.if_none_match(["W/a:b:c"], "a:b:c")
