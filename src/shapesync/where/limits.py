"""Resource limits on clauses: what one client-supplied clause may cost the server.

A clause is compiled (and its constant parts evaluated) at request time on the event
loop, and evaluated on every replicated row inside the replication loop, so neither may
take unbounded time or memory:

- the parse tree is limited in nesting depth and number of nodes (:data:`MAX_DEPTH`,
  :data:`MAX_NODES`);
- every string or array a clause builds is limited in size (:data:`MAX_RESULT_SIZE`
  characters or elements): a bigger one is a :class:`LimitError` naming the construct;
- every evaluation has a work :class:`Budget`: the operations whose cost grows with the
  size of their values (string and array building, LIKE, array containment, big numerics,
  array columns' parsing) charge it about one unit per character / element they process,
  and going over it is a :class:`LimitError`. One budget covers the whole request-time
  compilation (:data:`REQUEST_BUDGET`: constant folding and building the matchers of
  constant patterns), another each row evaluation (:data:`ROW_BUDGET`).

A :class:`LimitError` while compiling means the clause itself is hostile (a 400); on a row
it is an evaluation error like any other: the row is not in the shape.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import EvalError

MAX_RESULT_SIZE = 1 << 20  # characters of a built string / elements of a built array
MAX_RESULT_TEXT = "1 MiB"  # how the limit is named in messages
MAX_DEPTH = 100  # nested expressions in the parse tree
MAX_NODES = 10_000  # expression nodes in the parse tree
REQUEST_BUDGET = 8 << 20  # work units for compiling one clause (request time)
ROW_BUDGET = 64 << 20  # work units for evaluating the clause on one row
REGEX_UNIT_COST = 1024  # units per pattern character compiled into a regular expression


class LimitError(EvalError):
    """A size or work limit of :mod:`limits` exceeded."""


def too_big(what: str) -> LimitError:
    return LimitError(f"{what} result exceeds {MAX_RESULT_TEXT}")


def check_size(size: int, what: str) -> None:
    """Raise when a result of ``size`` characters / elements is over the limit."""
    if size > MAX_RESULT_SIZE:
        raise too_big(what)


class Budget:
    """Work units left for one evaluation (``left`` is reset by the evaluation's owner)."""

    __slots__ = ("limit", "left", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.left = limit
        self.used = False  # whether any closure charges it (set while compiling)

    def spend(self, units: int, what: str) -> None:
        self.left -= units
        if self.left < 0:
            raise exhausted(what)


def exhausted(what: str) -> LimitError:
    return LimitError(f"where clause exceeds its work limit (at {what})")


_local = threading.local()


@contextmanager
def request_scope(budget: Budget) -> Iterator[Budget]:
    """Charge the request-time work done in this block (in this thread) to ``budget``."""
    prev = getattr(_local, "request", None)
    _local.request = budget
    try:
        yield budget
    finally:
        _local.request = prev


def request_budget() -> Budget | None:
    """The budget of the compilation in progress in this thread, if any."""
    return getattr(_local, "request", None)


def charge_request(units: int, what: str) -> None:
    """Charge compile-time work (e.g. a constant pattern's matcher) to the request."""
    budget = request_budget()
    if budget is not None:
        budget.spend(units, what)
