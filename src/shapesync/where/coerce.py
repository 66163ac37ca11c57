"""Type conversions in the typed tree: how a node becomes a node of another type.

``coerce`` applies Postgres' implicit conversions (an untyped literal takes the target
type, an implicit cast becomes an explicit ``cast`` node), ``make_cast`` builds an
explicit cast, ``unify`` resolves the common type of comparison-like contexts. Every
builder of the tree (operators, functions, arrays, time zones) goes through these, so
evaluate.py and render.py never resolve types again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import EvalError, WhereError
from .nodes import Const, Node, Op, common_type, is_unknown, sql_type
from .ops import cast_fn, implicit_ok, numeric_typmod, varchar_typmod
from .values import PgArray, display, elem_of, input_fn, is_array


def coerce(n: Node, target: str, message: str | None = None, loc: int | None = None) -> Node:
    """Implicit coercion (unknown literal -> target, or an implicit cast); raises
    ``message`` (or a generic one) at ``loc`` (or the node's) when there is none."""
    if n.type == target:
        return n
    if is_unknown(n):
        return literal_as(n, target)
    if n.type.startswith("enum:"):
        pass  # enums only meet their own labels (no implicit casts to text)
    elif implicit_ok(n.type, target) or (is_array(n.type) and is_array(target)
                                         and implicit_ok(elem_of(n.type), elem_of(target))):
        return make_cast(n, target, n.loc)
    raise WhereError(
        message or f"cannot use {display(n.type)} where {display(target)} is required",
        n.loc if loc is None else loc,
    )


def literal_as(n: Node, target: str) -> Const:
    """An untyped literal (or NULL) read as a value of type ``target``."""
    assert isinstance(n, Const)
    if n.value is None:
        return Const(target, n.loc, None)
    if is_array(target) and elem_of(target).startswith(("enum:", "opaque:")):
        raise WhereError(f"arrays of type {display(elem_of(target))} are not supported", n.loc)
    if target.startswith("enum:"):
        return Const(target, n.loc, n.value, lit=n.lit)
    if target.startswith("opaque:"):
        raise WhereError(f"values of type {display(target)} are not supported", n.loc)
    try:
        value = input_fn(target)(n.value)
    except EvalError as exc:
        raise WhereError(f"invalid syntax for type {display(target)}: {n.value} ({exc})",
                         n.loc) from None
    return Const(target, n.loc, value, lit=n.lit)


def make_cast(n: Node, target: str, loc: int | None, typmod: tuple[int, ...] = (),
              sqltype: str | None = None) -> Op:
    """An explicit ``CAST(n AS target[(typmod)])`` node."""
    if n.type.startswith("opaque:") or target.startswith("opaque:"):
        raise WhereError(f"unknown cast from type {display(n.type)} to type {display(target)}", loc)
    fn = cast_fn(n.type, target)
    if fn is None:
        raise WhereError(f"unknown cast from type {display(n.type)} to type {display(target)}", loc)
    if typmod:
        mod = typmod_fn(target, typmod)
        if mod is not None:
            inner = fn
            fn = (lambda v, a=inner, b=mod: b(a(v)))  # noqa: E731
    return Op(target, loc, "cast", [n], {"fn": fn, "sqltype": sqltype or sql_type(target)})


def typmod_fn(target: str, typmod: tuple[int, ...]) -> Callable[[Any], Any] | None:
    """The length / precision limit of ``target(typmod)`` applied to a value of that type
    (None when the type has no modifier we enforce)."""
    base = elem_of(target) if is_array(target) else target
    if base == "numeric":
        fn = numeric_typmod(*typmod)
    elif base in ("varchar", "bpchar"):
        fn = varchar_typmod(typmod[0], base == "bpchar")
    else:
        return None
    if is_array(target):
        return lambda a: PgArray(a.dims, a.lbs, tuple(None if x is None else fn(x) for x in a.items))
    return fn


def unify(nodes: list[Node], what: str, loc: int | None) -> tuple[str, list[Node]]:
    """Postgres' common-type resolution for comparison-like contexts: the common type and
    the nodes coerced to it (only untyped literals: text)."""
    known = [n.type for n in nodes if not is_unknown(n)]
    if not known:
        t = "text"
    else:
        t = known[0]
        for other in known[1:]:
            c = common_type(t, other)
            if c is None:
                if is_array(t) and is_array(other):
                    raise WhereError(
                        f"Could not select an operator overload: {what} types "
                        f"{display(t)} and {display(other)} cannot be matched", loc)
                raise WhereError(
                    f"{what} types {display(t)} and {display(other)} cannot be matched", loc)
            t = c
    return t, [coerce(n, t, loc=loc) for n in nodes]
