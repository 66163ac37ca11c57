"""``AT TIME ZONE`` / ``timezone(zone, ts)`` for timestamp and timestamptz.

Only the immutable variants exist here (Postgres: timezone(text|interval, timestamp) and
timezone(text|interval, timestamptz) are immutable; timezone(timestamp) / ``AT LOCAL``
and the timetz variants depend on the session or are unsupported types).

Text zones are resolved like Postgres' DecodeTimezoneName, restricted to the names for
which our evaluator provably agrees with the server:

- names that Postgres resolves through its abbreviation table (``timezone_abbreviations``,
  "Default" set) are only accepted when their offset is 0 (UTC, GMT, Z, ...): the others
  (EST, CET, MSK...) are fixed or dynamic offsets from a server-side configuration file
  that can be changed, and some of them shadow a tz database zone of the same name with
  different rules (CET the abbreviation is always +01, the zone has summer time);
- POSIX-style fixed offsets ``[letters][+|-]hh[:mm[:ss]]`` (note the POSIX sign: '+02'
  means two hours *west* of Greenwich, so ``'2024-01-01 00:00' AT TIME ZONE '+02'`` is
  02:00 UTC — Postgres' behaviour, reproduced);
- IANA names of the tz database (case-insensitive, as in Postgres), evaluated with
  Python's zoneinfo. Postgres uses its own copy of the tz database (or the system's), so
  the two agree exactly when both carry the same tzdata release; zones whose rules changed
  between releases can differ for the affected dates (a tzdata upgrade on either side).
  Names zoneinfo does not know (no tz database installed, or a newer zone) are rejected.

Anything else is rejected at compile time; the zone must therefore be a constant.
Interval zones (``AT TIME ZONE interval '2 hours'``) need no database and may be any
expression.
"""

from __future__ import annotations

import re
import zoneinfo
from datetime import datetime, timedelta
from functools import lru_cache

from .coerce import coerce, literal_as
from .errors import EvalError, WhereError
from .nodes import Const, Node, Op, is_unknown
from .ops import ascii_lower
from .values import (
    INTERVAL_INF,
    INTERVAL_NINF,
    USEC_DAY,
    USEC_SEC,
    check_ts,
    days_from_civil,
    display,
    interval_out,
)

# lower-cased names of Postgres' "Default" timezone_abbreviations set (PG 18)
_ABBREVIATIONS = frozenset("""
acdt acsst acst act acwst adt aedt aesst aest aft akdt akst almst almt amst amt anast anat
arst art ast awsst awst azost azot azst azt bdst bdt bnt bort bot bra brst brt bst btt cadt
cast cct cdt cest cet cetdst chadt chast chut ckt clst clt cot cst cxt davt ddut easst east
eat edt eest eet eetdst egst egt est fet fjst fjt fkst fkt fnst fnt galt gamt gest get gft
gilt gmt gyt hkt hst ict idt iot irkst irkt irt ist jayt jst kdt kgst kgt kost krast krat
kst lhdt lhst ligt lint lkt magst magt mart mawt mdt mest mesz met metdst mez mht mmt mpt
msd msk mst must mut mvt myt ndt nft novst novt npt nst nut nzdt nzst nzt omsst omst pdt
pet petst pett pgt pht pkst pkt pmdt pmst pont pst pwt pyst pyt ret sadt sast sct sgt taht
tft tjt tkt tmt tot trut tvt uct ulast ulat ut utc uyst uyt uzst uzt vet vlast vlat volt
vut wadt wakt wast wat wdt wet wetdst wft wgst wgt xjt yakst yakt yapt yekst yekt z zulu
""".split())
_ZERO_ABBREVIATIONS = frozenset({"utc", "uct", "gmt", "ut", "z", "zulu"})

# tzparse() of a zone without daylight-saving rules: optional name, POSIX offset
# (hours 0..167, minutes 0..59, seconds 0..60)
_POSIX_RE = re.compile(r"[A-Za-z]*([+-]?)([0-9]+)(?::([0-9]+)(?::([0-9]+))?)?")

_EPOCH = datetime(1970, 1, 1)
_ONE_US = timedelta(microseconds=1)
_CYCLE = 146097 * USEC_DAY  # the Gregorian calendar (and every tz rule) repeats every 400 years
_EARLY = days_from_civil(2, 1, 1) * USEC_DAY
_LATE = days_from_civil(9000, 1, 1) * USEC_DAY


class FixedZone:
    __slots__ = ("offset",)

    def __init__(self, offset: int) -> None:
        self.offset = offset  # microseconds east of Greenwich

    def utc_offset(self, us: int) -> int:
        return self.offset

    def local_offset(self, us: int) -> int:
        return self.offset


class TzdbZone:
    """An IANA zone. Offsets at instants before year 2 are those of year 2 (every zone
    starts with local mean time well after that); after year 9000, the 400-year repetition
    of the rules brings the instant back into datetime's range (Postgres' tz code
    extrapolates the same way)."""

    __slots__ = ("zone",)

    def __init__(self, zone) -> None:
        self.zone = zone

    @staticmethod
    def _naive(us: int) -> datetime:
        if us < _EARLY:
            us = _EARLY
        elif us >= _LATE:
            us -= ((us - _LATE) // _CYCLE + 1) * _CYCLE
        return _EPOCH + timedelta(microseconds=us)

    def utc_offset(self, us: int) -> int:
        z = self.zone
        return z.fromutc(self._naive(us).replace(tzinfo=z)).utcoffset() // _ONE_US

    def local_offset(self, us: int) -> int:
        """Postgres' DetermineTimeZoneOffset: a wall-clock time in a spring-forward gap
        takes the offset before the transition, an ambiguous one (fall back) the offset
        after it; in both cases the smaller of the two offsets (the later instant)."""
        dt = self._naive(us)
        z = self.zone
        return min(z.utcoffset(dt), z.utcoffset(dt.replace(fold=1))) // _ONE_US


@lru_cache(maxsize=1)
def _tz_names() -> dict[str, str]:
    try:
        names = zoneinfo.available_timezones()
    except Exception:  # noqa: BLE001 - no tz database: IANA names are unknown
        names = set()
    return {ascii_lower(n): n for n in names if n not in ("localtime", "posixrules")}


@lru_cache(maxsize=256)
def resolve_zone(name: str) -> FixedZone | TzdbZone:
    """The zone for a time zone name; raises EvalError when it is unknown or unsupported."""
    low = ascii_lower(name)
    if low in _ABBREVIATIONS:
        if low in _ZERO_ABBREVIATIONS:
            return FixedZone(0)
        raise EvalError(
            f'time zone abbreviation "{name}" is not supported (its meaning depends on the '
            "server's timezone_abbreviations setting): use a full time zone name such as "
            "'America/New_York' or a numeric offset")
    m = _POSIX_RE.fullmatch(name)
    if m:
        sign, hh, mm, ss = m.groups()
        h, mi, s = int(hh), int(mm or 0), int(ss or 0)
        if h <= 167 and mi <= 59 and s <= 60:
            west = h * 3600 + mi * 60 + s
            return FixedZone((west if sign == "-" else -west) * USEC_SEC)
        raise EvalError(f'time zone "{name}" not recognized')
    canonical = _tz_names().get(low)
    if canonical is None:
        raise EvalError(f'time zone "{name}" not recognized')
    try:
        return TzdbZone(zoneinfo.ZoneInfo(canonical))
    except Exception:  # noqa: BLE001 - unreadable zone file
        raise EvalError(f'time zone "{name}" not recognized') from None


def timestamp_at_zone(zone, ts):
    """timestamp AT TIME ZONE zone -> timestamptz (the wall-clock time read in ``zone``)."""
    if isinstance(ts, float):
        return ts
    return check_ts(ts - zone.local_offset(ts))


def timestamptz_at_zone(zone, ts):
    """timestamptz AT TIME ZONE zone -> timestamp (the wall-clock time in ``zone``)."""
    if isinstance(ts, float):
        return ts
    return check_ts(ts + zone.utc_offset(ts))


def _interval_zone_seconds(iv) -> int:
    if iv == INTERVAL_INF or iv == INTERVAL_NINF:
        raise EvalError(f'interval time zone "{interval_out(iv)}" must be finite')
    months, days, us = iv
    if months or days:
        raise EvalError(f'interval time zone "{interval_out(iv)}" must not include months or days')
    secs = abs(us) // USEC_SEC  # C division: truncates toward zero
    return -secs if us < 0 else secs


def timestamp_at_interval(iv, ts):
    if isinstance(ts, float):
        return ts
    return check_ts(ts - _interval_zone_seconds(iv) * USEC_SEC)


def timestamptz_at_interval(iv, ts):
    if isinstance(ts, float):
        return ts
    return check_ts(ts + _interval_zone_seconds(iv) * USEC_SEC)


def build_timezone(args: list[Node], loc: int | None) -> Op:
    """timezone(zone, value) / ``value AT TIME ZONE zone``."""
    if len(args) == 1:
        raise WhereError("timezone(timestamp) and AT LOCAL depend on the session's TimeZone "
                         "setting and are not supported", loc)
    if len(args) != 2:
        raise WhereError(f"unknown or unsupported function timezone/{len(args)}", loc)
    zone, value = args
    if is_unknown(value):
        value = literal_as(value, "timestamptz")  # the preferred type of the category
    elif value.type == "date":
        value = coerce(value, "timestamptz", loc=loc)
    elif value.type not in ("timestamp", "timestamptz"):
        raise WhereError(f"Could not select a function overload for timezone("
                         f"{display(zone.type)}, {display(value.type)}): AT TIME ZONE is "
                         "supported for timestamp and timestamptz values", loc)
    result = "timestamp" if value.type == "timestamptz" else "timestamptz"
    if zone.type in ("interval", "time"):
        zone = coerce(zone, "interval", loc=loc)
        at_interval = (timestamptz_at_interval if value.type == "timestamptz"
                       else timestamp_at_interval)
        return Op(result, loc, "func", [zone, value],
                  {"name": "timezone", "sql": "timezone", "impl": at_interval})
    if not is_unknown(zone) and zone.type not in ("text", "varchar", "bpchar", "name"):
        raise WhereError(f"Could not select a function overload for timezone("
                         f"{display(zone.type)}, {display(value.type)})", loc)
    zone = coerce(zone, "text", loc=loc)
    if isinstance(zone, Const):
        name = zone.value
    elif isinstance(zone, Op) and zone.kind == "cast" and isinstance(zone.args[0], Const):
        inner = zone.args[0].value
        name = None if inner is None else zone.data["fn"](inner)
    else:
        raise WhereError("AT TIME ZONE / timezone() needs a constant time zone name "
                         "(or an interval)", zone.loc if zone.loc is not None else loc)
    if name is None:
        tz = None  # NULL zone: the strict call folds to NULL
    else:
        try:
            tz = resolve_zone(name)
        except EvalError as exc:
            raise WhereError(str(exc), zone.loc if zone.loc is not None else loc) from None
    convert = timestamptz_at_zone if value.type == "timestamptz" else timestamp_at_zone

    def impl(_name, ts, tz=tz, convert=convert):
        return convert(tz, ts)

    return Op(result, loc, "func", [zone, value],
              {"name": "timezone", "sql": "timezone", "impl": impl})

