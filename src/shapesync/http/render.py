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
    """A streamed JSON array over the snapshot file's blocks, then the log slice: ``[``
    replaces the first leading comma, ``]`` ends the log slice. ``aclose`` releases the
    source whether or not the body was iterated."""

    def __init__(self, source: SnapshotAndLog) -> None:
        self.source = source

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        first = True
        async for block in self.source.snapshot_blocks():
            yield (b"[" + block[1:]) if first else block
            first = False
        log_bytes = self.source.log_bytes
        yield (b"[" + log_bytes[1:] + b"]") if first else (log_bytes + b"]")

    async def aclose(self) -> None:
        await self.source.aclose()
