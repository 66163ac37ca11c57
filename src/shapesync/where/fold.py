"""Plan-time simplification, as Postgres' eval_const_expressions does it.

It matters for semantics, not just speed: Postgres evaluates constant sub-expressions
while planning (so ``1/0`` anywhere is an error even if never reached), folds a strict
operator with a NULL constant argument to NULL without evaluating the other arguments,
and simplifies ``x OR true`` to true (and ``x AND false`` to false) without evaluating
``x``. Doing the same keeps errors and NULLs identical to Postgres'.
"""

from __future__ import annotations

from typing import TypeGuard

from .errors import EvalError, WhereError
from .evaluate import compile_node
from .limits import REQUEST_BUDGET, Budget, request_budget
from .nodes import Const, Node, Op

# operators/functions that Postgres implements with strict functions
_STRICT = {"cmp", "arith", "neg", "abs", "dtarith", "concat", "cast", "like", "func",
           "arrayop"}


def _const_bool(n: Node) -> TypeGuard[Const]:
    return isinstance(n, Const) and n.type == "bool"


def fold(node: Node) -> Node:
    if not isinstance(node, Op):
        return node
    kind = node.kind
    if kind in ("and", "or"):
        return _fold_bool(node)
    if kind == "coalesce":
        return _fold_coalesce(node)
    node.args = [fold(a) for a in node.args]
    if kind in _STRICT and any(isinstance(a, Const) and a.value is None for a in node.args):
        return Const(node.type, node.loc, None)
    if all(isinstance(a, Const) for a in node.args):
        return _evaluate(node)
    return node


def _fold_coalesce(node: Op) -> Node:
    # arguments after the first non-NULL constant are dropped unsimplified
    args: list[Node] = []
    for a in node.args:
        a = fold(a)
        if isinstance(a, Const):
            if a.value is None:
                continue
            args.append(a)
            break
        args.append(a)
    if not args:
        return Const(node.type, node.loc, None)
    if len(args) == 1:
        return args[0]
    node.args = args
    return node


def _fold_bool(node: Op) -> Node:
    """simplify_and_arguments / simplify_or_arguments: flatten, simplify in order, stop
    at the first deciding constant (later arguments are never simplified)."""
    is_and = node.kind == "and"
    decisive = not is_and  # False decides AND, True decides OR
    pending = list(node.args)
    args: list[Node] = []
    have_null = False
    while pending:
        arg = pending.pop(0)
        if isinstance(arg, Op) and arg.kind == node.kind:
            pending[:0] = arg.args
            continue
        arg = fold(arg)
        if isinstance(arg, Op) and arg.kind == node.kind:
            pending[:0] = arg.args
            continue
        if _const_bool(arg):
            if arg.value is None:
                have_null = True
                continue
            if arg.value is decisive:
                return Const("bool", node.loc, decisive)
            continue
        args.append(arg)
    if have_null:
        args.append(Const("bool", node.loc, None))
    if not args:
        return Const("bool", node.loc, not decisive)
    if len(args) == 1:
        return args[0]
    node.args = args
    return node


def _evaluate(node: Op) -> Node:
    """The value of a constant expression; its work is charged to the request's budget
    (a fresh one when folding outside :func:`compile_where`)."""
    budget = request_budget() or Budget(REQUEST_BUDGET)
    try:
        value = compile_node(node, budget)({})
    except EvalError as exc:
        raise WhereError(str(exc), node.loc) from None
    return Const(node.type, node.loc, value)
