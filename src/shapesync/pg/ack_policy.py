"""When to make received transactions durable, and which position to confirm: pure.

Durability rule: the slot's flushed LSN is reported only after the sink's ``flush()``
returned, i.e. after every shape log the acknowledged transactions touched is fsynced.
After a crash Postgres replays everything after the last confirmed position, and shapes
skip transactions they already hold, so replay never duplicates a log entry.

Batching: transactions are applied as they arrive and flushed as a group when the socket
has nothing more to read, or after ``max_transactions`` / ``max_seconds``, so one fsync
per shape covers many small transactions. With nothing to flush, a status is still sent
every ``status_interval`` seconds and whenever the server asks for one, also while the
stream never drains (``busy``: checked after every message).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class AckPolicy:
    max_transactions: int = 2000
    max_seconds: float = 0.05
    status_interval: float = 10.0
    confirmed: int = 0  # the LSN last reported as flushed (0: none yet)
    _unflushed: int = 0
    _pending_lsn: int = 0
    _batch_started: float = 0.0
    _wal_end_seen: int = 0
    _last_status: float = 0.0

    def start(self, now: float) -> None:
        """A new stream begins. Transactions applied on the previous one but not flushed
        stay pending (the sink still holds them: the next confirmation flushes them
        first); the old stream's WAL end says nothing about the new one."""
        self._wal_end_seen = 0
        self._last_status = now

    @property
    def needs_flush(self) -> bool:
        """Transactions were applied since the last flush."""
        return self._unflushed > 0

    def transaction(self, end_lsn: int, now: float) -> bool:
        """A transaction was applied; True when the batch is full and must be flushed now."""
        self._pending_lsn = end_lsn
        if self._unflushed == 0:
            self._batch_started = now
        self._unflushed += 1
        return (self._unflushed >= self.max_transactions
                or now - self._batch_started > self.max_seconds)

    def keepalive(self, wal_end: int, reply_requested: bool) -> bool:
        """A keepalive from the server; True when a status must be sent now."""
        self._wal_end_seen = max(self._wal_end_seen, wal_end)
        return reply_requested

    def busy(self, now: float) -> bool:
        """A message was handled and more may be buffered (``drained`` is not consulted
        while the stream keeps us busy); True when a flush or status is due anyway: the
        applied batch is older than ``max_seconds`` (e.g. a long transaction is arriving
        after it), or no status went out for ``status_interval``."""
        return ((self._unflushed > 0 and now - self._batch_started > self.max_seconds)
                or now - self._last_status > self.status_interval)

    def drained(self, now: float) -> bool:
        """Nothing more to read; True when we should flush (or just report) before waiting."""
        return self._unflushed > 0 or now - self._last_status > self.status_interval

    def flushed(self, in_transaction: bool, now: float) -> int:
        """The sink flushed whatever ``needs_flush`` asked for; the position to report
        (0: nothing yet). With nothing applied since the last flush and no transaction
        open, the server's WAL end from its keepalives is safe to confirm: only later
        commits can still arrive."""
        if self._unflushed:
            self.confirmed = max(self.confirmed, self._pending_lsn)
        elif not in_transaction:
            self.confirmed = max(self.confirmed, self._wal_end_seen)
        self._unflushed = 0
        self._last_status = now
        return self.confirmed
