"""Postgres text <-> Python values, per type, with Postgres' input rules.

Representations (chosen so that Python comparison operators give Postgres' ordering
wherever possible):

- int2/int4/int8: ``int``; numeric: ``decimal.Decimal`` whose exponent is the display
  scale (NaN / +-Infinity as Decimal specials); float4/float8: ``float`` (float4 rounded to
  single precision)
- bool: ``bool``; text/varchar/name/enums: ``str``; bpchar: ``str`` as stored (padded), its
  comparisons ignore trailing spaces
- uuid: canonical lower-case ``str`` (so ``str`` ordering is Postgres' byte ordering)
- date: days since 1970-01-01 (``int``), +-infinity as ``float('inf')``
- timestamp / timestamptz: microseconds since 1970-01-01 00:00 (UTC for timestamptz),
  +-infinity as floats
- time: microseconds since midnight
- interval: ``(months, days, microseconds)``
- arrays: :class:`PgArray`
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Context, Decimal, localcontext
from typing import Any

from .errors import EvalError

# ---------------------------------------------------------------------------- type names

INT_TYPES = ("int2", "int4", "int8")
FLOAT_TYPES = ("float4", "float8")
NUMBER_TYPES = (*INT_TYPES, "numeric", *FLOAT_TYPES)
STRING_TYPES = ("text", "varchar", "bpchar", "name")
TIME_TYPES = ("date", "time", "timestamp", "timestamptz", "interval")
SCALAR_TYPES = (*NUMBER_TYPES, *STRING_TYPES, "bool", "uuid", *TIME_TYPES)

INT_RANGE = {
    "int2": (-(2**15), 2**15 - 1),
    "int4": (-(2**31), 2**31 - 1),
    "int8": (-(2**63), 2**63 - 1),
}

# Human names used in messages (as Postgres spells them)
DISPLAY = {
    "int2": "smallint", "int4": "integer", "int8": "bigint", "numeric": "numeric",
    "float4": "real", "float8": "double precision", "bool": "boolean", "text": "text",
    "varchar": "character varying", "bpchar": "character", "name": "name", "uuid": "uuid",
    "date": "date", "time": "time without time zone",
    "timestamp": "timestamp without time zone", "timestamptz": "timestamp with time zone",
    "interval": "interval",
}


def is_array(t: str) -> bool:
    return t.endswith("[]")


def elem_of(t: str) -> str:
    return t[:-2]


def display(t: str) -> str:
    if is_array(t):
        return display(elem_of(t)) + "[]"
    if t.startswith(("enum:", "opaque:")):
        return t.split(":", 1)[1]
    return DISPLAY.get(t, t)


def _invalid(t: str, text: str) -> EvalError:
    return EvalError(f'invalid input syntax for type {display(t)}: "{text}"')


def _range(t: str, text: str) -> EvalError:
    return EvalError(f'value "{text}" is out of range for type {display(t)}')


# ---------------------------------------------------------------------------- integers

_WS = " \t\n\r\v\f"
_DEC_INT = re.compile(r"[0-9]+(?:_[0-9]+)*")
_HEX_INT = re.compile(r"0[xX](?:_?[0-9a-fA-F]+)+")
_OCT_INT = re.compile(r"0[oO](?:_?[0-7]+)+")
_BIN_INT = re.compile(r"0[bB](?:_?[01]+)+")


def _parse_int(t: str, text: str) -> int:
    s = text.strip(_WS)
    sign = 1
    if s[:1] in ("+", "-"):
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if _DEC_INT.fullmatch(s):
        value = int(s.replace("_", ""))
    elif _HEX_INT.fullmatch(s):
        value = int(s[2:].replace("_", ""), 16)
    elif _OCT_INT.fullmatch(s):
        value = int(s[2:].replace("_", ""), 8)
    elif _BIN_INT.fullmatch(s):
        value = int(s[2:].replace("_", ""), 2)
    else:
        raise _invalid(t, text)
    value *= sign
    lo, hi = INT_RANGE[t]
    if not lo <= value <= hi:
        raise _range(t, text)
    return value


def check_int(t: str, value: int) -> int:
    lo, hi = INT_RANGE[t]
    if not lo <= value <= hi:
        raise EvalError(f"{display(t)} out of range")
    return value


# ---------------------------------------------------------------------------- numeric

NUMERIC_CTX = Context(prec=200_000, Emax=999_999, Emin=-999_999)
_NUMERIC_RE = re.compile(
    r"[+-]?(?:[0-9]+(?:_[0-9]+)*(?:\.(?:[0-9]+(?:_[0-9]+)*)?)?|\.[0-9]+(?:_[0-9]+)*)"
    r"(?:[eE][+-]?[0-9]+)?"
)
_NUMERIC_SPECIAL = {
    "nan": Decimal("NaN"), "infinity": Decimal("Infinity"), "+infinity": Decimal("Infinity"),
    "-infinity": Decimal("-Infinity"), "inf": Decimal("Infinity"), "+inf": Decimal("Infinity"),
    "-inf": Decimal("-Infinity"),
}
NUMERIC_MAX_SCALE = 16383


def finite_exponent(d: Decimal) -> int:
    """The exponent of a finite Decimal (minus its display scale)."""
    exp = d.as_tuple().exponent
    if not isinstance(exp, int):  # "n", "N" or "F": NaN, sNaN, Infinity
        raise ValueError(f"{d} is not finite")
    return exp


def norm_numeric(d: Decimal) -> Decimal:
    """No positive exponents: Postgres' display scale is never negative."""
    exp = d.as_tuple().exponent
    if isinstance(exp, int) and exp > 0:  # finite (the exponent of a special is a str)
        with localcontext(NUMERIC_CTX):
            return d.quantize(Decimal(1))
    return d


def _parse_numeric(text: str) -> Decimal:
    s = text.strip(_WS)
    special = _NUMERIC_SPECIAL.get(s.lower())
    if special is not None:
        return special
    if _NUMERIC_RE.fullmatch(s):
        d = Decimal(s.replace("_", ""))
    else:
        body = s[1:] if s[:1] in "+-" else s
        if _HEX_INT.fullmatch(body) or _OCT_INT.fullmatch(body) or _BIN_INT.fullmatch(body):
            base = {"x": 16, "o": 8, "b": 2}[body[1].lower()]
            d = Decimal(int(body[2:].replace("_", ""), base) * (-1 if s[0] == "-" else 1))
        else:
            raise _invalid("numeric", text)
    exp = finite_exponent(d)
    if -exp > NUMERIC_MAX_SCALE or d.adjusted() >= 131072:
        raise EvalError("value overflows numeric format")
    return norm_numeric(d)


def numeric_scale(d: Decimal) -> int:
    return max(0, -finite_exponent(d)) if d.is_finite() else 0


def round_numeric(d: Decimal, scale: int) -> Decimal:
    """Round half away from zero to ``scale`` digits (Postgres' numeric rounding)."""
    if not d.is_finite():
        return d
    with localcontext(NUMERIC_CTX):
        return d.quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP)


# ---------------------------------------------------------------------------- floats

_FLOAT_RE = re.compile(
    r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf(?:inity)?|nan)",
    re.IGNORECASE,
)
_HEX_FLOAT_RE = re.compile(r"[+-]?0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][+-]?[0-9]+)?")
_F4 = struct.Struct("f")


def to_float4(x: float) -> float:
    """Round a double to single precision; overflow -> OverflowError."""
    r = _F4.unpack(_F4.pack(x))[0]
    if r in (_INF, -_INF) and x not in (_INF, -_INF):
        raise OverflowError("float4 overflow")
    return r


_INF = float("inf")


def _parse_float(t: str, text: str) -> float:
    s = text.strip(_WS)
    if _FLOAT_RE.fullmatch(s):
        value = float(s)
    elif _HEX_FLOAT_RE.fullmatch(s):
        body = s.lstrip("+-")
        value = float.fromhex(body) * (-1.0 if s.startswith("-") else 1.0)
    else:
        raise _invalid(t, text)
    lowered = s.lower().lstrip("+-")
    explicit_special = lowered.startswith(("inf", "nan"))
    if not explicit_special:
        mantissa_nonzero = any(c in "123456789" for c in re.split("[eEpP]", lowered)[0].replace("0x", ""))
        if math.isinf(value) or (value == 0.0 and mantissa_nonzero):
            raise EvalError(f'"{s}" is out of range for type {display(t)}')
    if t == "float4" and not explicit_special:
        try:
            f4 = to_float4(value)
        except OverflowError:
            raise EvalError(f'"{s}" is out of range for type real') from None
        if f4 == 0.0 and value != 0.0:
            raise EvalError(f'"{s}" is out of range for type real')
        return f4
    return value


def float_out(x: float, single: bool = False) -> str:
    """Shortest-exact output as Postgres prints it (extra_float_digits > 0)."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0.0:
        return "-0" if math.copysign(1.0, x) < 0 else "0"
    if single:
        digits_text = _shortest_float4(x)
    else:
        digits_text = repr(x)
    d = Decimal(digits_text).normalize()
    sign, digits, _ = d.as_tuple()
    exp = finite_exponent(d)
    ds = "".join(map(str, digits))
    point = len(ds) + exp  # decimal exponent of the first digit is point - 1
    sci = point - 1
    limit = 6 if single else 15
    out = "-" if sign else ""
    if -4 <= sci < limit:
        if point <= 0:
            out += "0." + "0" * (-point) + ds
        elif point >= len(ds):
            out += ds + "0" * (point - len(ds))
        else:
            out += ds[:point] + "." + ds[point:]
    else:
        mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        out += f"{mant}e{'-' if sci < 0 else '+'}{abs(sci):02d}"
    return out


def _shortest_float4(x: float) -> str:
    for prec in range(1, 10):
        s = f"{x:.{prec}g}"
        if to_float4(float(s)) == x:
            return s
    return repr(x)


# ---------------------------------------------------------------------------- bool

_TRUE_WORDS = ("true", "yes", "on")
_FALSE_WORDS = ("false", "no", "off")


def _parse_bool(text: str) -> bool:
    s = text.strip(_WS).lower()
    if s in ("1", "t", "y"):
        return True
    if s in ("0", "f", "n"):
        return False
    if s:
        if s[0] == "o":
            if len(s) >= 2 and "on".startswith(s):
                return True
            if len(s) >= 2 and "off".startswith(s):
                return False
        else:
            for w in _TRUE_WORDS:
                if w.startswith(s):
                    return True
            for w in _FALSE_WORDS:
                if w.startswith(s):
                    return False
    raise _invalid("bool", text)


# ---------------------------------------------------------------------------- uuid

_UUID_RE = re.compile(r"\{?([0-9a-fA-F]{4}-?){7}[0-9a-fA-F]{4}\}?")


def _parse_uuid(text: str) -> str:
    s = text.strip(_WS)
    if not _UUID_RE.fullmatch(s) or (s.startswith("{") != s.endswith("}")):
        raise _invalid("uuid", text)
    h = s.strip("{}").replace("-", "").lower()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# ---------------------------------------------------------------------------- dates/times

USEC_DAY = 86_400_000_000
USEC_HOUR = 3_600_000_000
USEC_MIN = 60_000_000
USEC_SEC = 1_000_000
INF = float("inf")


def days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (astronomical year)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def civil_from_days(z: int) -> tuple[int, int, int]:
    z += 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    return y + (m <= 2), m, d


def days_in_month(y: int, m: int) -> int:
    if m == 2:
        return 29 if (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)) else 28
    return 30 if m in (4, 6, 9, 11) else 31


DATE_MIN = days_from_civil(-4713, 11, 24)
DATE_MAX = days_from_civil(5874897, 12, 31)
TS_MIN = DATE_MIN * USEC_DAY
TS_MAX = days_from_civil(294277, 1, 1) * USEC_DAY - 1

_DATE_RE = re.compile(r"(\d{1,7})-(\d{1,2})-(\d{1,2})|(\d{4})(\d{2})(\d{2})")
_TIME_RE = re.compile(r"(\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.(\d*))?)?")
_TZ_RE = re.compile(r"(?:([zZ])|([+-])(\d{1,2})(?::?(\d{2}))?(?::?(\d{2}))?)")
_DATETIME_RE = re.compile(
    r"(?P<date>\d{1,7}-\d{1,2}-\d{1,2}|\d{8})"
    r"(?:(?:[ \t]+|[tT])(?P<time>\d{1,2}:\d{1,2}(?::\d{1,2}(?:\.\d*)?)?)"
    r"[ \t]*(?P<tz>[zZ]|[+-]\d{1,2}(?::?\d{2})?(?::?\d{2})?)?)?"
    r"(?:[ \t]+(?P<era>BC|AD|bc|ad))?"
)
_TIME_ONLY_RE = re.compile(
    r"(?P<time>\d{1,2}:\d{1,2}(?::\d{1,2}(?:\.\d*)?)?)"
    r"(?:[ \t]*(?P<ampm>[aApP][mM]))?"
    r"[ \t]*(?P<tz>[zZ]|[+-]\d{1,2}(?::?\d{2})?(?::?\d{2})?)?"
)
_SPECIAL_TIME_WORDS = ("now", "today", "tomorrow", "yesterday")


def _frac_usec(frac: str | None) -> int:
    if not frac:
        return 0
    return round(float("0." + frac) * 1_000_000)


def _parse_date_part(t: str, text: str, s: str, era: str | None) -> int:
    m = _DATE_RE.fullmatch(s)
    if not m:
        raise _invalid(t, text)
    g = m.groups()
    y, mo, d = (int(x) for x in (g[:3] if g[0] is not None else g[3:]))
    if y == 0:
        raise EvalError(f'date/time field value out of range: "{text}"')
    if era and era.lower() == "bc":
        y = 1 - y
    if not (1 <= mo <= 12 and 1 <= d <= days_in_month(y, mo)):
        raise EvalError(f'date/time field value out of range: "{text}"')
    return days_from_civil(y, mo, d)


def _parse_time_part(t: str, text: str, s: str, ampm: str | None = None) -> int:
    m = _TIME_RE.fullmatch(s)
    if not m:
        raise _invalid(t, text)
    h, mi = int(m.group(1)), int(m.group(2))
    sec = int(m.group(3) or 0)
    us = _frac_usec(m.group(4))
    if ampm:
        if not 1 <= h <= 12:
            raise EvalError(f'date/time field value out of range: "{text}"')
        h = h % 12 + (12 if ampm.lower() == "pm" else 0)
    if mi > 59 or sec > 60 or h > 24:
        raise EvalError(f'date/time field value out of range: "{text}"')
    total = ((h * 60 + mi) * 60 + sec) * USEC_SEC + us
    if total > USEC_DAY:
        raise EvalError(f'date/time field value out of range: "{text}"')
    return total


def _parse_tz(text: str, tz: str | None) -> int:
    """Offset east of UTC in seconds."""
    if not tz or tz in "zZ":
        return 0
    m = _TZ_RE.fullmatch(tz)
    assert m is not None  # the caller's pattern matched the same syntax
    sign = -1 if m.group(2) == "-" else 1
    hh, mm, ss = int(m.group(3)), int(m.group(4) or 0), int(m.group(5) or 0)
    if len(m.group(3)) > 2 or hh > 15 or mm > 59 or ss > 59:
        raise EvalError(f'time zone displacement out of range: "{text}"')
    return sign * (hh * 3600 + mm * 60 + ss)


def _special_date(s: str) -> int | float | None:
    """The value of a special date / timestamp word (None: not one)."""
    low = s.lower()
    if low == "infinity" or low == "+infinity":
        return INF
    if low == "-infinity":
        return -INF
    if low == "epoch":
        return 0
    if low in _SPECIAL_TIME_WORDS:
        raise EvalError(f'"{s}" is not supported: its value depends on the current time')
    return None


def _parse_date(text: str):
    s = text.strip(_WS)
    special = _special_date(s)
    if special is not None:
        return special
    m = _DATETIME_RE.fullmatch(s)
    if not m:
        raise _invalid("date", text)
    days = _parse_date_part("date", text, m.group("date"), m.group("era"))
    if m.group("time"):
        _parse_time_part("date", text, m.group("time"))
    if not DATE_MIN <= days <= DATE_MAX:
        raise EvalError(f'date out of range: "{text}"')
    return days


def _parse_timestamp(t: str, text: str):
    s = text.strip(_WS)
    special = _special_date(s)
    if special is not None:
        return special
    m = _DATETIME_RE.fullmatch(s)
    if not m:
        raise _invalid(t, text)
    days = _parse_date_part(t, text, m.group("date"), m.group("era"))
    us = _parse_time_part(t, text, m.group("time")) if m.group("time") else 0
    value = days * USEC_DAY + us
    if t == "timestamptz":
        value -= _parse_tz(text, m.group("tz")) * USEC_SEC
    else:
        _parse_tz(text, m.group("tz"))
    if not TS_MIN <= value <= TS_MAX:
        raise EvalError(f'timestamp out of range: "{text}"')
    return value


def _parse_time(text: str) -> int:
    s = text.strip(_WS)
    if s.lower() == "allballs":
        return 0
    m = _TIME_ONLY_RE.fullmatch(s)
    if not m:
        m2 = _DATETIME_RE.fullmatch(s)
        if m2 and m2.group("time"):
            _parse_date_part("time", text, m2.group("date"), m2.group("era"))
            return _parse_time_part("time", text, m2.group("time"))
        raise _invalid("time", text)
    return _parse_time_part("time", text, m.group("time"), m.group("ampm"))


def date_out(days) -> str:
    if days == INF:
        return "infinity"
    if days == -INF:
        return "-infinity"
    y, m, d = civil_from_days(days)
    if y <= 0:
        return f"{1 - y:04d}-{m:02d}-{d:02d} BC"
    return f"{y:04d}-{m:02d}-{d:02d}"


def time_out(us: int) -> str:
    sec, frac = divmod(us, USEC_SEC)
    h, rem = divmod(sec, 3600)
    mi, s = divmod(rem, 60)
    out = f"{h:02d}:{mi:02d}:{s:02d}"
    if frac:
        out += f".{frac:06d}".rstrip("0")
    return out


def timestamp_out(us, tz: bool = False) -> str:
    if us == INF:
        return "infinity"
    if us == -INF:
        return "-infinity"
    days, rest = divmod(us, USEC_DAY)
    y, m, d = civil_from_days(days)
    bc = y <= 0
    out = f"{(1 - y) if bc else y:04d}-{m:02d}-{d:02d} {time_out(rest)}"
    if tz:
        out += "+00"
    return out + (" BC" if bc else "")


def check_date(days):
    if isinstance(days, float):
        return days
    if not DATE_MIN <= days <= DATE_MAX:
        raise EvalError("date out of range")
    return days


def check_ts(us):
    if isinstance(us, float):
        return us
    if not TS_MIN <= us <= TS_MAX:
        raise EvalError("timestamp out of range")
    return us


# ---------------------------------------------------------------------------- interval

_ISO_INTERVAL_RE = re.compile(
    r"P(?:(?P<Y>[+-]?\d+(?:\.\d+)?)Y)?(?:(?P<M>[+-]?\d+(?:\.\d+)?)M)?(?:(?P<W>[+-]?\d+(?:\.\d+)?)W)?"
    r"(?:(?P<D>[+-]?\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<h>[+-]?\d+(?:\.\d+)?)H)?(?:(?P<m>[+-]?\d+(?:\.\d+)?)M)?(?:(?P<s>[+-]?\d+(?:\.\d*)?)S)?)?"
)
_UNITS = {
    "microsecond": ("us", 1), "microseconds": ("us", 1), "us": ("us", 1), "usec": ("us", 1),
    "usecs": ("us", 1), "useconds": ("us", 1), "usecond": ("us", 1),
    "millisecond": ("us", 1000), "milliseconds": ("us", 1000), "ms": ("us", 1000),
    "msec": ("us", 1000), "msecs": ("us", 1000), "mseconds": ("us", 1000),
    "second": ("us", USEC_SEC), "seconds": ("us", USEC_SEC), "sec": ("us", USEC_SEC),
    "secs": ("us", USEC_SEC), "s": ("us", USEC_SEC),
    "minute": ("us", USEC_MIN), "minutes": ("us", USEC_MIN), "min": ("us", USEC_MIN),
    "mins": ("us", USEC_MIN), "m": ("us", USEC_MIN),
    "hour": ("us", USEC_HOUR), "hours": ("us", USEC_HOUR), "hr": ("us", USEC_HOUR),
    "hrs": ("us", USEC_HOUR), "h": ("us", USEC_HOUR),
    "day": ("d", 1), "days": ("d", 1), "d": ("d", 1),
    "week": ("d", 7), "weeks": ("d", 7), "w": ("d", 7),
    "month": ("mon", 1), "months": ("mon", 1), "mon": ("mon", 1), "mons": ("mon", 1),
    "year": ("mon", 12), "years": ("mon", 12), "yr": ("mon", 12), "yrs": ("mon", 12),
    "y": ("mon", 12),
    "decade": ("mon", 120), "decades": ("mon", 120),
    "century": ("mon", 1200), "centuries": ("mon", 1200),
    "millennium": ("mon", 12000), "millennia": ("mon", 12000),
}
_PG_TOKEN_RE = re.compile(
    r"\s*(?:(?P<time>[+-]?\d+:\d+(?::\d+(?:\.\d*)?)?)|(?P<num>[+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*(?P<unit>[a-zA-Z]+)?)"
)
INTERVAL_INF = (2**31 - 1, 2**31 - 1, 2**63 - 1)
INTERVAL_NINF = (-(2**31), -(2**31), -(2**63))


class _IntervalAcc:
    def __init__(self) -> None:
        self.months = 0
        self.days = 0
        self.us = 0

    def add(self, value: Decimal, unit: str, factor: int) -> None:
        # Postgres cascades fractional parts down: months -> days (30) -> microseconds
        if unit == "mon":
            total = value * factor
            whole = int(total)
            self.months += whole
            frac_days = (total - whole) * 30
            wd = int(frac_days)
            self.days += wd
            self.us += int(round((frac_days - wd) * USEC_DAY))
        elif unit == "d":
            total = value * factor
            whole = int(total)
            self.days += whole
            self.us += int(round((total - whole) * USEC_DAY))
        else:
            self.us += int(round(value * factor))

    def result(self, text: str) -> tuple[int, int, int]:
        if not (-(2**31) <= self.months < 2**31 - 1 and -(2**31) <= self.days < 2**31 - 1
                and -(2**63) <= self.us < 2**63 - 1):
            raise EvalError(f'interval out of range: "{text}"')
        return (self.months, self.days, self.us)


def _parse_interval(text: str) -> tuple[int, int, int]:
    s = text.strip(_WS)
    low = s.lower()
    if low in ("infinity", "+infinity"):
        return INTERVAL_INF
    if low == "-infinity":
        return INTERVAL_NINF
    acc = _IntervalAcc()
    m = _ISO_INTERVAL_RE.fullmatch(s)
    if m and s != "P" and not s.endswith("T"):
        for key, unit, factor in (("Y", "mon", 12), ("M", "mon", 1), ("W", "d", 7), ("D", "d", 1),
                                  ("h", "us", USEC_HOUR), ("m", "us", USEC_MIN),
                                  ("s", "us", USEC_SEC)):
            v = m.group(key)
            if v is not None:
                acc.add(Decimal(v), unit, factor)
        return acc.result(text)
    body = s
    if body.startswith("@"):
        body = body[1:]
    ago = False
    if re.search(r"\bago\s*$", body, re.IGNORECASE):
        ago = True
        body = re.sub(r"\bago\s*$", "", body, flags=re.IGNORECASE)
    pos = 0
    body = body.rstrip()
    if not body.strip():
        raise _invalid("interval", text)
    while pos < len(body):
        tm = _PG_TOKEN_RE.match(body, pos)
        if not tm or tm.end() == pos:
            raise _invalid("interval", text)
        pos = tm.end()
        if tm.group("time"):
            ts = tm.group("time")
            neg = ts.startswith("-")
            parts = ts.lstrip("+-").split(":")
            h, mi = int(parts[0]), int(parts[1])
            sec = Decimal(parts[2]) if len(parts) > 2 else Decimal(0)
            if mi > 59 or sec >= 60:
                raise EvalError(f'interval field value out of range: "{text}"')
            us = (h * 3600 + mi * 60) * USEC_SEC + int(round(sec * USEC_SEC))
            acc.us += -us if neg else us
        else:
            num = Decimal(tm.group("num"))
            unit = (tm.group("unit") or "second").lower()
            if unit not in _UNITS:
                raise _invalid("interval", text)
            kind, factor = _UNITS[unit]
            acc.add(num, kind, factor)
    months, days, us = acc.result(text)
    if ago:
        months, days, us = -months, -days, -us
    return (months, days, us)


def interval_key(iv: tuple[int, int, int]) -> int:
    return (iv[0] * 30 + iv[1]) * USEC_DAY + iv[2]


def interval_out(iv: tuple[int, int, int]) -> str:
    months, days, us = iv
    if iv == INTERVAL_INF:
        return "infinity"
    if iv == INTERVAL_NINF:
        return "-infinity"
    if months == 0 and days == 0 and us == 0:
        return "PT0S"
    year = int(months / 12) if months >= 0 else -((-months) // 12)
    mon = months - year * 12
    out = "P"
    for v, c in ((year, "Y"), (mon, "M"), (days, "D")):
        if v:
            out += f"{v}{c}"
    neg = us < 0
    a = -us if neg else us
    hour, a = divmod(a, USEC_HOUR)
    minute, a = divmod(a, USEC_MIN)
    sec, frac = divmod(a, USEC_SEC)
    if hour or minute or sec or frac:
        out += "T"
    sgn = "-" if neg else ""
    if hour:
        out += f"{sgn}{hour}H"
    if minute:
        out += f"{sgn}{minute}M"
    if sec or frac:
        out += f"{sgn}{sec}"
        if frac:
            out += f".{frac:06d}".rstrip("0")
        out += "S"
    return out


# ---------------------------------------------------------------------------- arrays


class PgArray:
    """A Postgres array: dimensions, lower bounds and the elements in row-major order."""

    __slots__ = ("dims", "lbs", "items")

    def __init__(self, dims: tuple[int, ...], lbs: tuple[int, ...], items: tuple) -> None:
        self.dims = dims
        self.lbs = lbs
        self.items = items

    def __repr__(self) -> str:
        return f"PgArray({self.dims}, {self.lbs}, {self.items!r})"


_ARRAY_DIMS_RE = re.compile(r"((?:\[[+-]?\d+(?::[+-]?\d+)?\])+)\s*=\s*")


def _malformed_array(text: str) -> EvalError:
    return EvalError(f'malformed array literal: "{text}"')


def _parse_array(elem_type: str, text: str) -> PgArray:
    """array_in: an optional ``[lo:hi]...=`` bounds decoration, then ``{...}``."""
    s = text.strip(_WS)
    bounds, s = _array_bounds(s)
    if not s.startswith("{"):
        raise _malformed_array(text)
    dims, items = _ArrayReader(s, text, input_fn(elem_type)).read()
    if not items:
        if bounds:
            raise _malformed_array(text)
        return PgArray((), (), ())
    final_dims = tuple(d or 0 for d in dims)
    lbs = tuple(1 for _ in final_dims)
    if bounds is not None:
        if len(bounds) != len(final_dims):
            raise _malformed_array(text)
        for (lo, hi), d in zip(bounds, final_dims, strict=True):
            if hi - lo + 1 != d:
                raise _malformed_array(text)
        lbs = tuple(lo for lo, _ in bounds)
    return PgArray(final_dims, lbs, tuple(items))


def _array_bounds(s: str) -> tuple[list[tuple[int, int]] | None, str]:
    """The ``[lo:hi]`` / ``[n]`` bounds before ``=`` (None without any), and the rest."""
    m = _ARRAY_DIMS_RE.match(s)
    if not m:
        return None, s
    bounds = []
    for part in re.findall(r"\[([^\]]*)\]", m.group(1)):
        if ":" in part:
            lo, hi = part.split(":")
            bounds.append((int(lo), int(hi)))
        else:
            bounds.append((1, int(part)))
    return bounds, s[m.end():]


class _ArrayReader:
    """The scanner of array_in: braces, commas and (quoted or bare) elements of a
    ``{...}`` literal. Every sub-array of one level must have the same length, and
    elements may only appear at the innermost level."""

    def __init__(self, s: str, text: str, parse_elem: Callable[[str], Any]) -> None:
        self.s = s
        self.text = text  # the whole input, for messages
        self.parse_elem = parse_elem
        self.pos = 0
        self.items: list[Any] = []
        self.dims: list[int | None] = []  # length of each level, once known
        self.counts: list[int] = []  # items seen so far in the open sub-array of each level
        self.depth = 0
        self.max_depth: int | None = None  # the number of levels, once known
        self.expect_elem = True

    def read(self) -> tuple[list[int | None], list[Any]]:
        """(length of each level, elements in row-major order)."""
        s, n = self.s, len(self.s)
        while self.pos < n:
            c = s[self.pos]
            if c in _WS:
                self.pos += 1
            elif c == "{":
                self._open()
            elif c == "}":
                self._close()
            elif c == ",":
                if self.expect_elem or self.depth == 0:
                    raise self._fail()
                self.pos += 1
                self.expect_elem = True
            else:
                self._element(c)
        if self.depth != 0 or not self.dims:
            raise self._fail()
        return self.dims, self.items

    def _fail(self) -> EvalError:
        return _malformed_array(self.text)

    def _skip_ws(self, j: int) -> int:
        while j < len(self.s) and self.s[j] in _WS:
            j += 1
        return j

    def _open(self) -> None:
        if not self.expect_elem:
            raise self._fail()
        if self.max_depth is not None and self.depth >= self.max_depth:
            raise self._fail()
        self.depth += 1
        if self.depth > len(self.dims):
            if self.max_depth is not None:
                raise self._fail()
            self.dims.append(None)
            self.counts.append(0)
        self.counts[self.depth - 1] = 0
        self.pos += 1
        self.expect_elem = True
        j = self._skip_ws(self.pos)
        if j < len(self.s) and self.s[j] == "}":  # an empty level
            self.pos = j
            self.expect_elem = False

    def _close(self) -> None:
        depth = self.depth
        if depth == 0:
            raise self._fail()
        if self.expect_elem and self.counts[depth - 1] > 0:
            raise self._fail()
        if self.max_depth is None:
            self.max_depth = depth
        count = self.counts[depth - 1]
        if self.dims[depth - 1] is None:
            self.dims[depth - 1] = count
        elif self.dims[depth - 1] != count:
            raise self._fail()
        self.depth = depth = depth - 1
        self.pos += 1
        if depth > 0:
            self.counts[depth - 1] += 1
        else:  # the outermost brace: nothing but white space may follow
            if self._skip_ws(self.pos) != len(self.s):
                raise self._fail()
            self.pos = len(self.s)
        self.expect_elem = False

    def _element(self, c: str) -> None:
        depth = self.depth
        if not self.expect_elem or depth == 0:
            raise self._fail()
        if self.max_depth is not None and depth != self.max_depth:
            raise self._fail()
        if depth < len(self.dims) and self.max_depth is None:
            raise self._fail()
        if c == '"':
            self.items.append(self.parse_elem(self._quoted()))
        else:
            raw, escaped = self._bare()
            if not escaped and raw.upper() == "NULL":
                self.items.append(None)
            else:
                self.items.append(self.parse_elem(raw))
        self.counts[depth - 1] += 1
        if self.max_depth is None:
            self.max_depth = depth
        self.expect_elem = False

    def _quoted(self) -> str:
        """A double-quoted element (backslash escapes any character)."""
        s, n = self.s, len(self.s)
        pos = self.pos + 1
        buf = []
        while True:
            if pos >= n:
                raise self._fail()
            ch = s[pos]
            if ch == "\\":
                if pos + 1 >= n:
                    raise self._fail()
                buf.append(s[pos + 1])
                pos += 2
            elif ch == '"':
                pos += 1
                break
            else:
                buf.append(ch)
                pos += 1
        self.pos = pos
        return "".join(buf)

    def _bare(self) -> tuple[str, bool]:
        """An unquoted element, up to the next ``,`` ``{`` or ``}``: (its text, whether it
        had a backslash escape). Surrounding white space is dropped, except trailing white
        space after an escape."""
        s, n = self.s, len(self.s)
        pos = self.pos
        buf = []
        escaped = False
        while pos < n and s[pos] not in ",}{":
            ch = s[pos]
            if ch == "\\":
                if pos + 1 >= n:
                    raise self._fail()
                buf.append(s[pos + 1])
                escaped = True
                pos += 2
            elif ch == '"':
                raise self._fail()
            else:
                buf.append(ch)
                pos += 1
        self.pos = pos
        raw = "".join(buf)
        return (raw.lstrip(_WS) if escaped else raw.strip(_WS)), escaped


def _array_quote(s: str) -> str:
    if s == "" or s.upper() == "NULL" or any(c in s for c in '{},"\\ \t\n\r\v\f'):
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return s


def array_out(elem_type: str, arr: PgArray) -> str:
    out_elem = output_fn(elem_type)
    if not arr.items:
        return "{}"
    parts = [("NULL" if v is None else _array_quote(out_elem(v))) for v in arr.items]

    def build(level: int, start: int) -> tuple[str, int]:
        if level == len(arr.dims) - 1:
            n = arr.dims[level]
            return "{" + ",".join(parts[start:start + n]) + "}", start + n
        pieces = []
        for _ in range(arr.dims[level]):
            piece, start = build(level + 1, start)
            pieces.append(piece)
        return "{" + ",".join(pieces) + "}", start

    body, _ = build(0, 0)
    if any(lb != 1 for lb in arr.lbs):
        prefix = "".join(f"[{lb}:{lb + d - 1}]" for lb, d in zip(arr.lbs, arr.dims, strict=True))
        return prefix + "=" + body
    return body


# ---------------------------------------------------------------------------- dispatch


def _numeric_out(d: Decimal) -> str:
    if d.is_nan():
        return "NaN"
    if d.is_infinite():
        return "Infinity" if d > 0 else "-Infinity"
    return f"{d:f}"


def input_fn(t: str):
    """Text -> value for type ``t`` (raises EvalError with Postgres' message)."""
    if is_array(t):
        e = elem_of(t)
        return lambda text: _parse_array(e, text)
    if t in INT_RANGE:
        return lambda text: _parse_int(t, text)
    if t == "numeric":
        return _parse_numeric
    if t in FLOAT_TYPES:
        return lambda text: _parse_float(t, text)
    if t == "bool":
        return _parse_bool
    if t in ("text", "varchar", "name") or t.startswith("enum:"):
        return str
    if t == "bpchar":
        return str
    if t == "uuid":
        return _parse_uuid
    if t == "date":
        return _parse_date
    if t in ("timestamp", "timestamptz"):
        return lambda text: _parse_timestamp(t, text)
    if t == "time":
        return _parse_time
    if t == "interval":
        return _parse_interval
    raise EvalError(f"no input function for type {display(t)}")


def output_fn(t: str):
    """Value -> Postgres output text for type ``t`` (under our display settings)."""
    if is_array(t):
        e = elem_of(t)
        return lambda v: array_out(e, v)
    if t in INT_RANGE:
        return str
    if t == "numeric":
        return _numeric_out
    if t == "float8":
        return float_out
    if t == "float4":
        return lambda v: float_out(v, True)
    if t == "bool":
        return lambda v: "true" if v else "false"
    if t in ("text", "varchar", "name", "bpchar", "uuid") or t.startswith("enum:"):
        return str
    if t == "date":
        return date_out
    if t == "timestamp":
        return timestamp_out
    if t == "timestamptz":
        return lambda v: timestamp_out(v, True)
    if t == "time":
        return time_out
    if t == "interval":
        return interval_out
    raise EvalError(f"no output function for type {display(t)}")


def row_input_fn(t: str):
    """Parse a value as pgoutput / the snapshot renders it.

    Fast paths for the canonical output forms (ISO dates under DateStyle=ISO, UTC
    timestamps, plain numbers); anything else goes through the full input function."""
    if t == "bool":
        return lambda text: text == "t" if text in ("t", "f") else _parse_bool(text)
    if t in INT_RANGE:
        return _fast_int(t)
    if t == "numeric":
        return _fast_numeric
    if t == "float8":
        return _fast_float8
    if t in ("date", "timestamp", "timestamptz"):
        return _fast_datetime(t)
    if is_array(t):
        return _fast_array(t)
    return input_fn(t)


def _fast_array(t: str):
    """One-dimensional arrays with no quoting (the common output form)."""
    slow = input_fn(t)
    elem = row_input_fn(elem_of(t))

    def parse(text: str) -> PgArray:
        if len(text) >= 2 and text[0] == "{" and text[-1] == "}":
            body = text[1:-1]
            if not any(c in body for c in '{}"\\ '):
                if not body:
                    return PgArray((), (), ())
                items = tuple(None if x == "NULL" else elem(x) for x in body.split(","))
                if "" not in body.split(","):
                    return PgArray((len(items),), (1,), items)
        return slow(text)

    return parse


_PLAIN_NUMERIC = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_PLAIN_FLOAT = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:e[+-][0-9]+)?|NaN|-?Infinity")


def _fast_numeric(text: str) -> Decimal:
    if _PLAIN_NUMERIC.fullmatch(text):
        return Decimal(text)
    return _parse_numeric(text)


def _fast_float8(text: str) -> float:
    if _PLAIN_FLOAT.fullmatch(text):
        return float(text)
    return _parse_float("float8", text)


def _fast_datetime(t: str):
    slow = input_fn(t)
    tz = t == "timestamptz"

    def parse(text: str):
        n = len(text)
        try:
            if n >= 10 and text[4] == "-" and text[7] == "-" and text[:4].isdigit():
                y, mo, d = int(text[:4]), int(text[5:7]), int(text[8:10])
                if not (y and 1 <= mo <= 12 and 1 <= d <= days_in_month(y, mo)) or (
                        n > 10 and text[10] != " "):
                    return slow(text)
                days = days_from_civil(y, mo, d)
                if t == "date":
                    if n == 10:
                        return days
                elif n >= 19 and text[10] == " " and text[13] == ":" and text[16] == ":":
                    end = n - 3 if tz else n
                    if not tz or text[end:] == "+00":
                        us = 0
                        if end > 19:
                            if text[19] != "." or end - 20 > 6:
                                return slow(text)
                            us = int(text[20:end].ljust(6, "0"))
                        sec = int(text[11:13]) * 3600 + int(text[14:16]) * 60 + int(text[17:19])
                        if sec < 86400 and text[11:19].replace(":", "").isdigit():
                            return days * USEC_DAY + sec * USEC_SEC + us
        except ValueError:
            pass
        return slow(text)

    return parse


def _fast_int(t: str):
    lo, hi = INT_RANGE[t]

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            return _parse_int(t, text)
        if "_" in text or not lo <= v <= hi:
            return _parse_int(t, text)
        return v

    return parse

