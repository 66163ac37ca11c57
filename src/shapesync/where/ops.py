"""Postgres semantics on Python values: comparison, arithmetic, date/time arithmetic,
casts, LIKE and C-locale case folding.

Every function here operates on non-NULL values (NULL handling lives in evaluate.py) and
raises :class:`EvalError` where Postgres raises.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from decimal import ROUND_DOWN, ROUND_HALF_UP, Context, Decimal

from .errors import EvalError
from .limits import REGEX_UNIT_COST
from .values import (
    FLOAT_TYPES,
    INT_RANGE,
    INT_TYPES,
    INTERVAL_INF,
    INTERVAL_NINF,
    NUMERIC_CTX,
    NUMERIC_MAX_SCALE,
    STRING_TYPES,
    USEC_DAY,
    PgArray,
    check_date,
    check_int,
    check_ts,
    civil_from_days,
    days_from_civil,
    days_in_month,
    display,
    elem_of,
    finite_exponent,
    input_fn,
    interval_key,
    is_array,
    norm_numeric,
    numeric_scale,
    output_fn,
    round_numeric,
    to_float4,
)

# ---------------------------------------------------------------------------- comparison

_PY_OPS = {
    "=": operator.eq, "<>": operator.ne, "<": operator.lt, ">": operator.gt,
    "<=": operator.le, ">=": operator.ge,
}
_FROM_CMP = {
    "=": lambda c: c == 0, "<>": lambda c: c != 0, "<": lambda c: c < 0, ">": lambda c: c > 0,
    "<=": lambda c: c <= 0, ">=": lambda c: c >= 0,
}

# types whose Python values order exactly as Postgres orders them
_NATIVE_ORDER = {
    *INT_TYPES, "text", "varchar", "name", "uuid", "date", "time", "timestamp",
    "timestamptz", "bool",
}


def _float_cmp(a: float, b: float) -> int:
    if a != a:
        return 0 if b != b else 1
    if b != b:
        return -1
    return (a > b) - (a < b)


def _numeric_cmp(a: Decimal, b: Decimal) -> int:
    an, bn = a.is_nan(), b.is_nan()
    if an or bn:
        return (an and not bn) - (bn and not an)
    return (a > b) - (a < b)


def _bpchar_cmp(a: str, b: str) -> int:
    a, b = a.rstrip(" "), b.rstrip(" ")
    return (a > b) - (a < b)


def _native_cmp(a, b) -> int:
    return (a > b) - (a < b)


def _interval_cmp(a, b) -> int:
    ka, kb = interval_key(a), interval_key(b)
    return (ka > kb) - (ka < kb)


def cmp3(t: str):
    """Three-way comparison for two non-NULL values of type ``t``."""
    if t in _NATIVE_ORDER or t.startswith("enum:"):
        return _native_cmp
    if t in FLOAT_TYPES:
        return _float_cmp
    if t == "numeric":
        return _numeric_cmp
    if t == "bpchar":
        return _bpchar_cmp
    if t == "interval":
        return _interval_cmp
    if is_array(t):
        return _array_cmp3(cmp3(elem_of(t)))
    raise EvalError(f"no comparison for type {display(t)}")


def _array_cmp3(elem_cmp):
    def cmp(a: PgArray, b: PgArray) -> int:
        for x, y in zip(a.items, b.items, strict=False):
            if x is None or y is None:
                if x is None and y is None:
                    continue
                return 1 if x is None else -1
            c = elem_cmp(x, y)
            if c:
                return c
        na, nb = len(a.items), len(b.items)
        if na != nb:
            return -1 if na < nb else 1
        if len(a.dims) != len(b.dims):
            return -1 if len(a.dims) < len(b.dims) else 1
        for da, db in zip(a.dims, b.dims, strict=True):
            if da != db:
                return -1 if da < db else 1
        for la, lb in zip(a.lbs, b.lbs, strict=True):
            if la != lb:
                return -1 if la < lb else 1
        return 0

    return cmp


def comparator(t: str, op: str):
    """(a, b) -> bool for the comparison ``op`` on non-NULL values of type ``t``."""
    op = "<>" if op == "!=" else op
    if t in _NATIVE_ORDER or t.startswith("enum:"):
        return _PY_OPS[op]
    if t in FLOAT_TYPES and op in ("=", "<>"):
        if op == "=":
            return lambda a, b: a == b or (a != a and b != b)
        return lambda a, b: not (a == b or (a != a and b != b))
    if t == "bpchar" and op in ("=", "<>"):
        py = _PY_OPS[op]
        return lambda a, b: py(a.rstrip(" "), b.rstrip(" "))
    if t == "interval":
        py = _PY_OPS[op]
        return lambda a, b: py(interval_key(a), interval_key(b))
    c3 = cmp3(t)
    test = _FROM_CMP[op]
    return lambda a, b: test(c3(a, b))


def eq_fn(t: str):
    return comparator(t, "=")


# ---------------------------------------------------------------------------- numbers


def _div_zero():
    return EvalError("division by zero")


def _int_ops(t: str):
    lo, hi = INT_RANGE[t]
    name = display(t)

    def chk(v: int) -> int:
        if lo <= v <= hi:
            return v
        raise EvalError(f"{name} out of range")

    def div(a: int, b: int) -> int:
        if b == 0:
            raise _div_zero()
        q = abs(a) // abs(b)
        return chk(q if (a < 0) == (b < 0) else -q)

    def mod(a: int, b: int) -> int:
        if b == 0:
            raise _div_zero()
        r = abs(a) % abs(b)
        return -r if a < 0 else r

    return {
        "+": lambda a, b: chk(a + b),
        "-": lambda a, b: chk(a - b),
        "*": lambda a, b: chk(a * b),
        "/": div,
        "%": mod,
        "&": operator.and_,
        "|": operator.or_,
        "#": operator.xor,
        "neg": lambda a: chk(-a),
        "abs": lambda a: chk(abs(a)),
    }


def _float_ops(t: str):
    """float4/float8 arithmetic with Postgres' overflow/underflow checks (float.c)."""
    single = t == "float4"
    isinf = math.isinf

    def rnd(v: float) -> float:
        if single:
            try:
                return to_float4(v)
            except OverflowError:
                return math.copysign(math.inf, v)
        return v

    def overflow():
        return EvalError("value out of range: overflow")

    def add(a, b):
        r = rnd(a + b)
        if isinf(r) and not isinf(a) and not isinf(b):
            raise overflow()
        return r

    def sub(a, b):
        r = rnd(a - b)
        if isinf(r) and not isinf(a) and not isinf(b):
            raise overflow()
        return r

    def mul(a, b):
        r = rnd(a * b)
        if isinf(r) and not isinf(a) and not isinf(b):
            raise overflow()
        if r == 0.0 and a != 0.0 and b != 0.0:
            raise EvalError("value out of range: underflow")
        return r

    def div(a, b):
        if b == 0.0:
            if a == a:
                raise _div_zero()
            return a
        r = rnd(a / b)
        if isinf(r) and not isinf(a):
            raise overflow()
        if r == 0.0 and a != 0.0 and not isinf(b):
            raise EvalError("value out of range: underflow")
        return r

    return {"+": add, "-": sub, "*": mul, "/": div, "neg": lambda a: -a, "abs": abs}


_NAN = Decimal("NaN")


def _num_special(op: str, a: Decimal, b: Decimal) -> Decimal:
    """Numeric arithmetic with NaN/Infinity, as Postgres 14+ does it."""
    if a.is_nan() or b.is_nan():
        return _NAN
    if op == "/" and b == 0:
        raise _div_zero()
    if op == "%":
        if b == 0:
            raise _div_zero()
        if a.is_infinite():
            return _NAN
        return a  # finite % inf
    fa, fb = float(a), float(b)
    if op == "+":
        r = fa + fb
    elif op == "-":
        r = fa - fb
    elif op == "*":
        r = fa * fb
    else:
        if math.isinf(fa) and math.isinf(fb):
            return _NAN
        r = fa / fb
        if r == 0:
            return Decimal(0)
    if math.isnan(r):
        return _NAN
    return Decimal(r) if math.isinf(r) else Decimal(0)


def _numeric_div_scale(a: Decimal, b: Decimal) -> int:
    """Postgres' select_div_scale (base-10000 digit weights)."""

    def weight_first(d: Decimal) -> tuple[int, int]:
        if d == 0:
            return 0, 0
        # position of the most significant decimal digit: 10^e10
        e10 = d.adjusted()
        weight = e10 // 4
        # the base-10000 digit at that weight
        shifted = abs(d).scaleb(-4 * weight, NUMERIC_CTX)
        first = int(shifted)  # digit value in 1..9999
        return weight, first

    w1, f1 = weight_first(a)
    w2, f2 = weight_first(b)
    qweight = w1 - w2
    if f1 <= f2:
        qweight -= 1
    rscale = 16 - qweight * 4
    rscale = max(rscale, numeric_scale(a), numeric_scale(b), 0)
    return min(rscale, 1000)


def _numeric_div(a: Decimal, b: Decimal) -> Decimal:
    if not (a.is_finite() and b.is_finite()):
        return _num_special("/", a, b)
    if b == 0:
        raise _div_zero()
    rscale = _numeric_div_scale(a, b)
    if a == 0:
        return Decimal(0).scaleb(-rscale)
    # the quotient truncated one digit past rscale, then rounded half away from zero:
    # exactly the correctly rounded quotient (only that next digit decides)
    prec = max(a.adjusted() - b.adjusted() + 2 + rscale + 2, 1)
    q = Context(prec=prec, rounding=ROUND_DOWN, Emax=999_999_999,
                Emin=-999_999_999).divide(a, b)
    r = q.quantize(Decimal(1).scaleb(-rscale), rounding=ROUND_HALF_UP,
                   context=_WIDE)
    if r.is_zero():
        r = r.copy_abs()
    return check_numeric(r)


_WIDE = Context(prec=999_999, Emax=999_999_999, Emin=-999_999_999)
NUMERIC_MAX_WEIGHT_DIGITS = 131072  # decimal digits before the decimal point
_SMALL_DECIMAL = Decimal(1).__sizeof__()  # a coefficient of at most 76 digits


def check_numeric(r: Decimal) -> Decimal:
    """A finite arithmetic result within numeric's format: more than 16383 fractional
    digits are rounded away (as numeric_mul does), too many integral digits raise
    Postgres' overflow error."""
    if -16000 < r.adjusted() < 131000 and r.__sizeof__() <= _SMALL_DECIMAL:
        return r
    if -finite_exponent(r) > NUMERIC_MAX_SCALE:
        r = round_numeric(r, NUMERIC_MAX_SCALE)
    if not r.is_zero() and r.adjusted() >= NUMERIC_MAX_WEIGHT_DIGITS:
        raise EvalError("value overflows numeric format")
    return r


def _numeric_ops():
    ctx = NUMERIC_CTX

    def wrap(op: str, fn):
        def run(a: Decimal, b: Decimal) -> Decimal:
            if a.is_finite() and b.is_finite():
                return check_numeric(norm_numeric(fn(a, b)))
            return _num_special(op, a, b)

        return run

    def mod(a: Decimal, b: Decimal) -> Decimal:
        if b == 0 and b.is_finite() and not a.is_nan():
            raise _div_zero()
        return ctx.remainder(a, b)

    def neg(a: Decimal) -> Decimal:
        return ctx.minus(a) if not a.is_nan() else a

    return {
        "+": wrap("+", ctx.add),
        "-": wrap("-", ctx.subtract),
        "*": wrap("*", ctx.multiply),
        "/": _numeric_div,
        "%": wrap("%", mod),
        "neg": neg,
        "abs": lambda a: ctx.abs(a) if not a.is_nan() else a,
    }


def arith(t: str):
    if t in INT_RANGE:
        return _int_ops(t)
    if t in FLOAT_TYPES:
        return _float_ops(t)
    if t == "numeric":
        return _numeric_ops()
    raise EvalError(f"no arithmetic for {display(t)}")


# ---------------------------------------------------------------------------- date/time


def add_months(days: int, months: int) -> int:
    y, m, d = civil_from_days(days)
    total = y * 12 + (m - 1) + months
    ny, nm = divmod(total, 12)
    nm += 1
    return days_from_civil(ny, nm, min(d, days_in_month(ny, nm)))


def _iv_finite(iv) -> bool:
    return iv != INTERVAL_INF and iv != INTERVAL_NINF


def ts_plus_interval(ts, iv):
    if iv == INTERVAL_NINF:
        if ts == math.inf:
            raise EvalError("timestamp out of range")
        return -math.inf
    if iv == INTERVAL_INF:
        if ts == -math.inf:
            raise EvalError("timestamp out of range")
        return math.inf
    if isinstance(ts, float):
        return ts
    months, days, us = iv
    if months:
        d, rest = divmod(ts, USEC_DAY)
        ts = check_ts(add_months(d, months) * USEC_DAY + rest)
    if days:
        ts = check_ts(ts + days * USEC_DAY)
    return check_ts(ts + us)


def ts_minus_interval(ts, iv):
    return ts_plus_interval(ts, interval_neg(iv))


def ts_minus_ts(a, b):
    if isinstance(a, float) or isinstance(b, float):
        if a == -math.inf:
            if b == -math.inf:
                raise EvalError("interval out of range")
            return INTERVAL_NINF
        if a == math.inf:
            if b == math.inf:
                raise EvalError("interval out of range")
            return INTERVAL_INF
        return INTERVAL_INF if b == -math.inf else INTERVAL_NINF
    return justify_hours((0, 0, a - b))


def time_plus_interval(t: int, iv) -> int:
    if not _iv_finite(iv):
        raise EvalError("cannot add infinite interval to time")
    return (t + iv[2]) % USEC_DAY


def time_minus_interval(t: int, iv) -> int:
    if not _iv_finite(iv):
        raise EvalError("cannot subtract infinite interval from time")
    return (t - iv[2]) % USEC_DAY


def _finite_interval(months: int, days: int, us: int):
    if not (-(2**31) <= months <= 2**31 - 1 and -(2**31) <= days <= 2**31 - 1
            and -(2**63) <= us <= 2**63 - 1):
        raise EvalError("interval out of range")
    iv = (months, days, us)
    if not _iv_finite(iv):
        raise EvalError("interval out of range")
    return iv


def interval_add(a, b):
    if a == INTERVAL_NINF:
        if b == INTERVAL_INF:
            raise EvalError("interval out of range")
        return INTERVAL_NINF
    if a == INTERVAL_INF:
        if b == INTERVAL_NINF:
            raise EvalError("interval out of range")
        return INTERVAL_INF
    if not _iv_finite(b):
        return b
    return _finite_interval(a[0] + b[0], a[1] + b[1], a[2] + b[2])


def interval_sub(a, b):
    if a == INTERVAL_NINF:
        if b == INTERVAL_NINF:
            raise EvalError("interval out of range")
        return INTERVAL_NINF
    if a == INTERVAL_INF:
        if b == INTERVAL_INF:
            raise EvalError("interval out of range")
        return INTERVAL_INF
    if b == INTERVAL_NINF:
        return INTERVAL_INF
    if b == INTERVAL_INF:
        return INTERVAL_NINF
    return _finite_interval(a[0] - b[0], a[1] - b[1], a[2] - b[2])


def interval_neg(a):
    if a == INTERVAL_INF:
        return INTERVAL_NINF
    if a == INTERVAL_NINF:
        return INTERVAL_INF
    return _finite_interval(-a[0], -a[1], -a[2])


def _fits_i32(x: float) -> bool:
    return -2147483648.0 <= x < 2147483648.0


def _tsround(x: float) -> float:
    return _rint(x * 1e6) / 1e6


def _rint(x: float) -> float:
    return float(round(x))


def _interval_sign(iv) -> int:
    k = interval_key(iv)
    return (k > 0) - (k < 0)


def _interval_scale(iv, factor: float, divide: bool):
    """Postgres' interval_mul / interval_div (fractions cascade down, never up)."""
    if math.isnan(factor):
        raise EvalError("interval out of range")
    if divide and factor == 0.0:
        raise EvalError("division by zero")
    if not _iv_finite(iv):
        if (not divide and factor == 0.0) or (divide and math.isinf(factor)):
            raise EvalError("interval out of range")
        return interval_neg(iv) if factor < 0.0 else iv
    if math.isinf(factor):
        if divide:
            return (0, 0, 0)
        sign = _interval_sign(iv)
        if sign == 0:
            raise EvalError("interval out of range")
        return INTERVAL_NINF if factor * sign < 0 else INTERVAL_INF
    months, days, us = iv
    scale = (lambda v: v / factor) if divide else (lambda v: v * factor)
    rm = scale(float(months))
    if not _fits_i32(rm):
        raise EvalError("interval out of range")
    m_out = int(rm)
    rd = scale(float(days))
    if not _fits_i32(rd):
        raise EvalError("interval out of range")
    d_out = int(rd)
    month_remainder_days = _tsround((scale(float(months)) - m_out) * 30)
    sec_remainder = _tsround(
        (scale(float(days)) - d_out + month_remainder_days - int(month_remainder_days)) * 86400)
    if abs(sec_remainder) >= 86400:
        d_out += int(sec_remainder / 86400)
        sec_remainder -= int(sec_remainder / 86400) * 86400
    d_out += int(month_remainder_days)
    t = _rint(scale(float(us)) + sec_remainder * 1e6)
    if math.isnan(t) or not (-9223372036854775808.0 <= t < 9223372036854775808.0):
        raise EvalError("interval out of range")
    return _finite_interval(m_out, d_out, int(t))


def interval_mul(iv, factor: float):
    return _interval_scale(iv, factor, False)


def interval_div(iv, factor: float):
    return _interval_scale(iv, factor, True)


def date_plus_int(d, n: int):
    if isinstance(d, float):
        return d
    return check_date(d + n)


def date_minus_date(a, b):
    if isinstance(a, float) or isinstance(b, float):
        raise EvalError("cannot subtract infinite dates")
    return a - b


def _trunc_div(a: int, b: int) -> int:
    q = abs(a) // b
    return q if a >= 0 else -q


def justify_days(iv):
    if not _iv_finite(iv):
        return iv
    months, days, us = iv
    whole = _trunc_div(days, 30)
    days -= whole * 30
    months += whole
    if months > 0 and days < 0:
        days += 30
        months -= 1
    elif months < 0 and days > 0:
        days -= 30
        months += 1
    return _finite_interval(months, days, us)


def justify_hours(iv):
    if not _iv_finite(iv):
        return iv
    months, days, us = iv
    whole = _trunc_div(us, USEC_DAY)
    us -= whole * USEC_DAY
    days += whole
    if days > 0 and us < 0:
        us += USEC_DAY
        days -= 1
    elif days < 0 and us > 0:
        us -= USEC_DAY
        days += 1
    return _finite_interval(months, days, us)


def justify_interval(iv):
    if not _iv_finite(iv):
        return iv
    months, days, us = iv
    if (days > 0 and us > 0) or (days < 0 and us < 0):
        whole = _trunc_div(days, 30)
        days -= whole * 30
        months += whole
    whole = _trunc_div(us, USEC_DAY)
    us -= whole * USEC_DAY
    days += whole
    whole = _trunc_div(days, 30)
    days -= whole * 30
    months += whole
    if months > 0 and (days < 0 or (days == 0 and us < 0)):
        days += 30
        months -= 1
    elif months < 0 and (days > 0 or (days == 0 and us > 0)):
        days -= 30
        months += 1
    if days > 0 and us < 0:
        us += USEC_DAY
        days -= 1
    elif days < 0 and us > 0:
        us -= USEC_DAY
        days += 1
    return _finite_interval(months, days, us)


# ---------------------------------------------------------------------------- casts

# numeric types in the order of their implicit casts (each one casts to every later one)
NUM_RANK = {"int2": 0, "int4": 1, "int8": 2, "numeric": 3, "float4": 4, "float8": 5}


def _float_to_int(t: str):
    lo, hi = INT_RANGE[t]
    name = display(t)

    def conv(v: float) -> int:
        if v != v or math.isinf(v):
            raise EvalError(f"{name} out of range")
        r = int(round(v))
        if not lo <= r <= hi:
            raise EvalError(f"{name} out of range")
        return r

    return conv


def _numeric_to_int(t: str):
    lo, hi = INT_RANGE[t]
    name = display(t)

    def conv(v: Decimal) -> int:
        if v.is_nan():
            raise EvalError(f"cannot convert NaN to {name}")
        if v.is_infinite():
            raise EvalError(f"cannot convert infinity to {name}")
        r = int(round_numeric(v, 0))
        if not lo <= r <= hi:
            raise EvalError(f"{name} out of range")
        return r

    return conv


def _float_to_numeric(single: bool):
    digits = 6 if single else 15

    def conv(v: float) -> Decimal:
        if v != v:
            return _NAN
        if math.isinf(v):
            return Decimal("Infinity") if v > 0 else Decimal("-Infinity")
        return norm_numeric(Decimal(f"{v:.{digits}g}"))

    return conv


def _numeric_to_float(single: bool):
    def conv(v: Decimal) -> float:
        f = float(v)
        if v.is_finite() and (math.isinf(f) or (f == 0.0 and v != 0)):
            raise EvalError(f"value out of range: {'overflow' if math.isinf(f) else 'underflow'}")
        if single:
            try:
                f4 = to_float4(f)
            except OverflowError:
                raise EvalError("value out of range: overflow") from None
            if f4 == 0.0 and f != 0.0:
                raise EvalError("value out of range: underflow")
            return f4
        return f

    return conv


def _float8_to_float4(v: float) -> float:
    try:
        f4 = to_float4(v)
    except OverflowError:
        raise EvalError("value out of range: overflow") from None
    if f4 == 0.0 and v != 0.0:
        raise EvalError("value out of range: underflow")
    return f4


def numeric_typmod(precision: int, scale: int):
    def conv(v: Decimal) -> Decimal:
        if not v.is_finite():
            if v.is_nan():
                return v
            raise EvalError(f"numeric field overflow: cannot hold an infinite value in numeric({precision},{scale})")
        r = round_numeric(v, scale)
        if r != 0 and r.adjusted() >= precision - scale:
            raise EvalError(
                f"numeric field overflow: A field with precision {precision}, scale {scale} "
                f"must round to an absolute value less than 10^{precision - scale}."
            )
        return r

    return conv


def _string_cast(src: str, dst: str):
    if src == "bpchar" and dst != "bpchar":
        return lambda v: v.rstrip(" ")
    return _identity


def _identity(v):
    return v


def implicit_ok(src: str, dst: str) -> bool:
    """Whether Postgres would apply ``src -> dst`` implicitly (for our supported types)."""
    if src == dst:
        return True
    if src in NUM_RANK and dst in NUM_RANK:
        return NUM_RANK[src] < NUM_RANK[dst]
    if src in STRING_TYPES and dst in ("text", "varchar", "bpchar", "name"):
        return True
    if src == "date" and dst in ("timestamp", "timestamptz"):
        return True
    if src == "timestamp" and dst == "timestamptz":
        return True
    if src == "time" and dst == "interval":
        return True
    return False


def cast_fn(src: str, dst: str):
    """Value of type ``src`` -> value of type ``dst``; None when no such cast exists."""
    if src == dst:
        return _identity
    if is_array(src) or is_array(dst):
        if is_array(src) and is_array(dst):
            inner = cast_fn(elem_of(src), elem_of(dst))
            if inner is None:
                return None

            def conv_array(a: PgArray) -> PgArray:
                return PgArray(a.dims, a.lbs,
                               tuple(None if x is None else inner(x) for x in a.items))

            return conv_array
        if src in STRING_TYPES:
            parse = input_fn(dst)
            return lambda v: parse(v.rstrip(" ") if src == "bpchar" else v)
        if dst in ("text", "varchar", "name"):
            return output_fn(src)
        return None
    if dst in STRING_TYPES:
        if src in STRING_TYPES:
            return _string_cast(src, dst)
        out = output_fn(src) if not src.startswith("opaque:") else None
        if out is None:
            return None
        return out
    if src in STRING_TYPES:
        if dst.startswith(("enum:", "opaque:")):
            return None
        parse = input_fn(dst)
        if src == "bpchar":
            return lambda v: parse(v.rstrip(" "))
        return parse
    if src in INT_RANGE:
        if dst in INT_RANGE:
            return lambda v: check_int(dst, v)
        if dst == "numeric":
            return Decimal
        if dst == "float8":
            return float
        if dst == "float4":
            return lambda v: to_float4(float(v))
        if dst == "bool" and src == "int4":
            return bool
        return None
    if src in FLOAT_TYPES:
        if dst in INT_RANGE:
            return _float_to_int(dst)
        if dst == "numeric":
            return _float_to_numeric(src == "float4")
        if dst == "float8":
            return _identity
        if dst == "float4":
            return _float8_to_float4
        return None
    if src == "numeric":
        if dst in INT_RANGE:
            return _numeric_to_int(dst)
        if dst in FLOAT_TYPES:
            return _numeric_to_float(dst == "float4")
        return None
    if src == "bool" and dst == "int4":
        return int
    if src == "date":
        if dst in ("timestamp", "timestamptz"):
            return lambda d: d if isinstance(d, float) else check_ts(d * USEC_DAY)
        return None
    if src in ("timestamp", "timestamptz"):
        if dst in ("timestamp", "timestamptz"):
            return _identity
        if dst == "date":
            return lambda ts: ts if isinstance(ts, float) else ts // USEC_DAY
        if dst == "time":
            def ts_time(ts):
                if isinstance(ts, float):
                    raise EvalError("timestamp out of range")
                return ts % USEC_DAY
            return ts_time
        return None
    if src == "time" and dst == "interval":
        return lambda t: (0, 0, t)
    if src == "interval" and dst == "time":
        def iv_time(iv):
            if iv in (INTERVAL_INF, INTERVAL_NINF):
                raise EvalError("cannot convert infinite interval to time")
            return iv[2] % USEC_DAY
        return iv_time
    return None


def varchar_typmod(n: int, pad: bool):
    """Explicit cast to varchar(n) / char(n): truncate (and pad for char)."""
    if pad:
        return lambda v: v[:n].ljust(n, " ") if len(v.rstrip(" ")) <= n else v[:n]
    return lambda v: v[:n]


# ---------------------------------------------------------------------------- text


LikeMatch = Callable[[str], bool]


def compile_like(pattern: str, escape: str | None,
                 charge: Callable[[int], None] | None = None) -> tuple[LikeMatch, int]:
    """A LIKE pattern -> ``(match, factor)``; Postgres semantics (whole-string
    match, ``_`` one character, ``%`` any run, ``escape`` quoting the next character).
    ILIKE lower-cases pattern and subject before (``ascii_lower``).

    No backtracking: the pattern is split at ``%`` into fixed-length segments (literal
    characters and ``_``); the first must match at the start, the last at the end, and the
    middle ones are found leftmost, in order, in between (the leftmost placement of a
    fixed-length segment never removes a placement of the later ones). A segment without
    ``_`` is found with ``str.find`` (linear); one with ``_`` with a regular expression
    without repetition (at most its length per position). ``factor`` bounds the work per
    subject character (the work limit charges ``len(subject) * factor``); ``charge`` is
    called with the work of building the matcher before each costly step."""
    if escape is not None and len(escape) > 1:
        raise EvalError("invalid escape string")
    if charge is not None:  # splitting (character by character with escapes) into runs
        charge(len(pattern) * (REGEX_UNIT_COST // 16 if escape and escape in pattern else 1)
               + pattern.count("_") * (REGEX_UNIT_COST // 32))
    segments = _like_segments(pattern, escape)
    if charge is not None:
        charge(REGEX_UNIT_COST * sum(_seg_len(seg) for seg in segments if len(seg) > 1))
    factor = 1 + sum(_seg_len(seg) for seg in segments[1:-1] if len(seg) > 1)
    return _like_match(segments), factor


def like_matcher(pattern: str, escape: str | None) -> LikeMatch:
    """The predicate of :func:`compile_like`."""
    return compile_like(pattern, escape)[0]


def _like_segments(pattern: str, escape: str | None) -> list[list[str]]:
    """The ``%``-separated segments, each as its literal runs (between two runs: one
    ``_``); escaped characters are literal."""
    if not escape or escape not in pattern:
        return [seg.split("_") for seg in pattern.split("%")]
    segments: list[list[str]] = []
    runs: list[str] = []
    run: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == escape:
            if i + 1 >= n:
                raise EvalError("LIKE pattern must not end with escape character")
            run.append(pattern[i + 1])
            i += 2
            continue
        if c == "%":
            runs.append("".join(run))
            segments.append(runs)
            runs, run = [], []
        elif c == "_":
            runs.append("".join(run))
            run = []
        else:
            run.append(c)
        i += 1
    runs.append("".join(run))
    segments.append(runs)
    return segments


def _seg_len(seg: list[str]) -> int:
    return sum(map(len, seg)) + len(seg) - 1


def _seg_regex(seg: list[str]) -> re.Pattern[str]:
    return re.compile(".".join(map(re.escape, seg)), re.DOTALL)


def _like_match(segments: list[list[str]]) -> LikeMatch:
    head, tail = segments[0], segments[-1]
    if len(segments) == 1:
        if len(head) == 1:
            lit = head[0]
            return lambda s: s == lit
        k, rx = _seg_len(head), _seg_regex(head)
        return lambda s: len(s) == k and rx.match(s) is not None
    mids = [seg for seg in segments[1:-1] if seg != [""]]
    simple = len(head) == 1 and len(tail) == 1 and all(len(m) == 1 for m in mids)
    if simple and len(mids) <= 1:
        pre, suf = head[0], tail[0]
        if not mids:
            if not suf:
                return lambda s: s.startswith(pre)
            if not pre:
                return lambda s: s.endswith(suf)
            need = len(pre) + len(suf)
            return lambda s: len(s) >= need and s.startswith(pre) and s.endswith(suf)
        mid = mids[0][0]
        if not pre and not suf:
            return lambda s: mid in s
    return _like_general(head, tail, mids)


def _like_general(head: list[str], tail: list[str], mids: list[list[str]]) -> LikeMatch:
    kh, kt = _seg_len(head), _seg_len(tail)
    head_rx = _seg_regex(head) if len(head) > 1 else None
    tail_rx = _seg_regex(tail) if len(tail) > 1 else None
    pre, suf = head[0], tail[0]
    steps = [(m[0], None, _seg_len(m)) if len(m) == 1 else ("", _seg_regex(m), _seg_len(m))
             for m in mids]

    def match(s: str) -> bool:
        end = len(s) - kt
        if end < kh:
            return False
        if head_rx is None:
            if not s.startswith(pre):
                return False
        elif head_rx.match(s) is None:
            return False
        if tail_rx is None:
            if not s.endswith(suf):
                return False
        elif tail_rx.match(s, end) is None:
            return False
        pos = kh
        for lit, rx, k in steps:
            if rx is None:
                j = s.find(lit, pos, end)
                if j < 0:
                    return False
                pos = j + k
            else:
                m = rx.search(s, pos, end)
                if m is None:
                    return False
                pos = m.end()
        return True

    return match


def ascii_lower(s: str) -> str:
    """lower() under the C locale: only ASCII letters are folded."""
    return s.translate(_LOWER) if not s.isascii() else s.lower()


def ascii_upper(s: str) -> str:
    return s.translate(_UPPER) if not s.isascii() else s.upper()


_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}
_UPPER = {c: c - 32 for c in range(ord("a"), ord("z") + 1)}
