"""Unit tests of where/values.py: Postgres text -> value -> Postgres text, per type, and the
input errors, without a server.

The expected texts are what Postgres (16-18) prints for ``'<input>'::<type>`` under the
display settings shapesync applies to every session (DateStyle ISO, TimeZone UTC,
IntervalStyle iso_8601, extra_float_digits 1); the expected errors are the start of
Postgres' message.
"""

from __future__ import annotations

import pytest

from shapesync.where.errors import EvalError
from shapesync.where.values import PgArray, input_fn, output_fn, row_input_fn

ROUND_TRIPS = [
    # arrays: spacing, nesting, quoting, NULL, explicit bounds
    ("int4[]", " { 1 , 2 ,3 } ", "{1,2,3}"),
    ("int4[]", "{{1,2},{3,4}}", "{{1,2},{3,4}}"),
    ("int4[]", "{}", "{}"),
    ("int4[]", "{NULL, 1}", "{NULL,1}"),
    ("text[]", '{"a b","NULL",NULL,"x\\"y"}', '{"a b","NULL",NULL,"x\\"y"}'),
    ("text[]", '{a\\,b,"",  c d  }', '{"a,b","","c d"}'),
    ("text[]", "{{a},{b}}", "{{a},{b}}"),
    ("int4[]", "[0:1]={5,6}", "[0:1]={5,6}"),
    ("int4[]", "[2:3][1:2]={{1,2},{3,4}}", "[2:3][1:2]={{1,2},{3,4}}"),
    ("int4[]", "[1:2]={1,2}", "{1,2}"),
    # integers
    ("int4", "  42 ", "42"),
    ("int4", "0x1F", "31"),
    ("int8", "-1_000_000", "-1000000"),
    # numeric: the display scale is kept, never negative
    ("numeric", "1.50", "1.50"),
    ("numeric", "1e3", "1000"),
    ("numeric", "1.5e-3", "0.0015"),
    ("numeric", "-inf", "-Infinity"),
    ("numeric", "nan", "NaN"),
    # floats: shortest exact output
    ("float8", "0.1", "0.1"),
    ("float8", "1e-5", "1e-05"),
    ("float8", "123456789012345678", "1.2345678901234568e+17"),
    ("float8", "-0", "-0"),
    ("float4", "3.14159265", "3.1415927"),
    # bool, uuid
    ("bool", " YES ", "true"),
    ("bool", "of", "false"),  # a prefix of "off" (two letters at least, as for "on")
    ("bool", "o", None),
    ("uuid", "{A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11}", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
    # dates and times
    ("date", "20240105", "2024-01-05"),
    ("date", "0044-03-15 BC", "0044-03-15 BC"),
    ("date", "epoch", "1970-01-01"),
    ("timestamp", "2024-01-05T10:20:30.5", "2024-01-05 10:20:30.5"),
    ("timestamptz", "2024-01-05 23:30:00-05:30", "2024-01-06 05:00:00+00"),
    ("timestamptz", "-infinity", "-infinity"),
    ("time", "11:59 pm", "23:59:00"),
    ("time", "24:00:00", "24:00:00"),
    # intervals (IntervalStyle iso_8601)
    ("interval", "1 year 2 months 3 days", "P1Y2M3D"),
    ("interval", "1.5 days", "P1DT12H"),
    ("interval", "1 day ago", "P-1D"),
    ("interval", "-1 hour", "PT-1H"),
    ("interval", "01:02:03.5", "PT1H2M3.5S"),
    ("interval", "P1Y2MT3M", "P1Y2MT3M"),
]

ERRORS = [
    ("int4[]", "{{1,2},{3}}", 'malformed array literal: "{{1,2},{3}}"'),
    ("int4[]", "{1,{2}}", "malformed array literal"),
    ("int4[]", "1,2", "malformed array literal"),
    ("int4[]", "{1,2", "malformed array literal"),
    ("int4[]", "{1,2} x", "malformed array literal"),
    ("int4[]", "[1:3]={1,2}", "malformed array literal"),
    ("text[]", '{a"b"}', "malformed array literal"),
    ("int4[]", "{1,x}", 'invalid input syntax for type integer: "x"'),
    ("int4", "2147483648", 'value "2147483648" is out of range for type integer'),
    ("numeric", "12abc", 'invalid input syntax for type numeric: "12abc"'),
    ("date", "2023-02-29", 'date/time field value out of range: "2023-02-29"'),
    ("time", "10:60", 'date/time field value out of range: "10:60"'),
    ("interval", "1 fortnight", 'invalid input syntax for type interval: "1 fortnight"'),
]


@pytest.mark.parametrize(("typ", "text", "expected"), ROUND_TRIPS)
def test_round_trip(typ: str, text: str, expected: str | None) -> None:
    if expected is None:
        with pytest.raises(EvalError, match="invalid input syntax"):
            input_fn(typ)(text)
        return
    assert output_fn(typ)(input_fn(typ)(text)) == expected


@pytest.mark.parametrize(("typ", "text", "message"), ERRORS)
def test_input_error(typ: str, text: str, message: str) -> None:
    with pytest.raises(EvalError) as info:
        input_fn(typ)(text)
    assert str(info.value).startswith(message)


def test_array_shape() -> None:
    arr = input_fn("int4[]")("[0:1][2:4]={{1,2,3},{4,NULL,6}}")
    assert isinstance(arr, PgArray)
    assert (arr.dims, arr.lbs, arr.items) == ((2, 3), (0, 2), (1, 2, 3, 4, None, 6))
    empty = input_fn("text[]")("{{}}")
    assert (empty.dims, empty.lbs, empty.items) == ((), (), ())


@pytest.mark.parametrize(("typ", "text"), [
    ("int8", "-42"), ("numeric", "10.250"), ("float8", "1.5e+20"), ("date", "2024-02-29"),
    ("timestamp", "2024-02-29 23:59:59.25"), ("timestamptz", "2024-02-29 01:02:03+00"),
    ("timestamptz", "2024-02-29 01:02:03+02"), ("text[]", "{a,NULL,c}"),
    ("text[]", '{"a,b",c}'), ("int4[]", "{}"), ("int4[]", "{1,NULL}"), ("bool", "t"),
])
def test_row_fast_path_agrees(typ: str, text: str) -> None:
    """The fast paths for output-form text give what the full input function gives."""
    def parse(fn, text):
        try:
            v = fn(text)
        except EvalError as exc:
            return ("error", str(exc))
        return output_fn(typ)(v)

    assert parse(row_input_fn(typ), text) == parse(input_fn(typ), text)
