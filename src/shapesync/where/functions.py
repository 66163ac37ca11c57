"""Supported functions (immutable built-ins): one registry entry per function name.

An entry of :data:`FUNCTIONS` is either

- a tuple of overloads, each a :class:`Sig` (parameter kinds -> result type,
  implementation), resolved by one rule (:func:`_resolve`): the first overload whose
  parameters all accept the arguments' types wins; with none, the error is the first
  refused argument's error in the last overload of that arity; or
- a builder ``(name, args, loc) -> Node`` for the few functions whose resolution does not
  fit that rule (calls by type name, the polymorphic array functions, timezone, power,
  abs, mod and the rounding family).

The registry is only used at compile time: a call compiles to an ``Op`` of kind ``func``
whose ``impl`` the evaluator calls directly on non-NULL argument values (every function
here is strict).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, Decimal
from typing import Any

from .arrays import array_length, array_lower, array_ndims, array_upper, build_concat, cardinality
from .coerce import coerce, literal_as, make_cast
from .errors import EvalError, WhereError
from .limits import check_size
from .nodes import UNKNOWN, Node, Op, is_unknown, num_common
from .numeric_power import numeric_power
from .ops import arith, ascii_lower, ascii_upper, justify_days, justify_hours, justify_interval
from .timezones import build_timezone
from .values import (
    FLOAT_TYPES,
    INT_TYPES,
    NUMBER_TYPES,
    NUMERIC_CTX,
    STRING_TYPES,
    display,
    is_array,
    norm_numeric,
    round_numeric,
)

# ---------------------------------------------------------------------------- implementations


def _trim(left: bool, right: bool) -> Callable[..., str]:
    """btrim / ltrim / rtrim: ``chars`` is a set of characters, as in Postgres."""
    def run(s: str, chars: str = " ") -> str:
        if left:
            s = s.lstrip(chars)
        if right:
            s = s.rstrip(chars)
        return s

    return run


def _substr(s: str, start: int, count: int | None = None) -> str:
    if count is not None and count < 0:
        raise EvalError("negative substring length not allowed")
    begin = start - 1
    end = None if count is None else begin + count
    if end is not None and end <= 0:
        return ""
    return s[max(begin, 0):end]


def _left(s: str, n: int) -> str:
    return s[:n] if n >= 0 else s[:max(len(s) + n, 0)]


def _right(s: str, n: int) -> str:
    if n >= 0:
        return s[len(s) - n:] if n <= len(s) else s
    return s[-n:]


def _strpos(s: str, sub: str) -> int:
    return s.find(sub) + 1


def _starts_with(s: str, prefix: str) -> bool:
    return s.startswith(prefix)


def _replace(s: str, old: str, new: str) -> str:
    if not old:
        return s
    if len(new) > len(old):  # the size is known before anything is built
        check_size(len(s) + s.count(old) * (len(new) - len(old)), "replace()")
    return s.replace(old, new)


def _reverse(s: str) -> str:
    return s[::-1]


def _bpchar_length(s: str) -> int:
    return len(s.rstrip(" "))  # trailing spaces of character(n) do not count


def _octet_length(s: str) -> int:
    return len(s.encode())


def _float_round(x: float) -> float:
    # rint: half to even
    return float(round(x)) if math.isfinite(x) else x


def _numeric_round(d: Decimal, scale: int = 0) -> Decimal:
    if not d.is_finite():
        return d
    if scale >= 0:
        return round_numeric(d, min(scale, 16383))
    r = round_numeric(d.scaleb(scale, NUMERIC_CTX), 0)
    return norm_numeric(r.scaleb(-scale, NUMERIC_CTX).quantize(Decimal(1), context=NUMERIC_CTX))


def _numeric_trunc(d: Decimal, scale: int) -> Decimal:
    if not d.is_finite():
        return d
    if scale >= 0:
        return d.quantize(Decimal(1).scaleb(-scale), rounding=ROUND_DOWN, context=NUMERIC_CTX)
    shifted = d.scaleb(scale, NUMERIC_CTX).quantize(Decimal(1), rounding=ROUND_DOWN,
                                                    context=NUMERIC_CTX)
    return norm_numeric(shifted.scaleb(-scale, NUMERIC_CTX))


def _numeric_rounding(mode: str) -> Callable[[Decimal], Decimal]:
    def run(d: Decimal) -> Decimal:
        if not d.is_finite():
            return d
        return d.quantize(Decimal(1), rounding=mode, context=NUMERIC_CTX)

    return run


def _float_fn(fn: Callable[[float], float]) -> Callable[[float], float]:
    def run(x: float) -> float:
        return fn(x) if math.isfinite(x) else x

    return run


def _sign_num(d: Decimal) -> Decimal:
    if d.is_nan():
        return d
    return Decimal(0) if d == 0 else Decimal(1 if d > 0 else -1)


def _sign_float(x: float) -> float:
    # float8 sign(): NaN is neither > 0 nor < 0, so 0
    return 1.0 if x > 0 else (-1.0 if x < 0 else 0.0)


def float_sqrt(x: float) -> float:
    """sqrt(float8) / ``|/``."""
    if x < 0:
        raise EvalError("cannot take square root of a negative number")
    return math.sqrt(x)


def float_power(a: float, b: float) -> float:
    """float8 ``^`` / power() with Postgres' errors (float.c dpow)."""
    if a == 0 and b < 0:
        raise EvalError("zero raised to a negative power is undefined")
    if a < 0 and (b != b or (not math.isinf(b) and math.floor(b) != b)):
        raise EvalError("a negative number raised to a non-integer power yields a complex result")
    if math.isinf(a) or math.isinf(b) or a != a or b != b:
        return math.pow(a, b)
    try:
        r = math.pow(a, b)
    except OverflowError:
        raise EvalError("value out of range: overflow") from None
    if math.isinf(r):
        raise EvalError("value out of range: overflow")
    if r == 0.0 and a != 0.0:
        raise EvalError("value out of range: underflow")
    return r


# round / trunc / ceil / floor / sign with one argument, per argument type
_NUMERIC_ROUNDING: dict[str, Callable[..., Decimal]] = {
    "round": _numeric_round, "trunc": _numeric_rounding(ROUND_DOWN),
    "ceil": _numeric_rounding(ROUND_CEILING), "ceiling": _numeric_rounding(ROUND_CEILING),
    "floor": _numeric_rounding(ROUND_FLOOR), "sign": _sign_num,
}
_FLOAT_ROUNDING: dict[str, Callable[[float], float]] = {
    "round": _float_round, "trunc": _float_fn(lambda x: float(math.trunc(x))),
    "ceil": _float_fn(lambda x: float(math.ceil(x))),
    "ceiling": _float_fn(lambda x: float(math.ceil(x))),
    "floor": _float_fn(lambda x: float(math.floor(x))), "sign": _sign_float,
}

# ---------------------------------------------------------------------------- errors

_VOLATILE = {
    "now", "random", "clock_timestamp", "statement_timestamp", "transaction_timestamp",
    "timeofday", "current_setting", "nextval", "currval", "setval", "pg_sleep",
    "gen_random_uuid", "uuid_generate_v4", "concat", "concat_ws", "to_char", "age",
    "date_part", "extract", "date_trunc", "format", "random_normal",
    "pg_read_file", "set_config", "txid_current", "pg_backend_pid", "version",
}


def unsupported(name: str, n: int, loc: int | None) -> WhereError:
    """No function ``name`` taking ``n`` arguments."""
    if name in _VOLATILE:
        return WhereError(f"unknown or unsupported function {name}/{n}: it is not immutable", loc)
    return WhereError(f"unknown or unsupported function {name}/{n}", loc)


def no_overload(name: str, args: list[Node], loc: int | None) -> WhereError:
    types = ", ".join(display(a.type) for a in args)
    return WhereError(f"Could not select a function overload for {name}({types})", loc)


# ---------------------------------------------------------------------------- signatures


@dataclass(frozen=True)
class Param:
    """One parameter of an overload: which argument types it accepts, the type an
    accepted argument is coerced to (None: kept as it is) and the error for a refused
    one: "missing" (no function name(type)), "argtype" (name does not accept the type),
    "overload" (no overload for the whole argument list) or "unsupported"."""

    accepts: Callable[[str], bool]
    target: str | None
    error: str


TEXT = Param(lambda t: t in STRING_TYPES or t == UNKNOWN, "text", "missing")
BPCHAR = Param(lambda t: t == "bpchar", None, "missing")
INT = Param(lambda t: t in ("int2", "int4", UNKNOWN), "int4", "overload")
INT_ARG = Param(INT.accepts, "int4", "argtype")
INTERVAL = Param(lambda t: t in ("interval", UNKNOWN), "interval", "overload")
ARRAY = Param(is_array, None, "overload")
FLOAT8 = Param(lambda t: t in (*FLOAT_TYPES, *INT_TYPES, UNKNOWN), "float8", "unsupported")


@dataclass(frozen=True)
class Sig:
    """One overload: parameters -> result type, implementation on non-NULL values."""

    params: tuple[Param, ...]
    result: str
    impl: Callable[..., Any]
    sql: str | None = None  # name in the rendered SQL (default: the name called)
    collate: bool = False  # render the first argument COLLATE "C"


Builder = Callable[[str, list[Node], int | None], Node]


def _call(name: str, result: str, impl: Callable[..., Any], args: list[Node], loc: int | None,
          sql: str | None = None, collate: bool = False) -> Op:
    return Op(result, loc, "func", args, {"name": name, "sql": sql or name, "impl": impl,
                                          "collate": collate})


def _refused(param: Param, name: str, args: list[Node], arg: Node, loc: int | None) -> WhereError:
    if param.error == "missing":
        return WhereError(f"function {name}({display(arg.type)}) does not exist", arg.loc)
    if param.error == "argtype":
        return WhereError(f"function {name} does not accept an argument of type "
                          f"{display(arg.type)}", arg.loc)
    if param.error == "overload":
        return no_overload(name, args, loc)
    return unsupported(name, len(args), loc)


def _convert(param: Param, name: str, args: list[Node], arg: Node, loc: int | None) -> Node:
    """``arg`` checked and coerced for ``param``."""
    if not param.accepts(arg.type):
        raise _refused(param, name, args, arg, loc)
    return arg if param.target is None else coerce(arg, param.target, loc=loc)


def _resolve(name: str, sigs: tuple[Sig, ...], args: list[Node], loc: int | None) -> Op:
    candidates = [s for s in sigs if len(s.params) == len(args)]
    if not candidates:
        raise unsupported(name, len(args), loc)
    sig = next((s for s in candidates
                if all(p.accepts(a.type) for p, a in zip(s.params, args, strict=True))),
               candidates[-1])
    # every argument is checked before any untyped literal is read as its parameter's type
    for p, a in zip(sig.params, args, strict=True):
        if not p.accepts(a.type):
            raise _refused(p, name, args, a, loc)
    xs = [a if p.target is None else coerce(a, p.target, loc=loc)
          for p, a in zip(sig.params, args, strict=True)]
    return _call(name, sig.result, sig.impl, xs, loc, sig.sql, sig.collate)


# ---------------------------------------------------------------------------- builders


def build_power(lhs: Node, rhs: Node, loc: int | None, fname: str | None = None) -> Op:
    """``lhs ^ rhs`` (``fname`` None) or power() / pow(): numeric ^ numeric when a side is
    numeric and neither is a float (untyped literals taking numeric), otherwise
    float8 ^ float8."""
    types = {lhs.type, rhs.type}
    if "numeric" in types and not types & set(FLOAT_TYPES):
        for a in (lhs, rhs):
            if a.type != UNKNOWN and a.type not in NUMBER_TYPES:
                raise WhereError(f"Could not select an operator overload: {display(lhs.type)} ^ "
                                 f"{display(rhs.type)}", loc)
        xs = [coerce(lhs, "numeric", loc=loc), coerce(rhs, "numeric", loc=loc)]
        return _call("power", "numeric", numeric_power, xs, loc)
    if fname is not None and not types <= {*NUMBER_TYPES, UNKNOWN}:
        raise unsupported(fname, 2, loc)
    xs = [coerce(lhs, "float8", loc=loc), coerce(rhs, "float8", loc=loc)]
    return _call(fname or "pow", "float8", float_power, xs, loc, sql="power")


def _power(name: str, args: list[Node], loc: int | None) -> Node:
    if len(args) != 2:
        raise unsupported(name, len(args), loc)
    return build_power(args[0], args[1], loc, name)


def _cast_call(name: str, args: list[Node], loc: int | None) -> Node:
    """``typename(x)``: Postgres' func_get_detail treats it as a cast when there is no
    function of that name taking x's type exactly and the cast is a binary relabelling or
    goes through text I/O (or x is an untyped literal); otherwise it calls the function of
    that name, and for these type names every such one-argument function is the cast
    function itself. Either way it means ``CAST(x AS typename)``, compiled and rendered
    as such."""
    if len(args) != 1:
        raise unsupported(name, len(args), loc)
    (arg,) = args
    if arg.type == name:
        return arg
    if is_unknown(arg):
        return literal_as(arg, name)
    if arg.type.startswith("enum:") and name not in STRING_TYPES:
        raise WhereError(f"function {name}({arg.type[5:]}) does not exist", loc)
    return make_cast(arg, name, loc)


def _array_concat(name: str, args: list[Node], loc: int | None) -> Node:
    if len(args) != 2:
        raise unsupported(name, len(args), loc)
    return build_concat(args[0], args[1], loc, fname=name)


def _timezone(name: str, args: list[Node], loc: int | None) -> Node:
    return build_timezone(args, loc)


def _abs(name: str, args: list[Node], loc: int | None) -> Node:
    """abs(x) for every numeric type (an untyped literal is float8)."""
    if len(args) != 1:
        raise unsupported(name, len(args), loc)
    a = literal_as(args[0], "float8") if is_unknown(args[0]) else args[0]
    if a.type not in NUMBER_TYPES:
        raise no_overload(name, args, loc)
    return _call(name, a.type, arith(a.type)["abs"], [a], loc)


def _mod(name: str, args: list[Node], loc: int | None) -> Node:
    """mod(x, y) over the common integer / numeric type (an untyped literal takes the other
    side's type)."""
    if len(args) != 2:
        raise unsupported(name, len(args), loc)
    a, b = args
    if is_unknown(a) and is_unknown(b):
        raise no_overload(name, args, loc)
    ta = b.type if is_unknown(a) else a.type
    tb = a.type if is_unknown(b) else b.type
    if ta not in NUMBER_TYPES or tb not in NUMBER_TYPES or ta in FLOAT_TYPES or tb in FLOAT_TYPES:
        raise no_overload(name, args, loc)
    t = num_common(ta, tb)
    return _call(name, t, arith(t)["%"], [coerce(a, t, loc=loc), coerce(b, t, loc=loc)], loc)


def _rounding(name: str, args: list[Node], loc: int | None) -> Node:
    """round / trunc / ceil / ceiling / floor / sign of one number, and round / trunc of a
    numeric to a number of digits. An integer argument takes the float8 overload, as in
    Postgres: both round(numeric) and round(float8) need an implicit cast, and float8 is
    the numeric category's preferred type (so round(int_col) is double precision, and
    `round(i) % 2` is an error)."""
    n = len(args)
    if n not in (1, 2):
        raise unsupported(name, n, loc)
    a = args[0]
    if is_unknown(a):
        a = literal_as(a, "float8" if n == 1 else "numeric")
    if a.type not in NUMBER_TYPES:
        raise no_overload(name, args, loc)
    if n == 2:
        if name not in ("round", "trunc"):
            raise no_overload(name, args, loc)
        a = coerce(a, "numeric", loc=loc)
        digits = _convert(INT_ARG, name, args, args[1], loc)
        return _call(name, "numeric", _numeric_round if name == "round" else _numeric_trunc,
                     [a, digits], loc)
    if a.type == "numeric":
        return _call(name, "numeric", _NUMERIC_ROUNDING[name], [a], loc)
    return _call(name, "float8", _FLOAT_ROUNDING[name], [coerce(a, "float8", loc=loc)], loc)


# ---------------------------------------------------------------------------- the registry


def _trims(left: bool, right: bool, sql: str | None = None) -> tuple[Sig, ...]:
    impl = _trim(left, right)
    return (Sig((TEXT,), "text", impl, sql), Sig((TEXT, TEXT), "text", impl, sql))


_LENGTH = (Sig((BPCHAR,), "int4", _bpchar_length), Sig((TEXT,), "int4", len))
_SUBSTR = (Sig((TEXT, INT), "text", _substr, "substr"),
           Sig((TEXT, INT, INT), "text", _substr, "substr"))

# the type input functions callable by name: ``int4(x)`` is ``CAST(x AS int4)``
TYPE_NAME_FUNCTIONS = (
    "int2", "int4", "int8", "float4", "float8", "numeric", "bool", "uuid", "text", "date",
    "time", "timestamp", "timestamptz", "interval",
)

FUNCTIONS: dict[str, tuple[Sig, ...] | Builder] = {
    # strings
    "lower": (Sig((TEXT,), "text", ascii_lower, collate=True),),
    "upper": (Sig((TEXT,), "text", ascii_upper, collate=True),),
    "length": _LENGTH, "char_length": _LENGTH, "character_length": _LENGTH,
    "octet_length": (Sig((BPCHAR,), "int4", _octet_length), Sig((TEXT,), "int4", _octet_length)),
    "btrim": _trims(True, True), "ltrim": _trims(True, False), "rtrim": _trims(False, True),
    "trim": _trims(True, True, "btrim"),
    "starts_with": (Sig((TEXT, TEXT), "bool", _starts_with),),
    "strpos": (Sig((TEXT, TEXT), "int4", _strpos),),
    "position": (Sig((TEXT, TEXT), "int4", _strpos),),
    "substr": _SUBSTR, "substring": _SUBSTR,
    "left": (Sig((TEXT, INT_ARG), "text", _left),),
    "right": (Sig((TEXT, INT_ARG), "text", _right),),
    "replace": (Sig((TEXT, TEXT, TEXT), "text", _replace),),
    "reverse": (Sig((TEXT,), "text", _reverse),),
    # numbers
    "abs": _abs, "mod": _mod,
    **dict.fromkeys(("round", "trunc", "ceil", "ceiling", "floor", "sign"), _rounding),
    "sqrt": (Sig((FLOAT8,), "float8", float_sqrt),),
    "power": _power, "pow": _power,
    # date / time
    "justify_days": (Sig((INTERVAL,), "interval", justify_days),),
    "justify_hours": (Sig((INTERVAL,), "interval", justify_hours),),
    "justify_interval": (Sig((INTERVAL,), "interval", justify_interval),),
    "timezone": _timezone,
    # arrays
    "array_length": (Sig((ARRAY, INT_ARG), "int4", array_length),),
    "array_lower": (Sig((ARRAY, INT_ARG), "int4", array_lower),),
    "array_upper": (Sig((ARRAY, INT_ARG), "int4", array_upper),),
    "cardinality": (Sig((ARRAY,), "int4", cardinality),),
    "array_ndims": (Sig((ARRAY,), "int4", array_ndims),),
    **dict.fromkeys(("array_cat", "array_append", "array_prepend"), _array_concat),
    # casts
    **dict.fromkeys(TYPE_NAME_FUNCTIONS, _cast_call),
}


def build_function(name: str, args: list[Node], loc: int | None) -> Node:
    """Type-check a call to ``name`` (already-typed arguments) and return its node."""
    entry = FUNCTIONS.get(name)
    if entry is None:
        raise unsupported(name, len(args), loc)
    if isinstance(entry, tuple):
        return _resolve(name, entry, args, loc)
    return entry(name, args, loc)
