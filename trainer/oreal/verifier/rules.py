"""Rule-based equivalence of a reference answer and an extracted answer.

`check(gold, answer, symbolic)` returns True, False, or None. None means "the fast rules could
not decide and sympy is needed": the caller then runs the same check in a killable worker process
with `symbolic=True`, where the undecided scalar comparisons go to `oreal.verifier.symbolic`.

Cascade for two scalars (paper-independent; see the module docstrings of `algebra`/`values`):
1. exact string match after normalisation (in `check`);
2. exact arithmetic in Q(i, sqrt)[symbols] — decides most answers outright;
3. numeric evaluation: a reliable difference at a test point refutes equality; a decimal answer
   is compared with a tolerance of half a unit in its last place (and needs 3 significant digits);
4. only when both sides are exact and agree numerically: sympy, in the worker pool.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from fractions import Fraction
from functools import lru_cache

import mpmath

from .algebra import TooBig, Unsupported
from .budget import OutOfTime, deadline
from .budget import check as check_budget
from .latex import ParseError
from .normalize import comparison_key, normalize
from .structure import parse_answer
from .values import MAX_MAGNITUDE_BITS, decimals, exact, numeric, relative_difference, symbols, walk

Tri = bool | None
ScalarOracle = Callable[[tuple, tuple], bool]
EquationOracle = Callable[[tuple, tuple], bool]
MIN_SIGNIFICANT_DIGITS = 3
REFUTE_THRESHOLD = 1e-15


class Symbolic:
    """Hooks into sympy; None in the calling process, real functions inside workers."""

    def __init__(self, scalar: ScalarOracle, proportional: EquationOracle) -> None:
        self.scalar = scalar
        self.proportional = proportional


CACHED_ANSWER_CHARS = 500  # long answers are not cached, so the cache stays small (~100 MB at most)


def prepare(text: str) -> tuple[str, tuple | None, str]:
    """(comparison key, structure or None if unparseable, unit: "percent", "degrees" or "")."""
    return _prepare_cached(text) if len(text) <= CACHED_ANSWER_CHARS else _prepare(text)


@lru_cache(maxsize=16_384)
def _prepare_cached(text: str) -> tuple[str, tuple | None, str]:
    return _prepare(text)


def _prepare(text: str) -> tuple[str, tuple | None, str]:
    normalized = normalize(text)
    key = comparison_key(normalized.text)
    try:
        node = parse_answer(normalized)
    except (ParseError, RecursionError):
        node = None
    unit = "percent" if normalized.percent else ("degrees" if normalized.degrees else "")
    return key, node, unit


def check(gold: str, answer: str, symbolic: Symbolic | None = None, budget: float | None = None) -> Tri:
    """True/False, or None when sympy is needed (or the fast rules ran out of their time budget)."""
    try:
        with deadline(budget):
            return _check(gold, answer, symbolic)
    except OutOfTime:
        return None


def _check(gold: str, answer: str, symbolic: Symbolic | None) -> Tri:
    gold_key, gold_node, gold_unit = prepare(gold)
    key, node, unit = prepare(answer)
    if gold_key == key and key:
        return True
    if gold_node is None:
        return gold_key.lower() == key.lower() and bool(key)
    if node is None:
        return False
    result = equal(gold_node, node, symbolic)
    if result is not True and gold_unit != unit:
        # "25%" may be written 25 or 0.25, and 90 degrees as pi/2: also try converting the side
        # that carries the unit.
        scaled_gold, scaled = (
            (_convert(gold_node, gold_unit), node) if gold_unit else (gold_node, _convert(node, unit))
        )
        if scaled_gold is not None and scaled is not None:
            second = equal(scaled_gold, scaled, symbolic)
            result = True if second else (None if None in (result, second) else False)
    return result


def _convert(node: tuple, unit: str) -> tuple | None:
    if node[0] != "expr" or not unit:
        return None
    if unit == "percent":
        return ("expr", ("div", node[1], ("num", Fraction(100), None)))
    return ("expr", ("div", ("mul", (node[1], ("const", "pi"))), ("num", Fraction(180), None)))


def _all(results: Iterable[Tri]) -> Tri:
    unknown = False
    for result in results:
        if result is False:
            return False
        unknown = unknown or result is None
    return None if unknown else True


def equal(a: tuple, b: tuple, symbolic: Symbolic | None) -> Tri:
    """Structural equality of two answers (a is the reference), scalars compared by `scalar`."""
    check_budget()
    if a[0] == "set" and len(a[1]) == 1:
        return equal(_as_item(a[1][0]), b, symbolic)
    if b[0] == "set" and len(b[1]) == 1:
        return equal(a, _as_item(b[1][0]), symbolic)
    ka, kb = a[0], b[0]
    if ka == kb == "expr":
        return scalar(a[1], b[1], symbolic)
    if "text" in (ka, kb):
        return ka == kb and a[1] == b[1]
    if "choice" in (ka, kb):
        other = b if ka == "choice" else a
        letter = a[1] if ka == "choice" else b[1]
        return (other[0] == "choice" and other[1] == letter) or other == ("expr", ("sym", letter))
    if "eq" in (ka, kb):
        return _equation(a, b, symbolic)
    if ka == kb and ka in ("set", "union"):
        return _unordered(a[1], b[1], symbolic)
    interval_a, interval_b = _interval(a), _interval(b)
    if interval_a and interval_b and not (ka == kb == "pair"):
        if interval_a[0] != interval_b[0] or interval_a[3] != interval_b[3]:
            return False
        return _all(
            (scalar(interval_a[1], interval_b[1], symbolic), scalar(interval_a[2], interval_b[2], symbolic))
        )
    if ka == kb == "rel":
        return _relation(a, b, symbolic)
    if ka == kb == "matrix":
        if len(a[1]) != len(b[1]) or len(a[1][0]) != len(b[1][0]):
            return False
        return _all(
            scalar(x, y, symbolic)
            for ra, rb in zip(a[1], b[1], strict=True)
            for x, y in zip(ra, rb, strict=True)
        )
    seq_a, seq_b = _sequence(a), _sequence(b) or _assignments(b)
    if seq_a is not None and seq_b is not None:
        if len(seq_a) != len(seq_b):
            return False
        return _all(equal(_as_item(x), _as_item(y), symbolic) for x, y in zip(seq_a, seq_b, strict=True))
    return False


_ANSWER_KINDS = frozenset(
    ("expr", "eq", "rel", "interval", "pair", "tuple", "set", "union", "matrix", "text", "choice")
)


def _as_item(node: tuple) -> tuple:
    """Elements of sets and tuples may be bare expressions; wrap those as answers."""
    return node if node[0] in _ANSWER_KINDS else ("expr", node)


def _unordered(xs: tuple, ys: tuple, symbolic: Symbolic | None) -> Tri:
    if len(xs) != len(ys):
        return False
    unmatched = list(range(len(ys)))
    unknown = False
    for x in xs:
        results = [(j, equal(_as_item(x), _as_item(ys[j]), symbolic)) for j in unmatched]
        hit = next((j for j, r in results if r is True), None)
        if hit is not None:
            unmatched.remove(hit)
        elif any(r is None for _, r in results):
            unknown = True
        else:
            return False
    return None if unknown else True


def _sequence(node: tuple) -> tuple | None:
    if node[0] == "pair":
        return (node[1], node[2])
    if node[0] == "tuple":
        return node[1]
    if node[0] == "matrix":
        rows = node[1]
        if len(rows[0]) == 1:
            return tuple(row[0] for row in rows)
        if len(rows) == 1:
            return rows[0]
    return None


def _assignments(node: tuple) -> tuple | None:
    """ "x=1, y=2" as the point (1, 2): values ordered by variable name."""
    if node[0] != "set" or not all(item[0] == "eq" and item[1][0] == "sym" for item in node[1]):
        return None
    names = [item[1][1] for item in node[1]]
    if len(set(names)) != len(names):
        return None
    return tuple(item[2] for item in sorted(node[1], key=lambda item: item[1][1]))


def _interval(node: tuple) -> tuple | None:
    """(left closed, lo, hi, right closed) for intervals, open pairs and one-variable inequalities."""
    if node[0] == "interval":
        return node[1:]
    if node[0] == "pair":
        return (False, node[1], node[2], False)
    if node[0] != "rel":
        return None
    exprs, ops = node[1], node[2]
    variables = [k for k, e in enumerate(exprs) if e[0] == "sym"]
    if (
        len(variables) != 1
        or "!=" in ops
        or any(symbols(e) for k, e in enumerate(exprs) if k != variables[0])
    ):
        return None
    inf, minus_inf = ("const", "inf"), ("neg", ("const", "inf"))
    if len(exprs) == 2:
        (op,) = ops
        if variables[0] == 1:  # c < x  ->  x > c
            op = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}[op]
        c = exprs[1 - variables[0]]
        if op in (">", ">="):
            return (op == ">=", c, inf, False)
        return (False, minus_inf, c, op == "<=")
    if len(exprs) == 3 and variables[0] == 1 and ops[0][0] == ops[1][0]:
        if ops[0][0] == "<":
            return (ops[0] == "<=", exprs[0], exprs[2], ops[1] == "<=")
        return (ops[1] == ">=", exprs[2], exprs[0], ops[0] == ">=")
    return None


def _relation(a: tuple, b: tuple, symbolic: Symbolic | None) -> Tri:
    flip = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "!=": "!="}
    for exprs, ops in ((b[1], b[2]), (b[1][::-1], tuple(flip[o] for o in b[2][::-1]))):
        if ops == a[2] and len(exprs) == len(a[1]):
            result = _all(scalar(x, y, symbolic) for x, y in zip(a[1], exprs, strict=True))
            if result is not False:
                return result
    return False


def _equation(a: tuple, b: tuple, symbolic: Symbolic | None) -> Tri:
    if b[0] == "eq" and a[0] != "eq" and not symbols(b[1]) and not symbols(b[2]):
        # A chain of equal values ("\\frac{5}{2} = 2.5"): every side must equal the reference.
        return _all((equal(a, ("expr", b[1]), symbolic), equal(a, ("expr", b[2]), symbolic)))
    if a[0] == b[0] == "eq":
        if a[1][0] == "sym" and a[1] == b[1]:
            return scalar(a[2], b[2], symbolic)
        return _proportional(("add", (a[1], ("neg", a[2]))), ("add", (b[1], ("neg", b[2]))), symbolic)
    eq, other = (a, b) if a[0] == "eq" else (b, a)
    if eq[1][0] != "sym" or symbols(eq[2]) & {eq[1][1]}:
        return False
    value = ("expr", eq[2])
    return equal(value, other, symbolic) if eq is a else equal(other, value, symbolic)


def _proportional(x: tuple, y: tuple, symbolic: Symbolic | None) -> Tri:
    """Do the equations x = 0 and y = 0 agree, i.e. is y a non-zero constant multiple of x?"""
    try:
        px, py = exact(x), exact(y)
    except (Unsupported, TooBig):
        return symbolic.proportional(x, y) if symbolic else None
    if not px or not py or len(px) != len(py):
        return False
    first = next(iter(px))
    if first not in py:
        return False
    ratio = py[first] / px[first]
    return all(py.get(k) == v * ratio for k, v in px.items())


def _infinity_sign(node: tuple) -> int | None:
    if node == ("const", "inf"):
        return 1
    if node[0] == "neg" and node[1] == ("const", "inf"):
        return -1
    return None


def scalar(x: tuple, y: tuple, symbolic: Symbolic | None) -> Tri:
    """Equality of two expressions (see the module docstring for the cascade)."""
    sx, sy = _infinity_sign(x), _infinity_sign(y)
    if sx is not None or sy is not None:
        return sx == sy
    if x[0] == "base":
        return _base_numeral(x, y)
    try:
        if exact(x) == exact(y):
            return True
        exactly_unequal = True
    except (Unsupported, TooBig):
        exactly_unequal = False
    dx, dy = list(decimals(x)), list(decimals(y))
    if exactly_unequal and (not dx and not dy or dx and dy):
        return False
    names = sorted(symbols(x) | symbols(y))
    one_side_decimal = bool(dx) != bool(dy)
    if exactly_unequal:  # exact values differ; only a decimal approximation may still match
        return _approximately(x, y, dx or dy, names)
    differ = False
    for point in (0, 1):
        try:
            vx, rx = _numeric_or_huge(x, names, point)
            vy, ry = _numeric_or_huge(y, names, point)
        except _NUMERIC_ERRORS:
            break
        if vx is None or vy is None:
            # A value beyond 2^200000 in magnitude (or below 2^-200000), reached without any
            # addition that could cancel it, cannot equal a value of ordinary size.
            huge, other = (x, vy) if vx is None else (y, vx)
            ordinary = other is not None and (other == 0 or abs(mpmath.mag(other)) < MAX_MAGNITUDE_BITS / 2)
            if ordinary and not _has_addition(huge):
                return False
            break
        if rx and ry and relative_difference(vx, vy) > REFUTE_THRESHOLD:
            differ = True
            break
    if differ:
        return one_side_decimal and _approximately(x, y, dx or dy, names)
    if symbolic is None:
        return None
    if symbolic.scalar(x, y):
        return True
    return one_side_decimal and _approximately(x, y, dx or dy, names)


_NUMERIC_ERRORS = (Unsupported, ValueError, ZeroDivisionError, OverflowError, KeyError, TypeError)


def _numeric_or_huge(node: tuple, names: list[str], point: int) -> tuple:
    try:
        return numeric(node, names, point)
    except TooBig:
        return None, False


def _has_addition(node: tuple) -> bool:
    return any(item[0] == "add" for item in walk(node))


def _approximately(x: tuple, y: tuple, literals: list[tuple[int, float]], names: list[str]) -> bool:
    """A decimal matches when it is the other value rounded to the decimal's own precision."""
    significant = min(s for s, _ in literals)
    tolerance = max(r for _, r in literals)
    if significant < MIN_SIGNIFICANT_DIGITS:
        return False
    for point in (0, 1) if names else (0,):
        try:
            vx, _ = numeric(x, names, point)
            vy, _ = numeric(y, names, point)
        except (TooBig, *_NUMERIC_ERRORS):
            return False
        if relative_difference(vx, vy) > tolerance * (1 + 1e-9):
            return False
    return True


def _base_numeral(x: tuple, y: tuple) -> bool:
    """A reference 52_8 accepts 52_8 and the bare numeral 52 (the subscript is often dropped).

    A bare numeral answering a base-b question is read in base b; an answer in another base is
    wrong even if its value agrees, because the question asked for base b.
    """
    if y[0] == "base":
        return x[2] == y[2] and x[1].lstrip("0") == y[1].lstrip("0")
    if y[0] == "num" and y[2] is None and y[1].denominator == 1 and y[1] >= 0:
        return str(y[1].numerator) == (x[1].lstrip("0") or "0")
    return False
