"""``numeric ^ numeric`` / power(numeric, numeric) as Postgres computes it (numeric.c:
numeric_power, power_var, power_var_int, estimate_ln_dweight).

The result scale is chosen exactly as Postgres does (from double-precision estimates of
the result's weight, replicated step by step), and the value is the exact result rounded
half away from zero to that scale. Postgres itself computes with guard digits (8 or more)
and then rounds, so the two agree except where the exact result lies within the guard
digits' error of a rounding boundary — for integer exponents up to 2 (and -1) Postgres is
exact, and inputs of more digits than the result scale cannot produce such a tie.
For non-integer exponents the intermediate roundings Postgres applies to ln(base) and to
exp * ln(base) are reproduced, so those agree too.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Context, Decimal
from functools import lru_cache

from .errors import EvalError
from .values import finite_exponent, numeric_scale

NUMERIC_MIN_SIG_DIGITS = 16
NUMERIC_MAX_DISPLAY_SCALE = 1000
NUMERIC_MAX_RESULT_SCALE = 2000
NUMERIC_WEIGHT_MAX = 32767
DEC_DIGITS = 4
NBASE = 10000

_ONE = Decimal(1)
_ZERO = Decimal(0)
_NAN = Decimal("NaN")
_PINF = Decimal("Infinity")
_NINF = Decimal("-Infinity")


@lru_cache(maxsize=256)
def _ctx(prec: int) -> Context:
    return Context(prec=max(prec, 1), Emax=999_999_999, Emin=-999_999_999)


# wide enough for exact sums and products of numeric values (at most ~150000 digits)
_EXACT = Context(prec=999_999, Emax=999_999_999, Emin=-999_999_999)


def _overflow() -> EvalError:
    return EvalError("value overflows numeric format")


def _nbase(d: Decimal) -> tuple[int, list[int]]:
    """(weight, base-10000 digits) of abs(d) != 0, trailing zero digits stripped, as in
    Postgres' NumericVar; only the leading :data:`_NBASE_LEAD` digits when there are more
    (the callers look at the first few), without converting the whole coefficient."""
    coef = "".join(map(str, d.as_tuple().digits)).lstrip("0")
    trimmed = coef.rstrip("0")
    exp = finite_exponent(d) + len(coef) - len(trimmed)  # abs(d) = trimmed * 10^exp
    shift = exp % DEC_DIGITS  # align the exponent on a base-10000 digit
    trimmed = "0" * ((-len(trimmed) - shift) % DEC_DIGITS) + trimmed + "0" * shift
    exp -= shift
    groups = len(trimmed) // DEC_DIGITS
    weight = groups - 1 + exp // DEC_DIGITS
    out = [int(trimmed[i:i + DEC_DIGITS])
           for i in range(0, min(groups, _NBASE_LEAD) * DEC_DIGITS, DEC_DIGITS)]
    if groups <= _NBASE_LEAD:
        while out and out[-1] == 0:
            out.pop()
    return weight, out


_NBASE_LEAD = 8


def _round(d: Decimal, scale: int) -> Decimal:
    """round_var: half away from zero to ``scale`` fractional digits."""
    digits = max(d.adjusted(), 0) + scale + 2 if d else 1
    return d.quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP,
                      context=_ctx(digits + 5))


def _zero(scale: int) -> Decimal:
    return Decimal((0, (0,), -scale))


def _is_integral(d: Decimal) -> bool:
    return d == d.to_integral_value()


def _estimate_ln_dweight(base: Decimal) -> int:
    if base <= 0:
        return 0
    if Decimal("0.9") <= base <= Decimal("1.1"):
        x = _EXACT.subtract(base, _ONE)
        if x == 0:
            return 0
        w, ds = _nbase(x)
        return w * DEC_DIGITS + int(math.log10(ds[0]))
    w, ds = _nbase(base)
    digits = ds[0]
    dweight = w * DEC_DIGITS
    if len(ds) > 1:
        digits = digits * NBASE + ds[1]
        dweight -= DEC_DIGITS
    ln = math.log(float(digits)) + dweight * 2.302585092994046
    return int(math.log10(abs(ln)))


def _ln_rounded(base: Decimal, scale: int) -> Decimal:
    """ln_var(base, scale): ln(base) rounded to ``scale`` fractional digits."""
    # ln(x) for x in numeric's range is below 10^6 in magnitude
    return _round(base.ln(_ctx(scale + 12)), scale)


def _exp_rounded(x: Decimal, rscale: int) -> Decimal:
    """exp_var(x, rscale)."""
    val = float(x)
    if abs(val) >= NUMERIC_MAX_RESULT_SCALE * 3:
        if val > 0:
            raise _overflow()
        return _zero(rscale)
    int_digits = max(int(val * 0.434294481903252) + 2, 1)
    return _round(x.exp(_ctx(int_digits + rscale + 12)), rscale)


def _power_int(base: Decimal, exp: int, exp_dscale: int) -> Decimal:
    """power_var_int."""
    if base != 0:
        w, ds = _nbase(base)
        f = float(ds[0])
        p = w * DEC_DIGITS
        i = 1
        while i < len(ds) and i * DEC_DIGITS < 16:
            f = f * NBASE + ds[i]
            p -= DEC_DIGITS
            i += 1
        f = exp * (math.log10(f) + p)
    else:
        f = 0.0
    if f > (NUMERIC_WEIGHT_MAX + 1) * DEC_DIGITS:
        raise _overflow()
    if f + 1 < -NUMERIC_MAX_DISPLAY_SCALE:
        return _zero(NUMERIC_MAX_DISPLAY_SCALE)
    rscale = NUMERIC_MIN_SIG_DIGITS - int(f)
    rscale = max(rscale, numeric_scale(base), exp_dscale, 0)
    rscale = min(rscale, NUMERIC_MAX_DISPLAY_SCALE)
    if exp == 0:
        return _round(_ONE, rscale)
    if base == 0:
        if exp < 0:
            raise EvalError("division by zero")
        return _zero(rscale)
    # the exact power, with guard digits beyond the result scale
    prec = max(int(f), 0) + rscale + 30
    value = _ctx(prec).power(base, exp)
    result = _round(value, rscale)
    if result and result.adjusted() >= (NUMERIC_WEIGHT_MAX + 1) * DEC_DIGITS:
        raise _overflow()
    return result


def _power_ln(base: Decimal, exp: Decimal) -> Decimal:
    """power_var's general case: exp(exp * ln(base))."""
    if base == 0:
        return _zero(NUMERIC_MIN_SIG_DIGITS)
    negative = False
    if base < 0:
        if not _is_integral(exp):
            raise EvalError("a negative number raised to a non-integer power yields a "
                            "complex result")
        negative = int(exp) % 2 == 1
        base = base.copy_negate()
    ln_dweight = _estimate_ln_dweight(base)
    local_rscale = max(8 - ln_dweight, 0)
    ln_num = _round(_EXACT.multiply(_ln_rounded(base, local_rscale), exp), local_rscale)
    val = float(ln_num)
    if abs(val) > NUMERIC_MAX_RESULT_SCALE * 3.01:
        if val > 0:
            raise _overflow()
        return _zero(NUMERIC_MAX_DISPLAY_SCALE)
    val *= 0.434294481903252
    rscale = NUMERIC_MIN_SIG_DIGITS - int(val)
    rscale = max(rscale, numeric_scale(base), numeric_scale(exp), 0)
    rscale = min(rscale, NUMERIC_MAX_DISPLAY_SCALE)
    sig_digits = max(rscale + int(val), 0)
    local_rscale = max(sig_digits - ln_dweight + 8, 0)
    ln_num = _round(_EXACT.multiply(_ln_rounded(base, local_rscale), exp), local_rscale)
    result = _exp_rounded(ln_num, rscale)
    if negative and result:
        result = result.copy_negate()
    return result


def _special(a: Decimal, b: Decimal) -> Decimal:
    """NaN and infinities (POSIX pow() rules, as numeric_power applies them)."""
    if a.is_nan():
        return _ONE if b.is_finite() and b == 0 else _NAN
    if b.is_nan():
        return _ONE if a.is_finite() and a == 1 else _NAN
    sign_a = (a > 0) - (a < 0)
    sign_b = (b > 0) - (b < 0)
    if sign_a == 0 and sign_b < 0:
        raise EvalError("zero raised to a negative power is undefined")
    if sign_a < 0 and b.is_finite() and not _is_integral(b):  # infinities count as integral
        raise EvalError("a negative number raised to a non-integer power yields a complex result")
    if a.is_finite() and a == 1:
        return _ONE
    if sign_b == 0:
        return _ONE
    if sign_a == 0 and sign_b > 0:
        return _ZERO
    if b.is_infinite():
        if a.is_finite():
            if a == -1:
                return _ONE
            abs_gt_one = a.copy_abs() > 1
        else:
            abs_gt_one = True
        return _PINF if abs_gt_one == (sign_b > 0) else _ZERO
    if a == _PINF:
        return _PINF if sign_b > 0 else _ZERO
    # a is -Infinity, b finite and integral
    if sign_b < 0:
        return _ZERO
    return _NINF if int(b) % 2 == 1 else _PINF


def numeric_power(a: Decimal, b: Decimal) -> Decimal:
    if not (a.is_finite() and b.is_finite()):
        return _special(a, b)
    if a == 0 and b < 0:
        raise EvalError("zero raised to a negative power is undefined")
    if _is_integral(b):
        e = int(b)
        if -(2**31) <= e <= 2**31 - 1:
            return _power_int(a, e, numeric_scale(b))
    return _power_ln(a, b)
