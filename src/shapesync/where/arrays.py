"""Array subscripts, slices, concatenation and size functions, with Postgres' semantics.

Type resolution (``build_concat``, ``check_subscriptable`` / ``subscript_index`` /
``subscript_node`` / ``slice_node``) follows the parser (transformContainerSubscripts,
the ``anycompatible`` polymorphic rules); the value functions follow arrayfuncs.c
(array_get_element, array_get_slice, array_cat, array_append, array_prepend,
array_length...). They operate on :class:`PgArray` values; NULL is ``None``.
"""

from __future__ import annotations

from itertools import product

from .coerce import coerce, literal_as, make_cast
from .errors import EvalError, WhereError
from .limits import check_size
from .nodes import Node, Op, is_unknown
from .ops import NUM_RANK
from .values import NUMBER_TYPES, STRING_TYPES, PgArray, display, elem_of, is_array

MAXDIM = 6
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
MAX_ARRAY_SIZE = 0x3FFFFFFF // 8  # MaxArraySize (MaxAllocSize / sizeof(Datum))
EMPTY = PgArray((), (), ())


# ---------------------------------------------------------------------------- values


def get_element(arr: PgArray, idx: list[int]):
    """``arr[i][j]...``: NULL when the number of subscripts is not the array's dimension
    count or any subscript is out of range (array_get_element)."""
    if len(idx) != len(arr.dims):
        return None
    offset = 0
    for i, lb, dim in zip(idx, arr.lbs, arr.dims, strict=True):
        k = i - lb
        if k < 0 or k >= dim:
            return None
        offset = offset * dim + k
    return arr.items[offset]


def get_slice(arr: PgArray, lowers: list[int | None], uppers: list[int | None]) -> PgArray:
    """``arr[l:u]...`` (array_get_slice): bounds are clipped to the array, omitted bounds
    (None) mean the array's own bound, dimensions not mentioned are taken whole, an empty
    range or too many subscripts give an empty array; the result's lower bounds are 1."""
    ndim = len(arr.dims)
    n = len(uppers)
    if ndim < n or ndim == 0:
        return EMPTY
    ranges = []
    for i in range(ndim):
        lb = arr.lbs[i]
        ub = lb + arr.dims[i] - 1
        lo = lowers[i] if i < n else None
        hi = uppers[i] if i < n else None
        if lo is None or lo < lb:
            lo = lb
        if hi is None or hi > ub:
            hi = ub
        if lo > hi:
            return EMPTY
        ranges.append((lo - lb, hi - lb))
    if ndim == 1:
        lo, hi = ranges[0]
        return PgArray((hi - lo + 1,), (1,), arr.items[lo:hi + 1])
    dims = tuple(hi - lo + 1 for lo, hi in ranges)
    if dims == arr.dims:
        return PgArray(dims, (1,) * ndim, arr.items) if any(x != 1 for x in arr.lbs) else arr
    strides = [1] * ndim
    for i in range(ndim - 2, -1, -1):
        strides[i] = strides[i + 1] * arr.dims[i + 1]
    items = arr.items
    out = tuple(items[sum(k * s for k, s in zip(pos, strides, strict=True))]
                for pos in product(*(range(lo, hi + 1) for lo, hi in ranges)))
    return PgArray(dims, (1,) * ndim, out)


def _check_bounds(dims: tuple[int, ...], lbs: tuple[int, ...]) -> None:
    """ArrayGetNItems + ArrayCheckBounds."""
    total = 1
    for d in dims:
        total *= d
    if total > MAX_ARRAY_SIZE:
        raise EvalError(f"array size exceeds the maximum allowed ({MAX_ARRAY_SIZE})")
    for d, lb in zip(dims, lbs, strict=True):
        if d + lb > INT32_MAX:
            raise EvalError(f"array lower bound is too large: {lb}")


def _incompatible() -> EvalError:
    return EvalError("cannot concatenate incompatible arrays")


def array_cat(a: PgArray | None, b: PgArray | None) -> PgArray | None:
    """``anycompatiblearray || anycompatiblearray`` (not strict: a NULL side is ignored)."""
    if a is None:
        return b
    if b is None:
        return a
    nd1, nd2 = len(a.dims), len(b.dims)
    if nd1 == 0 and nd2 > 0:
        return b
    if nd2 == 0:
        return a
    if nd1 == nd2:
        if a.dims[1:] != b.dims[1:] or a.lbs[1:] != b.lbs[1:]:
            raise _incompatible()
        dims = (a.dims[0] + b.dims[0], *a.dims[1:])
        lbs = a.lbs
    elif nd1 == nd2 - 1:
        if a.dims != b.dims[1:] or a.lbs != b.lbs[1:]:
            raise _incompatible()
        dims = (b.dims[0] + 1, *b.dims[1:])
        lbs = b.lbs
    elif nd1 == nd2 + 1:
        if b.dims != a.dims[1:] or b.lbs != a.lbs[1:]:
            raise _incompatible()
        dims = (a.dims[0] + 1, *a.dims[1:])
        lbs = a.lbs
    else:
        raise _incompatible()
    _check_bounds(dims, lbs)
    check_size(len(a.items) + len(b.items), "array concatenation")
    return PgArray(dims, lbs, a.items + b.items)


def array_append(a: PgArray | None, elem) -> PgArray:
    """``anycompatiblearray || anycompatible`` (a NULL array counts as empty)."""
    if a is None or not a.dims:
        return PgArray((1,), (1,), (elem,))
    if len(a.dims) != 1:
        raise EvalError("argument must be empty or one-dimensional array")
    lb, dim = a.lbs[0], a.dims[0]
    if lb + dim > INT32_MAX:
        raise EvalError("integer out of range")
    dims = (dim + 1,)
    _check_bounds(dims, a.lbs)
    check_size(dim + 1, "array_append()")
    return PgArray(dims, a.lbs, a.items + (elem,))


def array_prepend(elem, a: PgArray | None) -> PgArray:
    """``anycompatible || anycompatiblearray``: the result keeps the array's lower bound."""
    if a is None or not a.dims:
        return PgArray((1,), (1,), (elem,))
    if len(a.dims) != 1:
        raise EvalError("argument must be empty or one-dimensional array")
    lb, dim = a.lbs[0], a.dims[0]
    if lb - 1 < INT32_MIN:
        raise EvalError("integer out of range")
    _check_bounds((dim + 1,), (lb - 1,))
    check_size(dim + 1, "array_prepend()")
    return PgArray((dim + 1,), a.lbs, (elem, *a.items))


def array_length(a: PgArray, dim: int) -> int | None:
    """array_length(a, dim): NULL for a dimension the array does not have."""
    if not a.dims or dim < 1 or dim > len(a.dims):
        return None
    return a.dims[dim - 1]


def array_lower(a: PgArray, dim: int) -> int | None:
    if not a.dims or dim < 1 or dim > len(a.dims):
        return None
    return a.lbs[dim - 1]


def array_upper(a: PgArray, dim: int) -> int | None:
    if not a.dims or dim < 1 or dim > len(a.dims):
        return None
    return a.lbs[dim - 1] + a.dims[dim - 1] - 1


def cardinality(a: PgArray) -> int:
    return len(a.items)


def array_ndims(a: PgArray) -> int | None:
    return len(a.dims) if a.dims else None


# ---------------------------------------------------------------------------- types

_CATEGORY = {
    **dict.fromkeys(NUMBER_TYPES, "N"), **dict.fromkeys(STRING_TYPES, "S"),
    "date": "D", "time": "D", "timestamp": "D", "timestamptz": "D", "interval": "T",
    "bool": "B", "uuid": "U",
}
_PREFERRED = {"float8", "text", "timestamptz", "interval", "bool"}


def _implicit(src: str, dst: str) -> bool:
    """pg_cast's implicit casts between our scalar types."""
    if src == dst:
        return True
    if src in NUM_RANK and dst in NUM_RANK:
        return NUM_RANK[src] < NUM_RANK[dst]
    if src in STRING_TYPES and dst in STRING_TYPES:
        return src != "name" or dst == "text"  # name -> varchar/bpchar is assignment-only
    return (src, dst) in {("date", "timestamp"), ("date", "timestamptz"),
                          ("timestamp", "timestamptz"), ("time", "interval")}


def select_common_type(types: list[str]) -> str | None:
    """Postgres' select_common_type for the ``anycompatible`` family (unknowns left out
    by the caller); None when the types cannot be matched."""
    if not types:
        return "text"
    if any(t not in _CATEGORY for t in types):
        return types[0] if all(t == types[0] for t in types) and not types[0].startswith(
            ("enum:", "opaque:")) else None
    p = types[0]
    for n in types[1:]:
        if n == p:
            continue
        if _CATEGORY[n] != _CATEGORY[p]:
            return None
        if p not in _PREFERRED and _implicit(p, n) and not _implicit(n, p):
            p = n
    if not all(_implicit(t, p) for t in types):
        return None
    return p


def build_concat(lhs: Node, rhs: Node, loc: int | None, fname: str | None = None) -> Op:
    """``||`` with an array operand (``fname`` None), or array_cat / array_append /
    array_prepend called by name. Postgres' operator choice: array || array and, with an
    untyped literal or NULL next to an array, array || array too; otherwise the array
    side decides between array_append and array_prepend."""
    unknown = (is_unknown(lhs), is_unknown(rhs))
    arrays = (is_array(lhs.type), is_array(rhs.type))
    if fname is None:
        if (arrays[0] and (arrays[1] or unknown[1])) or (arrays[1] and unknown[0]):
            mode = "cat"
        else:
            mode = "append" if arrays[0] else "prepend"
    else:
        mode = {"array_cat": "cat", "array_append": "append", "array_prepend": "prepend"}[fname]
    roles = {"cat": (True, True), "append": (True, False), "prepend": (False, True)}[mode]

    def failure() -> WhereError:
        types = [display(n.type) for n in (lhs, rhs)]
        if fname is None:
            return WhereError(f"Could not select an operator overload: {types[0]} || {types[1]}",
                              loc)
        return WhereError(f"Could not select a function overload for {fname}({', '.join(types)})",
                          loc)

    elems = []
    for node, unknown_side, is_arr, wants_array in zip((lhs, rhs), unknown, arrays, roles,
                                                       strict=True):
        if unknown_side:
            continue
        if is_arr != wants_array:
            raise failure()
        elems.append(elem_of(node.type) if is_arr else node.type)
    common = select_common_type(elems)  # only untyped literals: text, as in Postgres
    if common is None or common.startswith(("enum:", "opaque:")):
        raise failure()
    args = [coerce(node, common + "[]" if wants_array else common, loc=loc)
            for node, wants_array in zip((lhs, rhs), roles, strict=True)]
    return Op(common + "[]", loc, "arraycat", args, {"mode": mode})


# Subscripts (transformContainerSubscripts): the parser walks the brackets of ``a[i][j]``,
# ``a[i:j]``, ``a[:j][k]``... and builds one subscripting node over all of them with these.


def check_subscriptable(arg: Node, count: int) -> None:
    """``arg`` may take ``count`` brackets of subscripts."""
    if not is_array(arg.type):
        raise WhereError(f"cannot subscript type {display(arg.type)} because it does not "
                         "support subscripting", arg.loc)
    if count > MAXDIM:
        raise WhereError(f"number of array dimensions ({count}) exceeds the maximum "
                         f"allowed ({MAXDIM})", arg.loc)


def subscript_index(n: Node) -> Node:
    """A subscript converted to int4 as coerce_to_target_type(..., COERCION_ASSIGNMENT)
    does: int8 / numeric / float subscripts are cast too."""
    if is_unknown(n):
        return literal_as(n, "int4")
    if n.type == "int4":
        return n
    if n.type in NUMBER_TYPES:
        return make_cast(n, "int4", n.loc)
    raise WhereError("array subscript must have type integer", n.loc)


def subscript_node(arg: Node, subs: list[Node]) -> Op:
    """``arg[i]`` or ``arg[i][j]...`` (no slice)."""
    if len(subs) == 1:
        return Op(elem_of(arg.type), arg.loc, "subscript", [arg, subs[0]])
    return Op(elem_of(arg.type), arg.loc, "subscripts", [arg, *subs])


def slice_node(arg: Node, lowers: list[Node | None], uppers: list[Node | None]) -> Op:
    """``arg[l:u]...``: with any slice present every subscript is a slice (a plain ``[k]``
    being ``[1:k]``); an omitted bound is None."""
    args = [arg, *(u for u in uppers if u is not None), *(lo for lo in lowers if lo is not None)]
    return Op(arg.type, arg.loc, "slice", args,
              {"upper": tuple(u is not None for u in uppers),
               "lower": tuple(lo is not None for lo in lowers)})
