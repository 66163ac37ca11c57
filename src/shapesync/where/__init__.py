"""Where-clause compiler: a Postgres boolean expression over one table's columns.

``compile_where(text, table)`` parses the clause with Postgres' own grammar (pglast),
type-checks it with Postgres' resolution rules, and returns a :class:`CompiledWhere` with

- ``sql``: the clause re-rendered from the parse tree (safe to splice after ``WHERE``);
- ``matches(row)``: evaluation on a row of Postgres output text, with Postgres semantics;
- ``columns``: the columns the clause references.

Modules, in dependency order (each imports only modules listed before it):

- ``errors``: :class:`WhereError` (clause rejected) and :class:`EvalError` (evaluation);
- ``limits``: what one clause may cost: parse-tree size, built values' size, work budgets;
- ``values``: Postgres text <-> Python values per type (input / output functions, arrays);
- ``numeric_power``: ``numeric ^ numeric`` computed as Postgres does;
- ``ops``: Postgres semantics on values: comparison, arithmetic, casts, date/time, LIKE;
- ``nodes``: the typed tree (Node, Const, Col, Op) and the rules on type names;
- ``coerce``: implicit coercions and explicit casts between tree nodes;
- ``arrays``: array subscripts, slices, concatenation, size functions (values and typing);
- ``timezones``: ``AT TIME ZONE`` / timezone() (zone names, conversion and typing);
- ``functions``: the registry of supported functions (signatures and implementations);
- ``parse``: pglast parse tree -> typed tree (operators, literals, casts, calls);
- ``evaluate``: typed tree -> closures over a row;
- ``fold``: plan-time constant folding, as Postgres' planner does it (uses ``evaluate``);
- ``render``: typed tree -> SQL text.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from ..tables import TableInfo
from .errors import EvalError, WhereError
from .evaluate import compile_charged
from .fold import fold
from .limits import REQUEST_BUDGET, ROW_BUDGET, Budget, request_scope
from .parse import Compiler
from .render import render

log = logging.getLogger(__name__)
ERROR_LOG_INTERVAL = 60.0  # seconds between two reports of one clause's evaluation errors

__all__ = ["CompiledWhere", "EvalError", "WhereError", "compile_where"]


class CompiledWhere:
    """A where clause compiled once; ``matches`` is cheap per row."""

    __slots__ = ("text", "sql", "columns", "_fn", "_budget", "_errors", "_logged_at")

    def __init__(self, text: str, sql: str, columns: frozenset[str],
                 fn: Callable[[dict[str, str | None]], Any], budget: Budget) -> None:
        self.text = text
        self.sql = sql
        self.columns = columns
        self._fn = fn
        self._budget = budget  # the work limit of one evaluation, reset for each row
        self._errors = 0  # evaluation errors not yet reported
        self._logged_at = -ERROR_LOG_INTERVAL

    def matches(self, row: dict[str, str | None]) -> bool:
        """True only when the clause is TRUE for ``row`` (FALSE, NULL or an error: False)."""
        budget = self._budget
        budget.left = budget.limit
        try:
            return self._fn(row) is True
        except Exception as exc:  # noqa: BLE001 - any evaluation error means "not in shape"
            self._report(exc)
            return False

    def _report(self, exc: Exception) -> None:
        """Log evaluation errors, at most once per interval per clause: a clause that fails
        on every row of a big table must not flood the log."""
        self._errors += 1
        now = time.monotonic()
        if now - self._logged_at >= ERROR_LOG_INTERVAL:
            log.warning("where clause %r failed on %d row(s) (treated as not matching), "
                        "latest: %s", self.text, self._errors, exc)
            self._errors = 0
            self._logged_at = now

    def __repr__(self) -> str:
        return f"CompiledWhere({self.text!r})"


def compile_where(text: str, table: TableInfo) -> CompiledWhere:
    """Parse and type-check ``text``; raises :class:`WhereError`."""
    if not isinstance(text, str):
        raise WhereError("where clause must be a string")
    compiler = Compiler(text, table)
    budget = Budget(ROW_BUDGET)
    try:
        with request_scope(Budget(REQUEST_BUDGET)):
            tree = fold(compiler.parse())
            sql = render(tree)
            fn = compile_charged(tree, budget)
    except WhereError:
        raise
    except EvalError as exc:
        raise WhereError(str(exc), None) from None
    except RecursionError:
        raise WhereError("where clause is nested too deeply", None) from None
    return CompiledWhere(text, sql, frozenset(compiler.used), fn, budget)
