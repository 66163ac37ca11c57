"""Electric 0.7 message bodies: stored items framed as a JSON array.

Stored items are runs of ``,{item}`` (leading commas, see ``storage``), so a body is ``[``
+ the bytes from the second one on + ``]``, with the ``up-to-date`` control message
appended when the response reaches the end of the log.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

UP_TO_DATE = b'{"headers":{"control":"up-to-date"}}'
PIECE_BYTES = 256 * 1024  # most a streamed body holds in memory at once


def json_array(items: bytes, up_to_date: bool) -> bytes:
    """Stored items as a JSON array, ending with up-to-date if asked."""
    tail = items + b"," + UP_TO_DATE if up_to_date else items
    return b"[" + tail[1:] + b"]"


def must_refetch_body(reason: str) -> list:
    """A 409's body. ``reason`` is an extra field for people reading responses; clients
    only look at the control header."""
    return [{"headers": {"control": "must-refetch"}, "reason": reason or "the shape was removed"}]


class ItemSource(Protocol):
    """Stored items (``,{item}...``) read in bounded pieces from files of its own."""

    def pieces(self, piece: int) -> AsyncIterator[bytes]: ...
    async def aclose(self) -> None: ...


class JsonArrayBody:
    """A JSON array streamed from stored items in pieces of at most PIECE_BYTES (so a slow
    client holds one piece, not a whole chunk): ``[`` replaces the first leading comma,
    ``tail`` (``,{control message}`` or nothing) and ``]`` end it. ``aclose`` releases the
    source whether or not the body was iterated."""

    def __init__(self, source: ItemSource, tail: bytes = b"") -> None:
        self.source = source
        self.tail = tail

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        first = True
        async for data in self.source.pieces(PIECE_BYTES):
            yield (b"[" + data[1:]) if first else data
            first = False
        yield (b"[" + self.tail[1:] + b"]") if first else (self.tail + b"]")

    async def aclose(self) -> None:
        await self.source.aclose()


def json_array_length(items_length: int, up_to_date: bool) -> int:
    """``len(json_array(items, up_to_date))`` from the items' length alone."""
    content = items_length + (len(UP_TO_DATE) + 1 if up_to_date else 0)
    return max(content - 1, 0) + 2
