"""pglast JSON parse tree -> typed expression tree, with Postgres' type resolution.

Every node gets a concrete type; untyped string literals and NULLs (type ``unknown``) take
the type their context requires, as in Postgres. Implicit conversions become explicit
``cast`` nodes (coerce.py), so evaluate.py and render.py never need to resolve types
again. Operators, literals, casts and the SQL constructs (IN, BETWEEN, ANY/ALL, LIKE,
COALESCE, NULLIF, GREATEST/LEAST, ARRAY[...]) are resolved here; function calls (and
``AT TIME ZONE``, which the grammar turns into timezone()) go to functions.py, array
subscripts and ``||`` on arrays to arrays.py.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal

from pglast.parser import ParseError, parse_sql_json

from ..tables import ColumnInfo, TableInfo
from .arrays import build_concat, check_subscriptable, slice_node, subscript_index, subscript_node
from .coerce import coerce, literal_as, make_cast, typmod_fn, unify
from .errors import EvalError, WhereError
from .functions import build_function, build_power, float_sqrt
from .limits import MAX_DEPTH, MAX_NODES
from .nodes import (
    CMP_OPS,
    UNKNOWN,
    Col,
    Const,
    Node,
    Op,
    common_type,
    is_datetime,
    is_unknown,
    num_common,
)
from .ops import NUMERIC_MAX_WEIGHT_DIGITS
from .values import (
    FLOAT_TYPES,
    INT_RANGE,
    INT_TYPES,
    NUMBER_TYPES,
    NUMERIC_MAX_SCALE,
    SCALAR_TYPES,
    STRING_TYPES,
    PgArray,
    display,
    elem_of,
    finite_exponent,
    is_array,
    norm_numeric,
)

PREFIX = "SELECT 1 WHERE "
FIRST_USER_OID = 16384


# ---------------------------------------------------------------------------- helpers


def column_type(col: ColumnInfo) -> str:
    """Our type name for a catalog column."""
    if col.element_type is not None and (col.dims > 0 or col.type_name.startswith("_")):
        e = col.element_type
        if e in SCALAR_TYPES:
            return e + "[]"
        return "opaque:" + col.type_name
    t = col.type_name
    if t in SCALAR_TYPES:
        return t
    kind = getattr(col, "type_kind", "")
    if kind == "e" or (kind == "" and col.type_oid >= FIRST_USER_OID):
        return "enum:" + t
    return "opaque:" + t


def _loc(node: dict) -> int | None:
    loc = node.get("location", -1)
    if loc is None or loc < 0:
        return None
    return max(0, loc - len(PREFIX))


def _numeric_literal(d: Decimal, loc: int | None) -> Decimal:
    """A numeric literal within numeric's format (numeric_in's limits)."""
    if d.adjusted() >= NUMERIC_MAX_WEIGHT_DIGITS or -finite_exponent(d) > NUMERIC_MAX_SCALE:
        raise WhereError("value overflows numeric format", loc)
    return norm_numeric(d)


# a node of pglast's JSON tree: {"NodeType":{...}} (a '{"' never occurs inside a JSON string)
_NODE_RE = re.compile(r'\{"[A-Z]\w*":\{')


def check_size(tree_json: str) -> None:
    """Limit the number of nodes of the parse tree, before it is even decoded."""
    nodes = 0
    for _ in _NODE_RE.finditer(tree_json):
        nodes += 1
        if nodes > MAX_NODES + 3:  # the SELECT around the clause: 3 nodes
            raise WhereError(f"where clause is too complex (more than {MAX_NODES} "
                             "expressions)", None)


def _sval(node: dict) -> str:
    return node["String"]["sval"]


class Compiler:
    """One clause over one table; ``parse()`` returns its typed tree and leaves the
    names of the columns it references in ``used``."""

    def __init__(self, text: str, table: TableInfo) -> None:
        self.text = text
        self.table = table
        self.columns = {c.name: c for c in table.columns}
        self.used: set[str] = set()
        self.depth = 0  # expressions being compiled, the one at hand included

    # ------------------------------------------------------------------ entry

    def parse(self) -> Node:
        text = self.text
        if "\x00" in text:
            raise WhereError("invalid character NUL in where clause", None)
        try:
            tree_json = parse_sql_json(PREFIX + text)
            check_size(tree_json)
            tree = json.loads(tree_json)
        except RecursionError:
            raise WhereError(f"where clause is nested too deeply (more than {MAX_DEPTH} "
                             "levels)", None) from None
        except ParseError as exc:
            msg, pos = exc.args[0], (exc.args[1] if len(exc.args) > 1 else None)
            if pos is not None:
                loc = max(0, pos - len(PREFIX))
            elif "end of input" in msg:
                loc = len(text.rstrip())
            else:
                loc = None
            raise WhereError(msg, loc) from None
        stmts = tree.get("stmts", [])
        if len(stmts) != 1:
            raise WhereError('unescaped ";" causing statement split', None)
        stmt = stmts[0].get("stmt", {})
        select = stmt.get("SelectStmt")
        if select is None or select.get("op") != "SETOP_NONE":
            raise WhereError("malformed query ending with SQL clauses: set operations (UNION/INTERSECT/EXCEPT) are not allowed", None)
        extra = [k for k in ("groupClause", "havingClause", "windowClause", "sortClause",
                             "limitCount", "limitOffset", "lockingClause", "withClause",
                             "intoClause", "distinctClause", "fromClause", "valuesLists",
                             "groupDistinct")
                 if select.get(k)]
        if extra or select.get("limitOption", "LIMIT_OPTION_DEFAULT") != "LIMIT_OPTION_DEFAULT":
            names = {
                "groupClause": "GROUP BY", "havingClause": "HAVING", "windowClause": "WINDOW",
                "sortClause": "ORDER BY", "limitCount": "LIMIT", "limitOffset": "OFFSET",
                "lockingClause": "FOR UPDATE/SHARE", "withClause": "WITH",
                "intoClause": "INTO", "distinctClause": "DISTINCT", "fromClause": "FROM",
                "valuesLists": "VALUES", "groupDistinct": "GROUP BY DISTINCT",
            }
            shown = ", ".join(names[k] for k in extra) or "LIMIT"
            raise WhereError(f"malformed query ending with SQL clauses: {shown} is not allowed", None)
        where = select.get("whereClause")
        if where is None:
            raise WhereError("empty where clause", 0)
        node = self.expr(where)
        node = coerce(node, "bool", "WHERE clause must return bool", node.loc or 0)
        return node

    # ------------------------------------------------------------------ dispatch

    def expr(self, node: dict) -> Node:
        (kind, body), = node.items()
        handler = getattr(self, "_" + kind, None)
        if handler is None:
            raise WhereError(f"{kind} is not supported in this context", _loc(body))
        if self.depth >= MAX_DEPTH:
            raise WhereError(f"where clause is nested too deeply (more than {MAX_DEPTH} "
                             "levels)", _loc(body))
        self.depth += 1
        try:
            return handler(body)
        finally:
            self.depth -= 1

    def operand(self, node: dict) -> Node:
        """An expression used as an operator/function argument (not just IS NULL)."""
        n = self.expr(node)
        self.check_usable(n)
        return n

    def check_usable(self, n: Node) -> None:
        if n.type.startswith("opaque:"):
            what = f'column "{n.name}"' if isinstance(n, Col) else "expression"
            raise WhereError(
                f"{what} of type {display(n.type)} is not supported here: such values can only "
                "be tested with IS [NOT] NULL", n.loc)

    # ------------------------------------------------------------------ leaves

    def _ColumnRef(self, body: dict) -> Node:
        fields = body["fields"]
        loc = _loc(body)
        if any("A_Star" in f for f in fields):
            raise WhereError("* is not supported in this context", loc)
        names = [_sval(f) for f in fields]
        if len(names) != 1 or names[0] not in self.columns:
            raise WhereError(f"unknown reference {'.'.join(names)}", loc)
        col = self.columns[names[0]]
        self.used.add(col.name)
        return Col(column_type(col), loc, name=col.name)

    def _A_Const(self, body: dict) -> Node:
        loc = _loc(body)
        if body.get("isnull"):
            return Const(UNKNOWN, loc, None)
        if "ival" in body:
            return Const("int4", loc, body["ival"].get("ival", 0))
        if "fval" in body:
            s = body["fval"]["fval"]
            clean = s.replace("_", "")
            if all(c.isdigit() for c in clean.lstrip("-")):
                if len(clean) <= 20:  # beyond: no int8 (and no str -> int digit limit)
                    v = int(clean)
                    if INT_RANGE["int8"][0] <= v <= INT_RANGE["int8"][1]:
                        return Const("int8", loc, v)
                return Const("numeric", loc, _numeric_literal(Decimal(clean), loc))
            if clean.lower().startswith(("0x", "-0x", "0o", "-0o", "0b", "-0b")):
                neg = clean.startswith("-")
                body_s = clean.lstrip("-")
                v = int(body_s[2:], {"x": 16, "o": 8, "b": 2}[body_s[1].lower()])
                v = -v if neg else v
                if INT_RANGE["int8"][0] <= v <= INT_RANGE["int8"][1]:
                    return Const("int8", loc, v)
                return Const("numeric", loc, _numeric_literal(Decimal(v), loc))
            return Const("numeric", loc, _numeric_literal(Decimal(clean), loc))
        if "sval" in body:
            s = body["sval"].get("sval", "")
            return Const(UNKNOWN, loc, s, lit=s)
        if "boolval" in body:
            return Const("bool", loc, bool(body["boolval"].get("boolval", False)))
        if "bsval" in body:
            raise WhereError("BitString values are not supported", loc)
        raise WhereError("unsupported constant", loc)

    # ------------------------------------------------------------------ coercion

    # ------------------------------------------------------------------ casts

    def _TypeCast(self, body: dict) -> Node:
        loc = _loc(body)
        tn = body["typeName"]
        target, typmod, sqltype = resolve_type_name(tn)
        arg_node = body["arg"]
        if "A_ArrayExpr" in arg_node and not arg_node["A_ArrayExpr"].get("elements"):
            if not is_array(target):
                raise WhereError("cannot cast empty array to a non-array type", loc)
            return Const(target, loc, PgArray((), (), ()), lit=None)
        arg = self.expr(arg_node)
        if arg.type == target and not typmod:
            return arg
        if is_unknown(arg):
            c = literal_as(arg, target)
            if typmod and c.value is not None:
                mod = typmod_fn(target, typmod)
                if mod is not None:
                    try:
                        c.value = mod(c.value)
                    except EvalError as exc:
                        raise WhereError(str(exc), loc) from None
                    c.lit = None
            return c
        self.check_usable(arg)
        if arg.type.startswith("enum:") and target not in ("text", "varchar", "bpchar", "name"):
            raise WhereError(f"unknown cast from type {display(arg.type)} to type {display(target)}", loc)
        return make_cast(arg, target, loc, typmod, sqltype)

    # ------------------------------------------------------------------ boolean logic

    def _BoolExpr(self, body: dict) -> Node:
        op = body["boolop"]
        loc = _loc(body)
        names = {"AND_EXPR": "AND", "OR_EXPR": "OR", "NOT_EXPR": "NOT"}
        args = []
        for a in body["args"]:
            n = self.operand(a)
            args.append(coerce(n, "bool", f"argument of {names[op]} must be type boolean, "
                                              f"not type {display(n.type)}", n.loc))
        kind = {"AND_EXPR": "and", "OR_EXPR": "or", "NOT_EXPR": "not"}[op]
        return Op("bool", loc, kind, args)

    def _NullTest(self, body: dict) -> Node:
        arg = self.expr(body["arg"])
        if is_unknown(arg):
            arg = literal_as(arg, "text")
        neg = body["nulltesttype"] == "IS_NOT_NULL"
        if isinstance(arg, Col) and self.columns[arg.name].not_null:
            # Postgres (17+) plans a null test of a NOT NULL column as a constant, so the
            # rest of an OR/AND around it may never be evaluated (no error raised either).
            # Folding it here makes both the rendered SQL and our evaluator do the same.
            return Const("bool", _loc(body), neg)
        return Op("bool", _loc(body), "isnotnull" if neg else "isnull", [arg])

    def _BooleanTest(self, body: dict) -> Node:
        arg = self.operand(body["arg"])
        kind = body["booltesttype"]
        pretty = kind.replace("IS_", "IS ").replace("_", " ")
        arg = coerce(arg, "bool", f"argument of {pretty} must be bool, not {arg.type}",
                          _loc(body))
        return Op("bool", _loc(body), "booltest", [arg], {"test": kind})

    # ------------------------------------------------------------------ A_Expr

    def _A_Expr(self, body: dict) -> Node:
        kind = body["kind"]
        loc = _loc(body)
        names = [_sval(x) for x in body.get("name", [])]
        if len(names) != 1:
            if len(names) == 2 and names[0] == "pg_catalog":
                names = names[1:]
            else:
                raise WhereError(f"unknown operator {'.'.join(names)}", loc)
        op = names[0]
        if kind == "AEXPR_OP":
            if body.get("lexpr") is None:
                return self.unary(op, self.operand(body["rexpr"]), loc)
            return self.binary(op, self.operand(body["lexpr"]), self.operand(body["rexpr"]), loc)
        if kind in ("AEXPR_OP_ANY", "AEXPR_OP_ALL"):
            return self.any_all(op, body, kind == "AEXPR_OP_ALL", loc)
        if kind in ("AEXPR_DISTINCT", "AEXPR_NOT_DISTINCT"):
            t, (lhs, rhs) = unify([self.operand(body["lexpr"]), self.operand(body["rexpr"])],
                                       "IS DISTINCT FROM", loc)
            self.check_comparable(t, "=", loc)
            return Op("bool", loc, "distinct", [lhs, rhs],
                      {"negated": kind == "AEXPR_NOT_DISTINCT", "argtype": t})
        if kind == "AEXPR_NULLIF":
            t, (lhs, rhs) = unify([self.operand(body["lexpr"]), self.operand(body["rexpr"])],
                                       "NULLIF", loc)
            self.check_comparable(t, "=", loc)
            return Op(t, loc, "nullif", [lhs, rhs], {"argtype": t})
        if kind == "AEXPR_IN":
            rexpr = body["rexpr"]
            if "List" not in rexpr:
                raise WhereError("subqueries are not supported", _loc(next(iter(rexpr.values()))))
            return self.in_list(op, body["lexpr"], rexpr["List"]["items"], loc)
        if kind in ("AEXPR_LIKE", "AEXPR_ILIKE"):
            return self.like(op, body, loc)
        if kind in ("AEXPR_BETWEEN", "AEXPR_NOT_BETWEEN", "AEXPR_BETWEEN_SYM",
                    "AEXPR_NOT_BETWEEN_SYM"):
            return self.between(kind, body, loc)
        if kind == "AEXPR_SIMILAR":
            raise WhereError("SIMILAR TO is not supported", loc)
        raise WhereError(f"{kind} is not supported in this context", loc)

    def in_list(self, op: str, lexpr: dict, items: list[dict], loc: int | None) -> Node:
        """Postgres' transformAExprIn: the Var-free items (when more than one) become one
        ``= ANY(ARRAY[...])`` (``<> ALL`` for NOT IN) over their common type; every other
        item is its own comparison, OR-ed (AND-ed) after it, in order."""
        negated = op == "<>"
        lhs = self.operand(lexpr)
        nodes = []
        for item in items:
            before = set(self.used)
            self.used = set()
            n = self.operand(item)
            has_vars = bool(self.used)
            self.used |= before
            nodes.append((n, has_vars))
        nonvars = [n for n, v in nodes if not v]
        parts: list[Node] = []
        rest = [n for n, _ in nodes]
        if len(nonvars) > 1:
            t, unified = unify([lhs, *nonvars], "IN", loc)
            self.check_comparable(t, "=", loc)
            if is_array(t):
                raise WhereError("IN lists of arrays are not supported", loc)
            array = Op(t + "[]", loc, "array", unified[1:], {"nested": False})
            parts.append(Op("bool", loc, "anyall", [unified[0], array],
                            {"op": "<>" if negated else "=", "all": negated, "argtype": t}))
            rest = [n for n, v in nodes if v]
        for n in rest:
            parts.append(self.binary("<>" if negated else "=", lhs, n, loc))
        if len(parts) == 1:
            return parts[0]
        return Op("bool", loc, "and" if negated else "or", parts)

    def between(self, kind: str, body: dict, loc: int | None) -> Node:
        """Postgres' transformAExprBetween: rewritten into comparisons."""
        x = self.operand(body["lexpr"])
        a, b = [self.operand(n) for n in body["rexpr"]["List"]["items"]]

        def both(op1, lo, op2, hi, joiner):
            return Op("bool", loc, joiner, [self.binary(op1, x, lo, loc),
                                            self.binary(op2, x, hi, loc)])

        if kind == "AEXPR_BETWEEN":
            return both(">=", a, "<=", b, "and")
        if kind == "AEXPR_NOT_BETWEEN":
            return both("<", a, ">", b, "or")
        if kind == "AEXPR_BETWEEN_SYM":
            return Op("bool", loc, "or", [both(">=", a, "<=", b, "and"),
                                          both(">=", b, "<=", a, "and")])
        return Op("bool", loc, "and", [both("<", a, ">", b, "or"), both("<", b, ">", a, "or")])

    def check_comparable(self, t: str, op: str, loc: int | None) -> None:
        base = elem_of(t) if is_array(t) else t
        if base.startswith("enum:") and op not in ("=", "<>", "!="):
            raise WhereError(
                f"operator {op} on enum type {display(base)} is not supported "
                "(enum ordering needs the catalog); only = and <> are", loc)
        if base.startswith("opaque:"):
            raise WhereError(f"Could not select an operator overload: {display(t)} {op}", loc)

    # comparisons and arithmetic

    def binary(self, op: str, lhs: Node, rhs: Node, loc: int | None) -> Node:
        if op in CMP_OPS:
            if is_array(lhs.type) or is_array(rhs.type):
                lhs, rhs = self.same_array_types(lhs, rhs, op, loc)
                t = lhs.type
            else:
                t, (lhs, rhs) = unify([lhs, rhs], f"operator {op}:", loc)
            self.check_comparable(t, op, loc)
            return Op("bool", loc, "cmp", [lhs, rhs], {"op": "<>" if op == "!=" else op,
                                                       "argtype": t})
        if op in ("+", "-", "*", "/", "%"):
            return self.arithmetic(op, lhs, rhs, loc)
        if op == "||":
            return self.concat(lhs, rhs, loc)
        if op in ("@>", "<@", "&&"):
            lhs, rhs = self.same_array_types(lhs, rhs, op, loc)
            if not is_array(lhs.type):
                raise WhereError(f"Could not select an operator overload: operator {op} needs arrays", loc)
            self.check_comparable(lhs.type, "=", loc)
            return Op("bool", loc, "arrayop", [lhs, rhs], {"op": op, "argtype": lhs.type})
        if op in ("~~", "!~~", "~~*", "!~~*"):
            return self.like_nodes(op, lhs, rhs, None, loc)
        if op in ("&", "|", "#"):
            if is_unknown(lhs) and not is_unknown(rhs):
                lhs = literal_as(lhs, rhs.type if rhs.type in INT_TYPES else "int4")
            if is_unknown(rhs):
                rhs = literal_as(rhs, lhs.type if lhs.type in INT_TYPES else "int4")
            if lhs.type not in INT_TYPES or rhs.type not in INT_TYPES:
                raise WhereError(f"Could not select an operator overload: {display(lhs.type)} "
                                 f"{op} {display(rhs.type)}", loc)
            t = num_common(lhs.type, rhs.type)
            lhs, rhs = coerce(lhs, t, loc=loc), coerce(rhs, t, loc=loc)
            return Op(t, loc, "arith", [lhs, rhs], {"op": op, "argtype": t})
        if op == "^":
            return build_power(lhs, rhs, loc)
        raise WhereError(f"unknown binary operator {op}", loc)

    def same_array_types(self, lhs: Node, rhs: Node, op: str, loc: int | None):
        if is_unknown(lhs) and is_unknown(rhs):
            raise WhereError(f"operator is not unique: unknown {op} unknown", loc)
        if is_unknown(lhs):
            lhs = literal_as(lhs, rhs.type)
        elif is_unknown(rhs):
            rhs = literal_as(rhs, lhs.type)
        if lhs.type != rhs.type:
            raise WhereError(
                f"Could not select an operator overload: {display(lhs.type)} {op} "
                f"{display(rhs.type)}", loc)
        return lhs, rhs

    def unary(self, op: str, arg: Node, loc: int | None) -> Node:
        if op == "+" or op == "-" or op == "@":
            if is_unknown(arg):
                raise WhereError(f"operator is not unique: {op} unknown", loc)
            if arg.type in NUMBER_TYPES:
                if op == "+":
                    return arg
                return Op(arg.type, loc, "neg" if op == "-" else "abs", [arg], {"argtype": arg.type})
            if arg.type == "interval" and op in "+-":
                return arg if op == "+" else Op("interval", loc, "neg", [arg], {"argtype": "interval"})
            raise WhereError(f"Could not select an operator overload: {op} {display(arg.type)}", loc)
        if op == "|/":
            arg = coerce(arg, "float8", loc=loc)
            return Op("float8", loc, "func", [arg],
                      {"name": "sqrt", "sql": "sqrt", "impl": float_sqrt})
        raise WhereError(f"unknown unary operator {op}", loc)

    def arithmetic(self, op: str, lhs: Node, rhs: Node, loc: int | None) -> Node:
        lt, rt = lhs.type, rhs.type
        if is_unknown(lhs) and is_unknown(rhs):
            raise WhereError(f"operator is not unique: unknown {op} unknown", loc)
        # unknown literal resolution
        if is_unknown(lhs) or is_unknown(rhs):
            known = rt if is_unknown(lhs) else lt
            guess = _unknown_partner(op, known, unknown_left=is_unknown(lhs))
            if guess is None:
                raise WhereError(
                    f"operator is not unique: {display(lt)} {op} {display(rt)}", loc)
            if is_unknown(lhs):
                lhs = literal_as(lhs, guess)
            else:
                rhs = literal_as(rhs, guess)
            lt, rt = lhs.type, rhs.type
        if lt in NUMBER_TYPES and rt in NUMBER_TYPES:
            t = num_common(lt, rt)
            if op == "%" and t in FLOAT_TYPES:
                raise WhereError(f"Could not select an operator overload: {display(lt)} % {display(rt)}", loc)
            lhs, rhs = coerce(lhs, t, loc=loc), coerce(rhs, t, loc=loc)
            return Op(t, loc, "arith", [lhs, rhs], {"op": op, "argtype": t})
        sig = _datetime_signature(op, lt, rt)
        if sig is None:
            raise WhereError(
                f"Could not select an operator overload: {display(lt)} {op} {display(rt)}", loc)
        (ct_l, ct_r, result, impl) = sig
        lhs, rhs = coerce(lhs, ct_l, loc=loc), coerce(rhs, ct_r, loc=loc)
        return Op(result, loc, "dtarith", [lhs, rhs], {"op": op, "impl": impl})

    def concat(self, lhs: Node, rhs: Node, loc: int | None) -> Node:
        if is_array(lhs.type) or is_array(rhs.type):
            return build_concat(lhs, rhs, loc)
        if is_unknown(lhs) and is_unknown(rhs):
            lhs, rhs = literal_as(lhs, "text"), literal_as(rhs, "text")
        for side in (lhs, rhs):
            if side.type.startswith("enum:"):
                raise WhereError(f"Could not select an operator overload: {display(side.type)} || ...", loc)
        lstr = lhs.type in STRING_TYPES or is_unknown(lhs)
        rstr = rhs.type in STRING_TYPES or is_unknown(rhs)
        if not (lstr or rstr):
            raise WhereError(
                f"Could not select an operator overload: {display(lhs.type)} || {display(rhs.type)}", loc)
        args: list[Node] = []
        for side in (lhs, rhs):
            if is_unknown(side):
                args.append(literal_as(side, "text"))
            elif side.type == "text":
                args.append(side)
            else:
                args.append(make_cast(side, "text", side.loc))
        return Op("text", loc, "concat", args)

    # LIKE

    def like(self, op: str, body: dict, loc: int | None) -> Node:
        lhs = self.operand(body["lexpr"])
        rexpr = body["rexpr"]
        escape = None
        if "FuncCall" in rexpr and [_sval(x) for x in rexpr["FuncCall"]["funcname"]] == [
                "pg_catalog", "like_escape"]:
            pat_node, esc_node = rexpr["FuncCall"]["args"]
            pattern = self.operand(pat_node)
            escape = self.operand(esc_node)
        else:
            pattern = self.operand(rexpr)
        return self.like_nodes(op, lhs, pattern, escape, loc)

    def like_nodes(self, op: str, lhs: Node, pattern: Node, escape: Node | None,
                   loc: int | None) -> Node:
        ci = "*" in op
        negated = op.startswith("!")
        if is_unknown(lhs):
            lhs = literal_as(lhs, "text")
        if lhs.type not in STRING_TYPES:
            raise WhereError(
                f"Could not select an operator overload: {display(lhs.type)} "
                f"{'ILIKE' if ci else 'LIKE'} {display(pattern.type)}", loc)
        if lhs.type != "bpchar":
            lhs = coerce(lhs, "text", loc=loc)
        pattern = coerce(pattern, "text", loc=loc) if pattern.type != "text" else pattern
        args = [lhs, pattern]
        if escape is not None:
            args.append(coerce(escape, "text", loc=loc))
        return Op("bool", loc, "like", args, {"ci": ci, "negated": negated})

    # ANY / ALL

    def any_all(self, op: str, body: dict, is_all: bool, loc: int | None) -> Node:
        lhs = self.operand(body["lexpr"])
        rhs = self.operand(body["rexpr"])
        if op not in CMP_OPS:
            raise WhereError(f"operator {op} is not supported with ANY/ALL", loc)
        if is_unknown(rhs):
            elem = "text" if is_unknown(lhs) else lhs.type
            if is_array(elem):
                raise WhereError("arrays of arrays are not supported", loc)
            rhs = literal_as(rhs, elem + "[]")
        if not is_array(rhs.type):
            raise WhereError("argument of ANY must be an array" if not is_all
                             else "argument of ALL must be an array", rhs.loc)
        elem = elem_of(rhs.type)
        if is_unknown(lhs):
            lhs = literal_as(lhs, elem)
        t = common_type(lhs.type, elem)
        if t is None:
            raise WhereError(
                f"Could not select an operator overload: {display(lhs.type)} {op} "
                f"{display(elem)}", loc)
        lhs = coerce(lhs, t, loc=loc)
        if t != elem:
            rhs = coerce(rhs, t + "[]", loc=loc)
        self.check_comparable(t, op, loc)
        return Op("bool", loc, "anyall", [lhs, rhs],
                  {"op": "<>" if op == "!=" else op, "all": is_all, "argtype": t})

    # ------------------------------------------------------------------ other nodes

    def _SubLink(self, body: dict) -> Node:
        raise WhereError("subqueries are not supported", _loc(body))

    def _CoalesceExpr(self, body: dict) -> Node:
        args = [self.operand(a) for a in body["args"]]
        t, nodes = unify(args, "COALESCE", _loc(body))
        return Op(t, _loc(body), "coalesce", nodes)

    def _MinMaxExpr(self, body: dict) -> Node:
        args = [self.operand(a) for a in body["args"]]
        is_greatest = body["op"] == "IS_GREATEST"
        name = "GREATEST" if is_greatest else "LEAST"
        t, nodes = unify(args, name, _loc(body))
        self.check_comparable(t, "<", _loc(body))
        return Op(t, _loc(body), "minmax", nodes, {"greatest": is_greatest, "argtype": t})

    def _A_ArrayExpr(self, body: dict) -> Node:
        loc = _loc(body)
        elements = body.get("elements") or []
        if not elements:
            raise WhereError("cannot determine type of empty array", loc)
        nodes = [self.operand(e) for e in elements]
        sub = [isinstance(n, Op) and n.kind == "array" for n in nodes]
        if any(sub):
            if not all(sub):
                raise WhereError("multidimensional arrays must have array expressions with matching dimensions", loc)
            t, nodes = unify(nodes, "ARRAY", loc)
            return Op(t, loc, "array", nodes, {"nested": True})
        t, nodes = unify(nodes, "ARRAY", loc)
        if is_array(t):
            raise WhereError("arrays of arrays are not supported", loc)
        return Op(t + "[]", loc, "array", nodes, {"nested": False})

    def _A_Indirection(self, body: dict) -> Node:
        """``a[i]``, ``a[i][j]``, ``a[i:j]``, ``a[:j][k]``...: one subscripting operation
        over all the brackets of the node (transformContainerSubscripts). With any slice
        present every subscript is a slice, a plain ``[k]`` meaning ``[1:k]``."""
        arg = self.operand(body["arg"])
        indices = []
        for ind in body["indirection"]:
            if "A_Indices" not in ind:
                raise WhereError("field selection is not supported", arg.loc)
            indices.append(ind["A_Indices"])
        check_subscriptable(arg, len(indices))
        if not any(idx.get("is_slice") for idx in indices):
            return subscript_node(arg, [subscript_index(self.operand(idx["uidx"]))
                                        for idx in indices])
        uppers: list[Node | None] = []
        lowers: list[Node | None] = []
        for idx in indices:
            if idx.get("lidx") is not None:
                lowers.append(subscript_index(self.operand(idx["lidx"])))
            elif not idx.get("is_slice"):
                lowers.append(Const("int4", None, 1))
            else:
                lowers.append(None)
            uppers.append(subscript_index(self.operand(idx["uidx"]))
                          if idx.get("uidx") is not None else None)
        return slice_node(arg, lowers, uppers)

    def _FuncCall(self, body: dict) -> Node:
        loc = _loc(body)
        names = [_sval(x) for x in body["funcname"]]
        if body.get("agg_star") or body.get("agg_distinct") or body.get("agg_filter") \
                or body.get("agg_order") or body.get("over") or body.get("agg_within_group"):
            raise WhereError("aggregation is not supported in this context", loc)
        if body.get("func_variadic"):
            raise WhereError("VARIADIC is not supported", loc)
        if len(names) == 2 and names[0] == "pg_catalog":
            names = names[1:]
        if len(names) != 1:
            raise WhereError(f"unknown or unsupported function {'.'.join(names)}/"
                             f"{len(body.get('args') or [])}", loc)
        args = [self.operand(a) for a in body.get("args") or []]
        return build_function(names[0], args, loc)

    def _SQLValueFunction(self, body: dict) -> Node:
        raise WhereError("functions depending on the current time or session "
                         "(CURRENT_DATE, CURRENT_USER, ...) are not supported", _loc(body))

    def _CollateClause(self, body: dict) -> Node:
        raise WhereError("COLLATE is not supported", _loc(body))

    def _ParamRef(self, body: dict) -> Node:
        raise WhereError("parameters ($n) are not supported", _loc(body))


def _unknown_partner(op: str, known: str, unknown_left: bool) -> str | None:
    """The type an unknown literal takes next to ``known`` for arithmetic ``op``."""
    if known in NUMBER_TYPES:
        return known
    if known == "interval":
        return "float8" if op in ("*", "/") and not unknown_left else (
            "interval" if op in "+-" else ("float8" if op == "*" else None))
    if known == "date":
        if op == "-" and not unknown_left:
            return "date"
        if op == "-" and unknown_left:
            return "date"
        return None
    if known in ("timestamp", "timestamptz"):
        if op == "+":
            return "interval"
        if op == "-":
            return known
        return None
    if known == "time":
        if op == "-":
            return "time"
        return None
    return None


def _datetime_signature(op: str, lt: str, rt: str):
    """(left type, right type, result type, implementation name) or None."""
    if op == "+":
        if lt == "date" and rt in ("int2", "int4"):
            return ("date", "int4", "date", "date+int")
        if rt == "date" and lt in ("int2", "int4"):
            return ("int4", "date", "date", "int+date")
        if lt in ("date", "timestamp") and rt == "interval":
            return ("timestamp", "interval", "timestamp", "ts+iv")
        if rt in ("date", "timestamp") and lt == "interval":
            return ("interval", "timestamp", "timestamp", "iv+ts")
        if lt == "timestamptz" and rt == "interval":
            return ("timestamptz", "interval", "timestamptz", "ts+iv")
        if lt == "interval" and rt == "timestamptz":
            return ("interval", "timestamptz", "timestamptz", "iv+ts")
        if lt == "date" and rt == "time":
            return ("date", "time", "timestamp", "date+time")
        if lt == "time" and rt == "date":
            return ("time", "date", "timestamp", "time+date")
        if lt == "time" and rt == "interval":
            return ("time", "interval", "time", "time+iv")
        if lt == "interval" and rt == "time":
            return ("interval", "time", "time", "iv+time")
        if lt == rt == "interval":
            return ("interval", "interval", "interval", "iv+iv")
    if op == "-":
        if lt == "date" and rt in ("int2", "int4"):
            return ("date", "int4", "date", "date-int")
        if lt == rt == "date":
            return ("date", "date", "int4", "date-date")
        if lt in ("date", "timestamp") and rt == "interval":
            return ("timestamp", "interval", "timestamp", "ts-iv")
        if lt == "timestamptz" and rt == "interval":
            return ("timestamptz", "interval", "timestamptz", "ts-iv")
        if is_datetime(lt) and is_datetime(rt):
            t = common_type(lt, rt)
            if t == "date":
                return None
            return (t, t, "interval", "ts-ts")
        if lt == "time" and rt == "interval":
            return ("time", "interval", "time", "time-iv")
        if lt == rt == "time":
            return ("time", "time", "interval", "time-time")
        if lt == rt == "interval":
            return ("interval", "interval", "interval", "iv-iv")
    if op == "*":
        if lt == "interval" and rt in NUMBER_TYPES:
            return ("interval", "float8", "interval", "iv*f")
        if rt == "interval" and lt in NUMBER_TYPES:
            return ("float8", "interval", "interval", "f*iv")
    if op == "/" and lt == "interval" and rt in NUMBER_TYPES:
        return ("interval", "float8", "interval", "iv/f")
    return None


# ---------------------------------------------------------------------------- type names

_QUALIFIED = {
    "int2", "int4", "int8", "numeric", "float4", "float8", "bool", "varchar", "bpchar",
    "timestamp", "timestamptz", "time", "interval", "text", "date", "uuid", "name",
}
_UNQUALIFIED = _QUALIFIED | {"text", "date", "uuid", "name"}


def resolve_type_name(tn: dict) -> tuple[str, tuple, str]:
    loc = _loc(tn)
    names = [_sval(x) for x in tn["names"]]
    if len(names) == 2 and names[0] == "pg_catalog":
        base = names[1]
        ok = base in _QUALIFIED
    elif len(names) == 1:
        base = names[0]
        ok = base in _UNQUALIFIED and base != "char"
    else:
        base, ok = ".".join(names), False
    if not ok:
        raise WhereError(f"unsupported type {base}", loc)
    if tn.get("setof") or tn.get("pct_type"):
        raise WhereError(f"unsupported type {base}", loc)
    mods: list[int] = []
    for m in tn.get("typmods") or []:
        c = m.get("A_Const")
        if c is None or "ival" not in c:
            raise WhereError(f"unsupported type modifier for {base}", loc)
        mods.append(c["ival"].get("ival", 0))
    if mods and base not in ("varchar", "bpchar", "numeric"):
        raise WhereError(f"type modifiers on {display(base)} are not supported", loc)
    if base == "numeric" and mods:
        if len(mods) == 1:
            mods.append(0)
        p, s = mods
        if not (1 <= p <= 1000) or not (-1000 <= s <= 1000) or s < 0 or s > p:
            raise WhereError(f"unsupported NUMERIC precision {p} / scale {s}", loc)
    if base in ("varchar", "bpchar") and mods:
        if len(mods) != 1 or not (1 <= mods[0] <= 10485760):
            raise WhereError(f"invalid length for type {display(base)}", loc)
    t = base
    sqltype = base
    if mods:
        sqltype += "(" + ",".join(str(m) for m in mods) + ")"
    bounds = tn.get("arrayBounds") or []
    if bounds:
        t += "[]"
        sqltype += "[]"
    return t, tuple(mods), sqltype
