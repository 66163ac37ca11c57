"""Typed tree -> SQL text, rebuilt from the tree (never from the user's text).

Every sub-expression is fully parenthesised; identifiers go through ``quote_ident``;
literals are quoted here (``E'...'`` when they contain a backslash, so the result does not
depend on ``standard_conforming_strings``) and carry an explicit cast to the type we resolved,
so Postgres resolves every operator exactly as we did. Text ordering, ``lower``/``upper`` and
``ILIKE`` are pinned to the "C" collation, which is what the evaluator implements.
"""

from __future__ import annotations

from ..tables import quote_ident
from .nodes import UNKNOWN, Col, Const, Node, Op, sql_type
from .values import STRING_TYPES, elem_of, is_array, output_fn

_C = ' COLLATE "C"'


def quote_literal(s: str) -> str:
    body = s.replace("'", "''")
    if "\\" in body:
        return "E'" + body.replace("\\", "\\\\") + "'"
    return "'" + body + "'"


def _collatable(t: str) -> bool:
    base = elem_of(t) if is_array(t) else t
    return base in STRING_TYPES


def render(node: Node) -> str:
    if isinstance(node, Const):
        return _const(node)
    if isinstance(node, Col):
        return quote_ident(node.name)
    assert isinstance(node, Op)
    return _RENDERERS[node.kind](node)


def _const(node: Const) -> str:
    t = node.type
    v = node.value
    if t == UNKNOWN:
        return "NULL" if v is None else quote_literal(v)
    if t.startswith("enum:"):
        # left untyped: Postgres resolves it against the column's enum type
        return "NULL" if v is None else quote_literal(output_fn(t)(v))
    if v is None:
        return f"NULL::{sql_type(t)}"
    if t == "bool":
        return "true" if v else "false"
    if t == "int4":
        return str(v) if v >= 0 else f"({v})"
    text = output_fn(t)(v)
    return f"{quote_literal(text)}::{sql_type(t)}"


def _collated(node: Node) -> str:
    return f"({render(node)}){_C}" if _collatable(node.type) else render(node)


def _bool_chain(word: str):
    def r(node: Op) -> str:
        return "(" + f" {word} ".join(render(a) for a in node.args) + ")"

    return r


def _not(node: Op) -> str:
    return f"(NOT {render(node.args[0])})"


def _isnull(node: Op) -> str:
    return f"({render(node.args[0])} IS NULL)"


def _isnotnull(node: Op) -> str:
    return f"({render(node.args[0])} IS NOT NULL)"


def _booltest(node: Op) -> str:
    words = node.data["test"].replace("_", " ")
    return f"({render(node.args[0])} {words})"


def _cmp(node: Op) -> str:
    op = node.data["op"]
    a, b = node.args
    if op in ("<", ">", "<=", ">=") and _collatable(node.data["argtype"]):
        return f"({_collated(a)} {op} {render(b)})"
    return f"({render(a)} {op} {render(b)})"


def _distinct(node: Op) -> str:
    a, b = node.args
    word = "IS NOT DISTINCT FROM" if node.data["negated"] else "IS DISTINCT FROM"
    return f"({render(a)} {word} {render(b)})"


def _anyall(node: Op) -> str:
    a, b = node.args
    op = node.data["op"]
    word = "ALL" if node.data["all"] else "ANY"
    lhs = _collated(a) if op in ("<", ">", "<=", ">=") and _collatable(node.data["argtype"]) \
        else render(a)
    return f"({lhs} {op} {word} ({render(b)}))"


def _binop(node: Op) -> str:
    a, b = node.args
    return f"({render(a)} {node.data['op']} {render(b)})"


def _neg(node: Op) -> str:
    return f"(- {render(node.args[0])})"


def _abs(node: Op) -> str:
    return f"pg_catalog.abs({render(node.args[0])})"


def _concat(node: Op) -> str:
    a, b = node.args
    return f"({render(a)} || {render(b)})"


def _cast(node: Op) -> str:
    return f"CAST({render(node.args[0])} AS {node.data['sqltype']})"


def _like(node: Op) -> str:
    ci = node.data["ci"]
    word = ("NOT " if node.data["negated"] else "") + ("ILIKE" if ci else "LIKE")
    x, p, *esc = node.args
    lhs = _collated(x) if ci else render(x)
    out = f"({lhs} {word} {render(p)}"
    if esc:
        out += f" ESCAPE {render(esc[0])}"
    return out + ")"


def _func(node: Op) -> str:
    args = [render(a) for a in node.args]
    if node.data.get("collate") and node.args:
        args[0] = _collated(node.args[0])
    return f"pg_catalog.{node.data['sql']}(" + ", ".join(args) + ")"


def _coalesce(node: Op) -> str:
    return "COALESCE(" + ", ".join(render(a) for a in node.args) + ")"


def _nullif(node: Op) -> str:
    a, b = node.args
    return f"NULLIF({render(a)}, {render(b)})"


def _minmax(node: Op) -> str:
    word = "GREATEST" if node.data["greatest"] else "LEAST"
    args = [render(a) for a in node.args]
    if _collatable(node.data["argtype"]):
        args[0] = _collated(node.args[0])
    return f"{word}(" + ", ".join(args) + ")"


def _array(node: Op) -> str:
    # elements of array type (nested ARRAY[...] or constants) make a multidimensional array
    return "(ARRAY[" + ", ".join(render(a) for a in node.args) + f"]::{sql_type(node.type)})"


def _subscript(node: Op) -> str:
    a, i = node.args
    return f"(({render(a)})[{render(i)}])"


def _subscripts(node: Op) -> str:
    a, *idx = node.args
    return f"(({render(a)})" + "".join(f"[{render(i)}]" for i in idx) + ")"


def _slice(node: Op) -> str:
    a, *rest = node.args
    n_upper = sum(node.data["upper"])
    uppers = iter(rest[:n_upper])
    lowers = iter(rest[n_upper:])
    parts = []
    for has_upper, has_lower in zip(node.data["upper"], node.data["lower"], strict=True):
        lo = render(next(lowers)) if has_lower else ""
        hi = render(next(uppers)) if has_upper else ""
        parts.append(f"[{lo}:{hi}]")
    return f"(({render(a)})" + "".join(parts) + ")"


_ARRAY_FUNCTIONS = {"cat": "array_cat", "append": "array_append", "prepend": "array_prepend"}


def _arraycat(node: Op) -> str:
    a, b = node.args
    return f"pg_catalog.{_ARRAY_FUNCTIONS[node.data['mode']]}({render(a)}, {render(b)})"


_RENDERERS = {
    "and": _bool_chain("AND"), "or": _bool_chain("OR"), "not": _not, "isnull": _isnull,
    "isnotnull": _isnotnull, "booltest": _booltest, "cmp": _cmp, "distinct": _distinct,
    "anyall": _anyall, "arrayop": _binop, "arith": _binop,
    "neg": _neg, "abs": _abs, "dtarith": _binop, "concat": _concat, "cast": _cast,
    "like": _like, "func": _func, "coalesce": _coalesce, "nullif": _nullif,
    "minmax": _minmax, "array": _array, "subscript": _subscript,
    "subscripts": _subscripts, "slice": _slice, "arraycat": _arraycat,
}
