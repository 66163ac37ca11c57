"""Errors raised by the where-clause compiler and evaluator."""

from __future__ import annotations


class WhereError(ValueError):
    """A where clause that cannot be accepted.

    ``message`` is human readable and names the offending construct; ``location`` is the
    0-based character offset in the clause, when known.
    """

    def __init__(self, message: str, location: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.location = location

    def __str__(self) -> str:
        if self.location is not None:
            return f"At location {self.location}: {self.message}"
        return self.message


class EvalError(Exception):
    """A runtime error while evaluating a clause on a row (Postgres would raise too)."""
