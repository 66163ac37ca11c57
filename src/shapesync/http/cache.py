"""Caching rules: ETags, If-None-Match, cache-control values and the live cursor,
as the reference server sets them (so CDNs and the official clients behave the same)."""

from __future__ import annotations

import math
import random
import time

INITIAL_CACHE_CONTROL = "public, max-age=604800, s-maxage=3600, stale-while-revalidate=2629746"
LIVE_CACHE_CONTROL = "public, max-age=5, stale-while-revalidate=5"
CURSOR_EPOCH = 1728432000  # 2024-10-09T00:00:00Z


def catch_up_cache_control(max_age: int, stale_age: int) -> str:
    return f"public, max-age={max_age}, stale-while-revalidate={stale_age}"


def etag(shape_id: str, request_offset: str, chunk_end: str) -> str:
    return f"{shape_id}:{request_offset}:{chunk_end}"


def if_none_match(values: list[str], tag: str) -> bool:
    for value in values:
        for item in value.split(","):
            if item.strip().strip('"') == tag:
                return True
    return False


def next_cursor(long_poll_timeout_s: float, previous: str | None, now: float | None = None) -> str:
    """End of the current long-poll-sized time bucket; never the cursor the client sent."""
    bucket = int(long_poll_timeout_s)
    if bucket == 0:
        cursor = 0
    else:
        diff = int((time.time() if now is None else now) - CURSOR_EPOCH)
        cursor = math.ceil(diff / bucket) * bucket
    if previous is not None and previous == str(cursor):
        cursor += random.randint(1, 100_000)
    return str(cursor)
