"""The typed expression tree, and the rules on type names that building it needs.

Every node carries its resolved type name: one of values.SCALAR_TYPES, an array of one
(``"int4[]"``), ``"enum:<name>"`` / ``"opaque:<name>"`` for column types we only know by
name, or ``"unknown"`` for an untyped string literal or NULL that has not yet taken the
type its context requires (as in Postgres).

An :class:`Op`'s ``kind`` names the operation; evaluate.py and render.py each have one
handler per kind, and ``data`` holds what that kind needs (operator, argument type,
implementation function...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import WhereError
from .values import FLOAT_TYPES, NUMBER_TYPES, STRING_TYPES, display

UNKNOWN = "unknown"
CMP_OPS = ("=", "<>", "!=", "<", ">", "<=", ">=")


@dataclass(eq=False)
class Node:
    type: str
    loc: int | None  # 0-based offset in the clause text, when known


@dataclass(eq=False)
class Const(Node):
    value: Any = None
    lit: str | None = None  # the literal's text as written (string literals)


@dataclass(eq=False)
class Col(Node):
    name: str = ""


@dataclass(eq=False)
class Op(Node):
    kind: str = ""
    args: list[Node] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


def is_unknown(n: Node) -> bool:
    """An untyped literal or NULL, still waiting for its context's type."""
    return n.type == UNKNOWN


def sql_type(t: str) -> str:
    """The type name as written in rendered SQL."""
    if t.startswith(("enum:", "opaque:")):
        raise WhereError(f"cannot render type {display(t)}")
    return t


_NUM_ORDER = {"int2": 0, "int4": 1, "int8": 2, "numeric": 3}
_DT_ORDER = {"date": 0, "timestamp": 1, "timestamptz": 2}


def num_common(a: str, b: str) -> str:
    """The type two numeric types are combined as (float8 wins over everything but
    float4 with float4; otherwise the wider of int2 < int4 < int8 < numeric)."""
    if a in FLOAT_TYPES or b in FLOAT_TYPES:
        return "float4" if a == b == "float4" else "float8"
    return a if _NUM_ORDER[a] >= _NUM_ORDER[b] else b


def is_datetime(t: str) -> bool:
    """date, timestamp or timestamptz (the types that compare with each other)."""
    return t in _DT_ORDER


def common_type(a: str, b: str) -> str | None:
    """The type two known types are compared / combined as (None: incompatible)."""
    if a == b:
        return a
    if a in NUMBER_TYPES and b in NUMBER_TYPES:
        return num_common(a, b)
    if a in STRING_TYPES and b in STRING_TYPES:
        if {a, b} == {"bpchar", "varchar"}:
            return "bpchar"
        return "text"
    if a in _DT_ORDER and b in _DT_ORDER:
        return a if _DT_ORDER[a] >= _DT_ORDER[b] else b
    return None
