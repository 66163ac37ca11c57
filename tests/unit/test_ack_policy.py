"""AckPolicy: when replication flushes a batch, and which LSN it confirms to Postgres.

The policy is driven as ``pg/replication.py`` drives it: ``transaction()`` after each
applied transaction, ``keepalive()`` for each keepalive, ``busy()`` after each message
handled, ``drained()`` when the socket has nothing more, and ``flushed()`` (after the sink flushed if ``needs_flush``) to get the
position to report.
"""

from __future__ import annotations

from shapesync.pg.ack_policy import AckPolicy


def _policy(**kwargs) -> AckPolicy:
    policy = AckPolicy(**kwargs)
    policy.start(0.0)
    return policy


# -- flushing a batch -------------------------------------------------------------------


def test_nothing_to_flush_before_any_transaction():
    policy = _policy()
    assert not policy.needs_flush
    assert not policy.drained(0.01)


def test_batch_is_flushed_when_the_socket_drains():
    policy = _policy(max_transactions=100, max_seconds=10.0)
    assert not policy.transaction(100, now=0.0)
    assert not policy.transaction(200, now=0.001)
    assert policy.needs_flush
    assert policy.drained(0.002)


def test_batch_is_flushed_at_max_transactions():
    policy = _policy(max_transactions=3, max_seconds=10.0)
    assert not policy.transaction(100, now=0.0)
    assert not policy.transaction(200, now=0.0)
    assert policy.transaction(300, now=0.0)


def test_batch_is_flushed_after_max_seconds():
    policy = _policy(max_transactions=1000, max_seconds=0.05)
    assert not policy.transaction(100, now=0.0)
    assert not policy.transaction(200, now=0.05)  # exactly max_seconds: not yet
    assert policy.transaction(300, now=0.06)


def test_batch_age_counts_from_its_first_transaction():
    policy = _policy(max_transactions=1000, max_seconds=0.05)
    policy.transaction(100, now=0.0)
    policy.flushed(in_transaction=False, now=1.0)
    # A new batch starts at 5.0, however long ago the previous one began.
    assert not policy.transaction(200, now=5.0)
    assert not policy.transaction(300, now=5.04)
    assert policy.transaction(400, now=5.06)


def test_flush_empties_the_batch():
    policy = _policy(max_transactions=2)
    policy.transaction(100, now=0.0)
    policy.flushed(in_transaction=False, now=0.0)
    assert not policy.needs_flush
    assert not policy.transaction(200, now=0.0)  # the count restarted
    assert policy.transaction(300, now=0.0)


# -- the confirmed position -------------------------------------------------------------


def test_applied_transaction_is_confirmed_only_after_a_flush():
    policy = _policy()
    policy.transaction(100, now=0.0)
    policy.transaction(250, now=0.0)
    assert policy.confirmed == 0
    assert policy.flushed(in_transaction=False, now=0.0) == 250
    assert policy.confirmed == 250


def test_nothing_to_confirm_before_anything_was_received():
    policy = _policy()
    assert policy.flushed(in_transaction=False, now=0.0) == 0


def test_keepalive_wal_end_is_confirmed_when_idle():
    policy = _policy()
    policy.keepalive(500, reply_requested=False)
    assert policy.flushed(in_transaction=False, now=0.0) == 500


def test_keepalive_wal_end_is_not_confirmed_with_unflushed_transactions():
    policy = _policy()
    policy.transaction(100, now=0.0)
    policy.keepalive(500, reply_requested=False)
    # The batch's end LSN, not the keepalive's: what lies between is not flushed yet.
    assert policy.flushed(in_transaction=False, now=0.0) == 100
    # Once that batch is flushed and nothing is open, the WAL end is safe.
    assert policy.flushed(in_transaction=False, now=0.0) == 500


def test_keepalive_wal_end_is_not_confirmed_inside_an_open_transaction():
    policy = _policy()
    policy.keepalive(500, reply_requested=False)
    assert policy.flushed(in_transaction=True, now=0.0) == 0
    assert policy.flushed(in_transaction=False, now=0.0) == 500


def test_keepalive_remembers_the_highest_wal_end():
    policy = _policy()
    policy.keepalive(500, reply_requested=False)
    policy.keepalive(400, reply_requested=False)
    assert policy.flushed(in_transaction=False, now=0.0) == 500


def test_confirmed_never_goes_backwards():
    policy = _policy()
    policy.keepalive(500, reply_requested=False)
    assert policy.flushed(in_transaction=False, now=0.0) == 500
    policy.transaction(300, now=0.0)  # e.g. a replayed transaction below the WAL end
    assert policy.flushed(in_transaction=False, now=0.0) == 500
    assert policy.confirmed == 500


def test_flushed_keeps_reporting_the_last_confirmed_position():
    policy = _policy()
    policy.transaction(100, now=0.0)
    policy.flushed(in_transaction=False, now=0.0)
    assert policy.flushed(in_transaction=True, now=1.0) == 100


# -- status messages --------------------------------------------------------------------


def test_reply_requested_forces_a_status():
    policy = _policy()
    assert policy.keepalive(100, reply_requested=True)
    assert not policy.keepalive(100, reply_requested=False)


def test_status_is_sent_every_status_interval_when_idle():
    policy = _policy(status_interval=10.0)
    assert not policy.drained(5.0)
    assert not policy.drained(10.0)  # exactly the interval: not yet
    assert policy.drained(10.5)
    policy.flushed(in_transaction=False, now=10.5)  # the status was sent
    assert not policy.drained(15.0)
    assert policy.drained(20.6)


def test_a_flush_restarts_the_status_interval():
    policy = _policy(status_interval=10.0)
    policy.transaction(100, now=8.0)
    policy.flushed(in_transaction=False, now=9.0)
    assert not policy.drained(12.0)
    assert policy.drained(19.5)


def test_status_is_sent_every_status_interval_while_never_drained():
    """A stream that always has more buffered (a backlog, a long transaction) never
    reaches ``drained``: ``busy`` still asks for a status every status_interval."""
    policy = _policy(status_interval=10.0)
    policy.keepalive(100, reply_requested=False)
    assert not policy.busy(5.0)
    assert not policy.busy(10.0)  # exactly the interval: not yet
    assert policy.busy(10.5)
    assert policy.flushed(in_transaction=True, now=10.5) == 0  # inside a transaction
    assert not policy.busy(20.0)
    assert policy.busy(20.6)
    assert policy.flushed(in_transaction=False, now=20.6) == 100


def test_busy_flushes_a_batch_older_than_max_seconds():
    """Transactions applied before a long one must not wait for its end to be flushed."""
    policy = _policy(max_seconds=0.05, status_interval=10.0)
    assert not policy.transaction(100, now=0.0)
    assert not policy.busy(0.05)  # exactly max_seconds: not yet
    assert policy.busy(0.06)
    assert policy.needs_flush
    assert policy.flushed(in_transaction=True, now=0.06) == 100
    assert not policy.busy(0.2)  # nothing unflushed, status just sent


def test_busy_does_not_ask_for_a_status_without_reason():
    policy = _policy(max_seconds=0.05, status_interval=10.0)
    policy.transaction(100, now=0.0)
    policy.flushed(in_transaction=False, now=0.0)
    assert not policy.busy(5.0)


# -- reconnecting -----------------------------------------------------------------------


def test_start_restarts_the_status_interval():
    policy = _policy(status_interval=10.0)
    assert policy.drained(50.0)
    policy.start(50.0)
    assert not policy.drained(55.0)
    assert policy.drained(60.5)


def test_start_after_a_reconnect_keeps_the_confirmed_position():
    policy = _policy()
    policy.transaction(100, now=0.0)
    policy.flushed(in_transaction=False, now=0.0)
    policy.start(1.0)
    assert policy.confirmed == 100
    # Postgres replays from the confirmed position: a replayed transaction is a new batch.
    assert not policy.needs_flush
    policy.transaction(100, now=1.0)
    assert policy.needs_flush
    assert policy.flushed(in_transaction=False, now=1.0) == 100


def test_start_keeps_transactions_of_the_previous_stream_pending():
    """The sink still holds them unflushed: the next confirmation must flush them, and
    then confirms their end LSN (Postgres replays them, the consumer skips the replay)."""
    policy = _policy()
    policy.transaction(100, now=0.0)
    policy.start(1.0)
    assert policy.needs_flush
    assert policy.drained(1.0)
    assert policy.flushed(in_transaction=False, now=1.0) == 100


def test_wal_end_is_not_confirmed_over_transactions_left_unflushed_by_a_dropped_stream():
    policy = _policy()
    policy.transaction(200, now=0.0)  # applied, not flushed yet
    policy.keepalive(300, reply_requested=False)  # then the connection drops
    policy.start(1.0)
    # The new stream's first message asks for a reply; replication.py's _confirm
    # flushes the sink only when needs_flush.
    assert policy.keepalive(100, reply_requested=True)
    # Either the sink is flushed first, or the position reported must not cover 200.
    assert policy.needs_flush or policy.flushed(in_transaction=False, now=1.0) < 200
