"""Where replicated transactions enter the shapes of one database.

``pg.replication`` drives it: ``apply`` each committed transaction (in commit order),
``relation`` for each schema message, and ``flush`` before it acknowledges a position to
Postgres. Items are buffered per shape by ``apply``; ``flush`` writes and fsyncs every
shape that got some (one fsync per shape covers a whole batch), and only then publishes
them to readers and wakes their long-polls.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from shapesync.changes import Relation, Transaction
from shapesync.shapes.consumer import Truncated
from shapesync.shapes.registry import ShapeRegistry
from shapesync.shapes.shape import Shape

log = logging.getLogger(__name__)
VISIBILITY_WAIT_S = 30.0  # longest replication waits for a new shape's snapshot to begin


class StorageFailure(OSError):
    """A flush could not make every shape log durable: no position may be confirmed."""


class ShapeSink:
    def __init__(self, registry: ShapeRegistry,
                 on_relation: Callable[[Relation], None] = lambda relation: None,
                 on_stalled: Callable[[Shape, str], None] | None = None) -> None:
        self.registry = registry
        self.on_relation = on_relation
        # how to drop a shape whose snapshot never reported its visibility
        self.on_stalled = on_stalled or self.remove
        self._dirty: set[Shape] = set()
        self.failing = False  # the last flush could not write some shape's log

    async def apply(self, txn: Transaction) -> None:
        for shape in self.registry.for_tables(txn.relations_touched):
            if shape.gone_reason:
                continue
            if shape.visibility is None and not await self._visibility(shape):
                continue
            assert shape.visibility is not None
            items = shape.consumer.items(txn, shape.visibility, shape.storage.last_tx)
            if isinstance(items, Truncated):
                self.remove(shape, "the table was truncated")
            elif items:
                shape.storage.append_transaction(txn.commit_lsn, items)
                self._dirty.add(shape)

    async def _visibility(self, shape: Shape) -> bool:
        """Wait (bounded) for a new shape's snapshot to say what it contains: until then
        its transactions cannot be sorted out. A snapshot stuck before that fails this shape
        only; replication goes on."""
        try:
            return await asyncio.wait_for(shape.wait_visibility(), VISIBILITY_WAIT_S)
        except TimeoutError:
            log.error("shape %s: its snapshot did not start within %.0f s: removing it",
                      shape.id, VISIBILITY_WAIT_S)
            self.on_stalled(shape, "its snapshot did not start in time")
            return False

    def relation(self, relation: Relation) -> None:
        """A table's schema may have changed: its shapes made for the old one go."""
        self.on_relation(relation)
        for shape in self.registry.outdated_by(relation):
            self.remove(shape, "the table's schema changed")

    def remove(self, shape: Shape, reason: str) -> None:
        """Remove a shape (clients get 409); its unflushed items are dropped with it."""
        self._dirty.discard(shape)
        self.registry.remove(shape, reason)


    @property
    def has_unflushed(self) -> bool:
        return bool(self._dirty)

    async def flush(self) -> None:
        dirty, self._dirty = self._dirty, set()
        for shape in dirty:
            shape.storage.write_pending()

        def sync_all() -> tuple[list[Shape], list[tuple[Shape, OSError]]]:
            synced, failed = [], []
            for shape in dirty:
                try:
                    shape.storage.sync()
                    synced.append(shape)
                except OSError as exc:
                    if not shape.gone_reason:  # (removed meanwhile: its files are gone)
                        failed.append((shape, exc))
            return synced, failed

        synced, failed = await asyncio.to_thread(sync_all)
        for shape in synced:
            shape.storage_failing = False
            shape.storage.publish()
            shape.notify()
        for shape, exc in [(s, e) for s, e in failed if isinstance(e, FileNotFoundError)]:
            # Its directory is gone: it can never be written again. Dropping it (clients
            # refetch) loses nothing, and the others go on.
            log.error("shape %s: its files are gone (%s): removing it", shape.id, exc)
            self.remove(shape, "the shape's files were removed")
            failed.remove((shape, exc))
        if failed:
            # Nothing of theirs is published or may be acknowledged: they stay pending and
            # the next flush retries from their last durable entry (a disk that filled up
            # and was freed again loses nothing). Their requests get 503 meanwhile.
            for shape, _ in failed:
                shape.storage_failing = True
                self._dirty.add(shape)
            self.failing = True
            raise StorageFailure(
                f"{len(failed)} shape log(s) could not be written, e.g. shape {failed[0][0].id}: "
                f"{failed[0][1]}")
        self.failing = False
