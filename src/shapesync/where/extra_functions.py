"""Functions resolved before the general table in functions.py: type-name functions
(``int4(text)``...), array_cat / array_append / array_prepend, timezone(zone, ts) and
power(numeric, numeric)."""

from __future__ import annotations

from .errors import WhereError
from .values import FLOAT_TYPES, NUMBER_TYPES, STRING_TYPES

# The reference's "type input functions callable by name". Postgres' func_get_detail treats
# ``typename(x)`` as a cast when there is no function of that name taking x's type exactly
# and the cast is a binary relabelling or goes through text I/O (or x is an untyped
# literal); otherwise it calls the function of that name, and for these type names every
# such one-argument function is the cast function itself. Either way ``typename(x)`` means
# ``CAST(x AS typename)``, which is how it is compiled and rendered.
TYPE_NAME_FUNCTIONS = frozenset({
    "int2", "int4", "int8", "float4", "float8", "numeric", "bool", "uuid", "text", "date",
    "time", "timestamp", "timestamptz", "interval",
})


def cast_call(c, arg, target: str, loc: int | None):
    from .parse import UNKNOWN

    if arg.type == target:
        return arg
    if arg.type == UNKNOWN:
        return c.literal_as(arg, target)
    if arg.type.startswith("enum:") and target not in STRING_TYPES:
        raise WhereError(f"function {target}({arg.type[5:]}) does not exist", loc)
    return c.make_cast(arg, target, loc)


def build_extra_function(c, name: str, args: list, loc: int | None):
    """The Op node for ``name(args)``, or None when functions.py should handle it."""
    n = len(args)
    if name in TYPE_NAME_FUNCTIONS and n == 1:
        return cast_call(c, args[0], name, loc)
    if name in ("array_cat", "array_append", "array_prepend") and n == 2:
        from .arrays import build_concat

        return build_concat(c, args[0], args[1], loc, fname=name)
    if name == "timezone":
        from .timezones import build_timezone

        return build_timezone(c, args, loc)
    if name in ("power", "pow") and n == 2:
        types = {a.type for a in args}
        if "numeric" in types and not types & set(FLOAT_TYPES):
            return numeric_power_node(c, args[0], args[1], loc)
        if "numeric" in types and types <= {*NUMBER_TYPES, "unknown"}:
            # numeric and a float: power(float8, float8), numeric -> float8 being implicit
            from .functions import _pow
            from .parse import Op

            xs = [c.coerce(a, "float8", loc=loc) for a in args]
            return Op("float8", loc, "func", xs,
                      {"name": name, "sql": "power", "impl": _pow})
    return None


def numeric_power_node(c, lhs, rhs, loc: int | None):
    from .numeric_power import numeric_power
    from .parse import Op
    from .values import NUMBER_TYPES, display

    for a in (lhs, rhs):
        if a.type != "unknown" and a.type not in NUMBER_TYPES:
            raise WhereError(f"Could not select an operator overload: {display(lhs.type)} ^ "
                             f"{display(rhs.type)}", loc)
    lhs = c.coerce(lhs, "numeric", loc=loc)
    rhs = c.coerce(rhs, "numeric", loc=loc)
    return Op("numeric", loc, "func", [lhs, rhs],
              {"name": "power", "sql": "power", "impl": numeric_power})
