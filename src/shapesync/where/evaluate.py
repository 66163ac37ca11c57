"""Typed tree -> nested Python closures ``f(row) -> value | None``.

``row`` maps column names to Postgres output text (or None). Column values are parsed only
when a closure that needs them runs; NULL is ``None`` everywhere (three-valued logic).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from decimal import Decimal

from .arrays import array_append, array_cat, array_prepend, get_element, get_slice
from .errors import EvalError
from .limits import (
    MAX_RESULT_SIZE,
    ROW_BUDGET,
    Budget,
    charge_request,
    check_size,
    exhausted,
    too_big,
)
from .nodes import Col, Const, Node, Op
from .ops import (
    arith,
    ascii_lower,
    cmp3,
    comparator,
    compile_like,
    date_minus_date,
    date_plus_int,
    eq_fn,
    interval_add,
    interval_div,
    interval_mul,
    interval_neg,
    interval_sub,
    time_minus_interval,
    time_plus_interval,
    ts_minus_interval,
    ts_minus_ts,
    ts_plus_interval,
)
from .values import STRING_TYPES, USEC_DAY, PgArray, check_ts, is_array, row_input_fn

_building = threading.local()  # .budget: what the closures being built charge


def compile_node(node: Node, budget: Budget | None = None):
    """``node`` -> ``f(row)``. The closures charge their work to ``budget``; without one,
    to a budget of :data:`ROW_BUDGET` units that each call of ``f`` starts afresh."""
    if budget is not None:
        return compile_charged(node, budget)
    b = Budget(ROW_BUDGET)
    fn = compile_charged(node, b)
    if not b.used:
        return fn
    limit = b.limit

    def evaluate(row):
        b.left = limit
        return fn(row)

    return evaluate


def compile_charged(node: Node, budget: Budget):
    """``node`` -> ``f(row)`` charging ``budget``, which the caller resets (``left =
    limit``) before each evaluation."""
    prev = getattr(_building, "budget", None)
    _building.budget = budget
    try:
        return _compile(node)
    finally:
        _building.budget = prev


def _budget() -> Budget:
    """The budget of the closures being built (which will charge it)."""
    b: Budget = _building.budget
    b.used = True
    return b


def _compile(node: Node):
    if isinstance(node, Const):
        value = node.value
        return lambda row: value
    if isinstance(node, Col):
        return _column(node)
    assert isinstance(node, Op)
    builder = _BUILDERS.get(node.kind)
    if builder is None:
        raise AssertionError(f"no evaluator for {node.kind}")
    return builder(node)


def _column(node: Col):
    name = node.name
    if node.type.startswith("opaque:"):
        # only ever tested with IS [NOT] NULL: never parsed
        return lambda row: row.get(name)
    parse = row_input_fn(node.type)
    if is_array(node.type):
        b = _budget()
        what = f'column "{name}"'

        def array_col(row):
            v = row.get(name)
            if v is None:
                return None
            b.left -= len(v)
            if b.left < 0:
                raise exhausted(what)
            return parse(v)

        return array_col

    def col(row):
        v = row.get(name)
        if v is None:
            return None
        return parse(v)

    return col


# ---------------------------------------------------------------------------- logic


def _and(node: Op):
    fs = [_compile(a) for a in node.args]
    if len(fs) == 2:
        f1, f2 = fs

        def and2(row):
            a = f1(row)
            if a is False:
                return False
            b = f2(row)
            if b is False:
                return False
            if a is None or b is None:
                return None
            return True

        return and2

    def and_n(row):
        saw_null = False
        for f in fs:
            v = f(row)
            if v is False:
                return False
            if v is None:
                saw_null = True
        return None if saw_null else True

    return and_n


def _or(node: Op):
    fs = [_compile(a) for a in node.args]
    if len(fs) == 2:
        f1, f2 = fs

        def or2(row):
            a = f1(row)
            if a is True:
                return True
            b = f2(row)
            if b is True:
                return True
            if a is None or b is None:
                return None
            return False

        return or2

    def or_n(row):
        saw_null = False
        for f in fs:
            v = f(row)
            if v is True:
                return True
            if v is None:
                saw_null = True
        return None if saw_null else False

    return or_n


def _not(node: Op):
    f = _compile(node.args[0])

    def not_(row):
        v = f(row)
        return None if v is None else not v

    return not_


def _isnull(node: Op):
    f = _compile(node.args[0])
    return lambda row: f(row) is None


def _isnotnull(node: Op):
    f = _compile(node.args[0])
    return lambda row: f(row) is not None


def _booltest(node: Op):
    f = _compile(node.args[0])
    test = node.data["test"]
    target = {"IS_TRUE": True, "IS_NOT_TRUE": True, "IS_FALSE": False, "IS_NOT_FALSE": False,
              "IS_UNKNOWN": None, "IS_NOT_UNKNOWN": None}[test]
    if test.startswith("IS_NOT"):
        return lambda row: f(row) is not target
    return lambda row: f(row) is target


# ---------------------------------------------------------------------------- comparisons


def _strict2(fn, f1, f2):
    # like Postgres, evaluate every argument before looking for NULLs
    def run(row):
        a = f1(row)
        b = f2(row)
        if a is None or b is None:
            return None
        return fn(a, b)

    return run


def _cmp(node: Op):
    f1, f2 = (_compile(a) for a in node.args)
    fn = comparator(node.data["argtype"], node.data["op"])
    # constant right-hand side: the common `col op literal` shape
    rhs = node.args[1]
    if isinstance(rhs, Const):
        b = rhs.value
        if b is None:
            return lambda row: None

        def cmp_const(row):
            a = f1(row)
            if a is None:
                return None
            return fn(a, b)

        return cmp_const
    return _strict2(fn, f1, f2)


def _distinct(node: Op):
    f1, f2 = (_compile(a) for a in node.args)
    eq = eq_fn(node.data["argtype"])
    negated = node.data["negated"]

    def distinct(row):
        a, b = f1(row), f2(row)
        if a is None or b is None:
            same = a is None and b is None
        else:
            same = eq(a, b)
        return same if negated else not same

    return distinct


_HASHABLE = {"int2", "int4", "int8", "text", "varchar", "name", "uuid", "date", "timestamp",
             "timestamptz", "time", "bool"}


def _anyall(node: Op):
    f1, f2 = (_compile(a) for a in node.args)
    t = node.data["argtype"]
    op = node.data["op"]
    fn = comparator(t, op)
    is_all = node.data["all"]
    rhs = node.args[1]
    if isinstance(rhs, Const) and rhs.value is not None and _hashable(t) and (op, is_all) in (("=", False),
                                                                         ("<>", True)):
        items = rhs.value.items
        pool = frozenset(v for v in items if v is not None)
        has_null = len(pool) != len(items) and any(v is None for v in items)
        if not items:
            return lambda row: (f1(row), is_all)[1]
        found, missing = (False, True) if is_all else (True, False)

        def member(row):
            a = f1(row)
            if a is None:
                return None
            if a in pool:
                return found
            return None if has_null else missing

        return member

    def anyall(row):
        a = f1(row)
        arr = f2(row)
        if arr is None:
            return None
        items = arr.items
        if not items:
            return is_all
        if a is None:
            return None
        saw_null = False
        for v in items:
            if v is None:
                saw_null = True
                continue
            r = fn(a, v)
            if is_all and not r:
                return False
            if not is_all and r:
                return True
        if saw_null:
            return None
        return is_all

    return anyall


def _arrayop(node: Op):
    f1, f2 = (_compile(a) for a in node.args)
    eq = eq_fn(node.data["argtype"][:-2])
    op = node.data["op"]

    def contains_loop(big: PgArray, small: PgArray) -> bool:
        for x in small.items:
            if x is None:
                return False
            if not any(y is not None and eq(x, y) for y in big.items):
                return False
        return True

    def overlaps_loop(a: PgArray, b: PgArray) -> bool:
        return any(x is not None and any(y is not None and eq(x, y) for y in b.items)
                   for x in a.items)

    if _hashable(node.data["argtype"][:-2]):
        contains, overlaps = _contains_hashed, _overlaps_hashed
    else:  # nested loops: charged by the product of the sizes first
        budget = _budget()
        what = op

        def contains(big: PgArray, small: PgArray) -> bool:
            budget.left -= len(big.items) * len(small.items)
            if budget.left < 0:
                raise exhausted(what)
            return contains_loop(big, small)

        def overlaps(a: PgArray, b: PgArray) -> bool:
            budget.left -= len(a.items) * len(b.items)
            if budget.left < 0:
                raise exhausted(what)
            return overlaps_loop(a, b)

    fn: Callable[[PgArray, PgArray], bool]
    if op == "@>":
        fn = contains
    elif op == "<@":
        def fn(a, b):
            return contains(b, a)
    else:
        fn = overlaps
    return _strict2(fn, f1, f2)


def _hashable(t: str) -> bool:
    """Values of type ``t`` are equal exactly when Python's == says so (and hash alike)."""
    return t in _HASHABLE or t.startswith("enum:")


def _contains_hashed(big: PgArray, small: PgArray) -> bool:
    pool = set(big.items)
    pool.discard(None)
    return all(x in pool for x in small.items)


def _overlaps_hashed(a: PgArray, b: PgArray) -> bool:
    pool = set(b.items)
    pool.discard(None)
    return any(x in pool for x in a.items)


# ---------------------------------------------------------------------------- arithmetic


def _arith(node: Op):
    f1, f2 = (_compile(a) for a in node.args)
    fn = arith(node.data["argtype"])[node.data["op"]]
    if node.data["argtype"] == "numeric":
        return _numeric_arith(fn, f1, f2, node.data["op"])
    return _strict2(fn, f1, f2)


def _numeric_arith(op, f1, f2, what: str):
    """Numeric arithmetic charging big operands and results: long multiplication and
    division by the product of the operands' sizes (in 8-byte words: a bound, not the
    cost, of libmpdec's algorithms), every big result by its size."""
    b = _budget()
    quadratic = what in ("*", "/", "%")

    def numeric(row):
        x = f1(row)
        y = f2(row)
        if x is None or y is None:
            return None
        if quadratic and (x.__sizeof__() > _SMALL_DECIMAL or y.__sizeof__() > _SMALL_DECIMAL):
            b.left -= (x.__sizeof__() >> 3) * (y.__sizeof__() >> 3) * 2
            if b.left < 0:
                raise exhausted(what)
        r = op(x, y)
        if r.__sizeof__() > _SMALL_DECIMAL:
            b.left -= r.__sizeof__() * _NUMERIC_UNITS
            if b.left < 0:
                raise exhausted(what)
        return r

    return numeric


def _neg(node: Op):
    f = _compile(node.args[0])
    t = node.data["argtype"]
    fn = interval_neg if t == "interval" else arith(t)["neg"]

    def neg(row):
        v = f(row)
        return None if v is None else fn(v)

    return neg


def _abs(node: Op):
    f = _compile(node.args[0])
    fn = arith(node.data["argtype"])["abs"]

    def abs_(row):
        v = f(row)
        return None if v is None else fn(v)

    return abs_


def _date_plus_time(d, t):
    if isinstance(d, float):
        return d
    return check_ts(d * USEC_DAY + t)


_DT_IMPLS = {
    "date+int": date_plus_int,
    "int+date": lambda n, d: date_plus_int(d, n),
    "date-int": lambda d, n: date_plus_int(d, -n),
    "date-date": date_minus_date,
    "ts+iv": ts_plus_interval,
    "iv+ts": lambda iv, ts: ts_plus_interval(ts, iv),
    "ts-iv": ts_minus_interval,
    "ts-ts": ts_minus_ts,
    "date+time": _date_plus_time,
    "time+date": lambda t, d: _date_plus_time(d, t),
    "time+iv": time_plus_interval,
    "iv+time": lambda iv, t: time_plus_interval(t, iv),
    "time-iv": time_minus_interval,
    "time-time": lambda a, b: (0, 0, a - b),
    "iv+iv": interval_add,
    "iv-iv": interval_sub,
    "iv*f": interval_mul,
    "f*iv": lambda f, iv: interval_mul(iv, f),
    "iv/f": interval_div,
}


def _dtarith(node: Op):
    f1, f2 = (_compile(a) for a in node.args)
    return _strict2(_DT_IMPLS[node.data["impl"]], f1, f2)


def _concat(node: Op):
    f1, f2 = (_compile(a) for a in node.args)
    b = _budget()

    def concat(x: str, y: str) -> str:
        n = len(x) + len(y)
        check_size(n, "||")
        b.left -= n
        if b.left < 0:
            raise exhausted("||")
        return x + y

    return _strict2(concat, f1, f2)


# ---------------------------------------------------------------------------- misc


def _cast(node: Op):
    f = _compile(node.args[0])
    fn = node.data["fn"]
    src, dst = node.args[0].type, node.type
    if (dst in STRING_TYPES and src not in STRING_TYPES) or is_array(dst):
        fn = _charged_cast(fn, src, dst)

    def cast(row):
        v = f(row)
        return None if v is None else fn(v)

    return cast


def _charged_cast(fn, src: str, dst: str):
    """A cast building a string (output function) or an array: its result is charged and
    limited; parsing a string into an array is charged by the string's length first."""
    b = _budget()
    what = f"cast to {dst}"
    parses = src in STRING_TYPES

    def cast(v):
        if parses:
            b.left -= len(v)
        r = fn(v)
        n = len(r.items) if isinstance(r, PgArray) else len(r)
        check_size(n, what)
        b.left -= n
        if b.left < 0:
            raise exhausted(what)
        return r

    return cast


def _like(node: Op):
    fs = [_compile(a) for a in node.args]
    ci = node.data["ci"]
    negated = node.data["negated"]
    pattern_node = node.args[1]
    escape_node = node.args[2] if len(node.args) > 2 else None
    what = "ILIKE" if ci else "LIKE"

    def matcher(pattern: str, escape: str | None, charge):
        if escape is None:
            escape = "\\"
        elif escape == "":
            escape = None
        if ci:
            # the lower-cased subject is built: one more unit per character
            m, factor = compile_like(ascii_lower(pattern),
                                     ascii_lower(escape) if escape else escape, charge)
            return m, factor + 1
        return compile_like(pattern, escape, charge)

    fx = fs[0]
    if isinstance(pattern_node, Const) and (escape_node is None or isinstance(escape_node, Const)):
        if pattern_node.value is None or (escape_node is not None and escape_node.value is None):
            return lambda row: None
        m, factor = matcher(pattern_node.value, None if escape_node is None else escape_node.value,
                            lambda units: charge_request(units, what))
        if factor == 1:  # linear work on the value (plain LIKE without "_" in the middle)
            if negated:
                return lambda row: None if (s := fx(row)) is None else not m(s)
            return lambda row: None if (s := fx(row)) is None else m(s)
        b = _budget()

        def like_const(row):
            s = fx(row)
            if s is None:
                return None
            b.left -= len(s) * factor
            if b.left < 0:
                raise exhausted(what)
            r = m(ascii_lower(s) if ci else s)
            return not r if negated else r

        return like_const
    b = _budget()

    def spend(units: int) -> None:
        b.spend(units, what)

    def like_dyn(row):
        s = fx(row)
        p = fs[1](row)
        e = fs[2](row) if escape_node is not None else None
        if s is None or p is None or (escape_node is not None and e is None):
            return None
        m, factor = matcher(p, e, spend)
        b.spend(len(s) * factor, what)
        r = m(ascii_lower(s) if ci else s)
        return not r if negated else r

    return like_dyn


def _func(node: Op):
    fs = [_compile(a) for a in node.args]
    impl = node.data["impl"]
    if node.type in STRING_TYPES and len(fs) == 1:
        return _func_text1(fs[0], impl, f"{node.data['name']}()")
    if node.type in STRING_TYPES or is_array(node.type) or node.type == "numeric":
        impl = _charged(impl, node.type, f"{node.data['name']}()")
    if len(fs) == 1:
        (f,) = fs

        def call1(row):
            v = f(row)
            return None if v is None else impl(v)

        return call1

    def call(row):
        vals = [g(row) for g in fs]
        if any(v is None for v in vals):
            return None
        return impl(*vals)

    return call


def _func_text1(f, impl, what: str):
    """A one-argument function returning a string (lower, upper, reverse, trims...)."""
    b = _budget()

    def call_text(row):
        v = f(row)
        if v is None:
            return None
        r = impl(v)
        if len(r) > _FREE_SIZE:
            n = len(r)
            if n > MAX_RESULT_SIZE:
                raise too_big(what)
            b.left -= n
            if b.left < 0:
                raise exhausted(what)
        return r

    return call_text


# Strings up to this size built by a one-argument function are not charged: each node runs
# once per evaluation, so they add up to at most MAX_NODES * _FREE_SIZE characters.
_FREE_SIZE = 4096


def _charged(fn, t: str, what: str):
    """``fn`` charging the size of its result of type ``t`` (strings and arrays: their
    length, limited; numerics: only big ones, by their size in memory)."""
    b = _budget()
    if t == "numeric":
        def numeric(a, *rest):
            r = fn(a, *rest)
            if r.__sizeof__() > _SMALL_DECIMAL:
                b.left -= r.__sizeof__() * _NUMERIC_UNITS
                if b.left < 0:
                    raise exhausted(what)
            return r

        return numeric
    items = is_array(t)

    def built(*args):
        r = fn(*args)
        if r is None:  # array_cat of two NULLs
            return r
        n = len(r.items) if items else len(r)
        if n > MAX_RESULT_SIZE:
            raise too_big(what)
        b.left -= n
        if b.left < 0:
            raise exhausted(what)
        return r

    return built


_SMALL_DECIMAL = Decimal(1).__sizeof__()  # a coefficient of at most 76 digits
_NUMERIC_UNITS = 16  # units per byte of a big numeric result (about 1 ns each)


def _coalesce(node: Op):
    fs = [_compile(a) for a in node.args]

    def coalesce(row):
        for f in fs:
            v = f(row)
            if v is not None:
                return v
        return None

    return coalesce


def _nullif(node: Op):
    f1, f2 = (_compile(a) for a in node.args)
    eq = eq_fn(node.data["argtype"])

    def nullif(row):
        a = f1(row)
        b = f2(row)
        if a is not None and b is not None and eq(a, b):
            return None
        return a

    return nullif


def _minmax(node: Op):
    fs = [_compile(a) for a in node.args]
    c3 = cmp3(node.data["argtype"])
    greatest = node.data["greatest"]

    def minmax(row):
        best = None
        for f in fs:
            v = f(row)
            if v is None:
                continue
            if best is None or (c3(v, best) > 0 if greatest else c3(v, best) < 0):
                best = v
        return best

    return minmax


def _array(node: Op):
    fs = [_compile(a) for a in node.args]
    nested = node.data["nested"]
    b = _budget()

    def array(row):
        vals = [f(row) for f in fs]
        if not nested:
            return PgArray((len(vals),), (1,), tuple(vals))
        subs = [v for v in vals if v is not None]
        if not subs or all(not s.items for s in subs):
            return PgArray((), (), ())
        if len(subs) != len(vals):
            raise EvalError("multidimensional arrays must have array expressions with matching dimensions")
        first = subs[0]
        for s in subs:
            if s.dims != first.dims:
                raise EvalError("multidimensional arrays must have array expressions with matching dimensions")
        check_size(len(subs) * len(first.items), "ARRAY[]")
        b.left -= len(subs) * len(first.items)
        if b.left < 0:
            raise exhausted("ARRAY[]")
        items = tuple(x for s in subs for x in s.items)
        return PgArray((len(subs), *first.dims), (1, *first.lbs), items)

    return array


def _subscript(node: Op):
    f1, f2 = (_compile(a) for a in node.args)

    def subscript(row):
        arr = f1(row)
        if arr is None:  # Postgres skips the subscripts of a NULL array
            return None
        i = f2(row)
        if i is None:
            return None
        if len(arr.dims) != 1:
            return None
        k = i - arr.lbs[0]
        if 0 <= k < arr.dims[0]:
            return arr.items[k]
        return None

    return subscript


def _subscripts(node: Op):
    f_arr = _compile(node.args[0])
    fs = [_compile(a) for a in node.args[1:]]

    def subscripts(row):
        arr = f_arr(row)
        if arr is None:
            return None
        idx = [f(row) for f in fs]
        if any(i is None for i in idx):
            return None
        return get_element(arr, idx)

    return subscripts


def _slice(node: Op):
    f_arr = _compile(node.args[0])
    has_upper, has_lower = node.data["upper"], node.data["lower"]
    n_upper = sum(has_upper)
    f_up = [_compile(a) for a in node.args[1:1 + n_upper]]
    f_low = [_compile(a) for a in node.args[1 + n_upper:]]
    # positions of the provided bounds among the subscripts
    up_pos = [i for i, h in enumerate(has_upper) if h]
    low_pos = [i for i, h in enumerate(has_lower) if h]
    n = len(has_upper)
    if n == 1:
        f_hi = f_up[0] if f_up else None
        f_lo = f_low[0] if f_low else None

        def slice1(row):
            arr = f_arr(row)
            if arr is None:
                return None
            # like Postgres: every subscript is evaluated before the NULL check
            hi = f_hi(row) if f_hi is not None else None
            lo = f_lo(row) if f_lo is not None else None
            if (hi is None and f_hi is not None) or (lo is None and f_lo is not None):
                return None
            return get_slice(arr, [lo], [hi])

        return slice1

    def slice_(row):
        arr = f_arr(row)
        if arr is None:
            return None
        ups = [f(row) for f in f_up]
        lows = [f(row) for f in f_low]
        if any(v is None for v in ups) or any(v is None for v in lows):
            return None
        uppers: list = [None] * n
        lowers: list = [None] * n
        for i, v in zip(up_pos, ups, strict=True):
            uppers[i] = v
        for i, v in zip(low_pos, lows, strict=True):
            lowers[i] = v
        return get_slice(arr, lowers, uppers)

    return slice_


def _arraycat(node: Op):
    f1, f2 = (_compile(a) for a in node.args)
    fn = {"cat": array_cat, "append": array_append, "prepend": array_prepend}[node.data["mode"]]
    fn = _charged(fn, node.type, "array concatenation")
    # not strict: array_cat ignores a NULL array, append/prepend take a NULL element
    return lambda row: fn(f1(row), f2(row))


_BUILDERS = {
    "and": _and, "or": _or, "not": _not, "isnull": _isnull, "isnotnull": _isnotnull,
    "booltest": _booltest, "cmp": _cmp, "distinct": _distinct, "anyall": _anyall, "arrayop": _arrayop, "arith": _arith,
    "neg": _neg, "abs": _abs, "dtarith": _dtarith, "concat": _concat, "cast": _cast,
    "like": _like, "func": _func, "coalesce": _coalesce, "nullif": _nullif,
    "minmax": _minmax, "array": _array, "subscript": _subscript,
    "subscripts": _subscripts, "slice": _slice, "arraycat": _arraycat,
}
