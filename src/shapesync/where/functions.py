"""Supported (immutable, built-in) functions: type resolution and implementations."""

from __future__ import annotations

import math
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, Decimal

from .errors import EvalError, WhereError
from .ops import arith, ascii_lower, ascii_upper, justify_days, justify_hours, justify_interval
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


def _bp(t: str):
    return (lambda s: s.rstrip(" ")) if t == "bpchar" else None


def _trim(chars: str | None, left: bool, right: bool):
    def run(s: str, c: str = " ") -> str:
        if left:
            s = s.lstrip(c)
        if right:
            s = s.rstrip(c)
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


def _numeric_rounding(mode):
    def run(d: Decimal) -> Decimal:
        if not d.is_finite():
            return d
        return d.quantize(Decimal(1), rounding=mode, context=NUMERIC_CTX)

    return run


def _float_fn(fn):
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


def _sqrt(x: float) -> float:
    if x < 0:
        raise EvalError("cannot take square root of a negative number")
    return math.sqrt(x)


def _pow(a: float, b: float) -> float:
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


def _array_length(a, dim: int):
    if not a.dims or dim < 1 or dim > len(a.dims):
        return None
    return a.dims[dim - 1]


def _array_lower(a, dim: int):
    if not a.dims or dim < 1 or dim > len(a.dims):
        return None
    return a.lbs[dim - 1]


def _array_upper(a, dim: int):
    if not a.dims or dim < 1 or dim > len(a.dims):
        return None
    return a.lbs[dim - 1] + a.dims[dim - 1] - 1


def _cardinality(a) -> int:
    return len(a.items)


def _array_ndims(a):
    return len(a.dims) if a.dims else None


def build_function(c, name: str, args: list, loc: int | None):
    """Type-check a call to ``name`` and return its Op node."""
    from .extra_functions import build_extra_function
    from .parse import UNKNOWN, Op

    extra = build_extra_function(c, name, args, loc)
    if extra is not None:
        return extra
    n = len(args)

    def unknown(a) -> bool:
        return a.type == UNKNOWN

    def text_arg(a):
        if a.type in STRING_TYPES:
            return a
        return c.coerce(a, "text", f"function {name}({display(a.type)}) does not exist", a.loc)

    def text_args(xs):
        out = []
        for a in xs:
            a = text_arg(a)
            if a.type != "text":
                a = c.make_cast(a, "text", a.loc)
            out.append(a)
        return out

    def int_arg(a):
        if unknown(a):
            return c.literal_as(a, "int4")
        if a.type in ("int2", "int4"):
            return c.coerce(a, "int4", loc=a.loc)
        raise WhereError(f"function {name} does not accept an argument of type {display(a.type)}", a.loc)

    def call(rtype, impl, xs, sql=None, collate=False):
        return Op(rtype, loc, "func", xs, {"name": name, "sql": sql or name, "impl": impl,
                                           "collate": collate})

    def signature_error():
        types = ", ".join(display(a.type) for a in args)
        return WhereError(f"Could not select a function overload for {name}({types})", loc)

    if name in ("lower", "upper") and n == 1:
        (a,) = text_args(args)
        return call("text", ascii_lower if name == "lower" else ascii_upper, [a], collate=True)
    if name in ("length", "char_length", "character_length") and n == 1:
        a = text_arg(args[0])
        if a.type == "bpchar":
            return call("int4", lambda s: len(s.rstrip(" ")), [a])
        (a,) = text_args([a])
        return call("int4", len, [a])
    if name == "octet_length" and n == 1:
        a = text_arg(args[0])
        if a.type == "bpchar":
            return call("int4", lambda s: len(s.encode()), [a])
        (a,) = text_args([a])
        return call("int4", lambda s: len(s.encode()), [a])
    if name in ("btrim", "ltrim", "rtrim", "trim") and n in (1, 2):
        xs = text_args(args)
        left = name in ("btrim", "ltrim", "trim")
        right = name in ("btrim", "rtrim", "trim")
        sql = "btrim" if name == "trim" else name
        return call("text", _trim(None, left, right), xs, sql=sql)
    if name == "starts_with" and n == 2:
        return call("bool", lambda s, p: s.startswith(p), text_args(args))
    if name in ("strpos", "position") and n == 2:
        return call("int4", _strpos, text_args(args), sql=name)
    if name in ("substr", "substring") and n in (2, 3):
        if "similar" in name:
            raise signature_error()
        s = text_args(args[:1])
        if any(a.type not in ("int2", "int4") and not unknown(a) for a in args[1:]):
            raise signature_error()
        ints = [int_arg(a) for a in args[1:]]
        return call("text", _substr, s + ints, sql="substr")
    if name in ("left", "right") and n == 2:
        s = text_args(args[:1])
        return call("text", _left if name == "left" else _right, s + [int_arg(args[1])])
    if name == "replace" and n == 3:
        return call("text", lambda s, a, b: s.replace(a, b) if a else s, text_args(args))
    if name == "reverse" and n == 1:
        return call("text", lambda s: s[::-1], text_args(args))
    if name == "abs" and n == 1:
        a = args[0]
        if unknown(a):
            a = c.literal_as(a, "float8")
        if a.type not in NUMBER_TYPES:
            raise signature_error()
        return call(a.type, arith(a.type)["abs"], [a])
    if name == "mod" and n == 2:
        a, b = args
        if unknown(a) and unknown(b):
            raise signature_error()
        ta = b.type if unknown(a) else a.type
        tb = a.type if unknown(b) else b.type
        if ta not in NUMBER_TYPES or tb not in NUMBER_TYPES or ta in FLOAT_TYPES or tb in FLOAT_TYPES:
            raise signature_error()
        from .parse import _num_common

        t = _num_common(ta, tb)
        a, b = c.coerce(a, t, loc=loc), c.coerce(b, t, loc=loc)
        return call(t, arith(t)["%"], [a, b])
    if name in ("round", "trunc", "ceil", "ceiling", "floor", "sign") and n in (1, 2):
        a = args[0]
        if unknown(a):
            a = c.literal_as(a, "float8" if n == 1 else "numeric")
        if a.type not in NUMBER_TYPES:
            raise signature_error()
        if n == 2:
            if name not in ("round", "trunc"):
                raise signature_error()
            a = c.coerce(a, "numeric", loc=loc)
            s = int_arg(args[1])
            if name == "round":
                return call("numeric", _numeric_round, [a, s])
            return call("numeric", _numeric_trunc, [a, s])
        # An integer argument takes the float8 overload, as in Postgres: both round(numeric)
        # and round(float8) need an implicit cast, and float8 is the numeric category's
        # preferred type (so round(int_col) is double precision, and `round(i) % 2` is an error).
        if a.type == "numeric":
            impl = {
                "round": _numeric_round, "trunc": _numeric_rounding(ROUND_DOWN),
                "ceil": _numeric_rounding(ROUND_CEILING),
                "ceiling": _numeric_rounding(ROUND_CEILING),
                "floor": _numeric_rounding(ROUND_FLOOR), "sign": _sign_num,
            }[name]
            return call("numeric", impl, [a])
        a = c.coerce(a, "float8", loc=loc)
        impl = {
            "round": _float_round, "trunc": _float_fn(lambda x: float(math.trunc(x))),
            "ceil": _float_fn(lambda x: float(math.ceil(x))),
            "ceiling": _float_fn(lambda x: float(math.ceil(x))),
            "floor": _float_fn(lambda x: float(math.floor(x))), "sign": _sign_float,
        }[name]
        return call("float8", impl, [a])
    if name in ("justify_days", "justify_hours", "justify_interval") and n == 1:
        a = c.coerce(args[0], "interval", loc=loc) if unknown(args[0]) or args[0].type == "interval" \
            else None
        if a is None:
            raise signature_error()
        impl = {"justify_days": justify_days, "justify_hours": justify_hours,
                "justify_interval": justify_interval}[name]
        return call("interval", impl, [a])
    if name in ("array_length", "array_lower", "array_upper") and n == 2:
        a = args[0]
        if not is_array(a.type):
            raise signature_error()
        impl = {"array_length": _array_length, "array_lower": _array_lower,
                "array_upper": _array_upper}[name]
        return call("int4", impl, [a, int_arg(args[1])])
    if name in ("cardinality", "array_ndims") and n == 1:
        a = args[0]
        if not is_array(a.type):
            raise signature_error()
        return call("int4", _cardinality if name == "cardinality" else _array_ndims, [a])
    if name == "sqrt" and n == 1 and args[0].type in (*FLOAT_TYPES, *INT_TYPES, UNKNOWN):
        return call("float8", _sqrt, [c.coerce(args[0], "float8", loc=loc)])
    if name in ("power", "pow") and n == 2 and all(
            a.type in (*FLOAT_TYPES, *INT_TYPES, UNKNOWN) for a in args):
        xs = [c.coerce(a, "float8", loc=loc) for a in args]
        return call("float8", _pow, xs, sql="power")
    if name in _REJECTED_VOLATILE:
        raise WhereError(f"unknown or unsupported function {name}/{n}: it is not immutable", loc)
    raise WhereError(f"unknown or unsupported function {name}/{n}", loc)


def _numeric_trunc(d: Decimal, scale: int) -> Decimal:
    if not d.is_finite():
        return d
    if scale >= 0:
        return d.quantize(Decimal(1).scaleb(-scale), rounding=ROUND_DOWN, context=NUMERIC_CTX)
    shifted = d.scaleb(scale, NUMERIC_CTX).quantize(Decimal(1), rounding=ROUND_DOWN,
                                                    context=NUMERIC_CTX)
    return norm_numeric(shifted.scaleb(-scale, NUMERIC_CTX))


_REJECTED_VOLATILE = {
    "now", "random", "clock_timestamp", "statement_timestamp", "transaction_timestamp",
    "timeofday", "current_setting", "nextval", "currval", "setval", "pg_sleep",
    "gen_random_uuid", "uuid_generate_v4", "concat", "concat_ws", "to_char", "age",
    "date_part", "extract", "date_trunc", "timezone", "format", "random_normal",
    "pg_read_file", "set_config", "txid_current", "pg_backend_pid", "version",
}
