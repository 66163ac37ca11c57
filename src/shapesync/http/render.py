"""Electric 0.7 message bodies: stored items framed as a JSON array.

Stored items are runs of ``,{item}`` (leading commas, see ``storage``), so a body is ``[``
+ the bytes from the second one on + ``]``, with the ``up-to-date`` control message
appended when the response reaches the end of the log.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from shapesync.storage.shape_storage import SnapshotAndLog

UP_TO_DATE = b'{"headers":{"control":"up-to-date"}}'


def json_array(items: bytes, up_to_date: bool) -> bytes:
    """Stored items as a JSON array, ending with up-to-date if asked."""
    tail = items + b"," + UP_TO_DATE if up_to_date else items
    return b"[" + tail[1:] + b"]"


def must_refetch_body(reason: str) -> list:
    """A 409's body. ``reason`` is an extra field for people reading responses; clients
    only look at the control header."""
    return [{"headers": {"control": "must-refetch"}, "reason": reason or "the shape was removed"}]


class JsonArrayBody:
    """A streamed JSON array over stored blocks (snapshot file, then log): ``[`` replaces
    the first block's leading comma, ``]`` ends the last one. ``aclose`` releases the
    source whether or not the body was iterated."""

    def __init__(self, source: SnapshotAndLog) -> None:
        self.source = source

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        first = True
        held: bytes | None = None
        async for block in self.source:
            if held is not None:
                yield held
            if first and block:
                block = b"[" + block[1:]
                first = False
            held = block
        if first:
            yield b"[" + (held or b"")[1:] + b"]"
        else:
            yield (held or b"") + b"]"

    async def aclose(self) -> None:
        await self.source.aclose()
