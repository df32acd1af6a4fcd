"""The value of an expression tree, exactly (see `algebra`) or numerically with mpmath, both with guards.

Numeric evaluation is used to *refute* equality cheaply (two values that differ at a random point
are different) and to compare against decimal approximations. It runs at two precisions: a value
whose two evaluations disagree lost its digits to cancellation and is reported as unreliable, so a
numeric "different" is only trusted when both sides are reliable.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from fractions import Fraction

import mpmath

from . import algebra
from .algebra import TooBig, Unsupported
from .budget import check as check_budget

MAX_MAGNITUDE_BITS = 200_000  # |log2| of any intermediate numeric value
MAX_NUMERIC_FACTORIAL = 10**6

PI, E = "\\pi", "\\e"  # the exact domain treats pi and e as independent transcendental symbols


def exact(node: tuple) -> algebra.Value:
    """The exact value of an expression tree, or Unsupported/TooBig."""
    check_budget()
    kind = node[0]
    if kind == "num":
        return algebra.constant(node[1])
    if kind == "sym":
        return algebra.symbol(node[1])
    if kind == "const":
        name = node[1]
        if name == "i":
            return {(-1, ()): Fraction(1)}
        if name == "inf":
            raise Unsupported("infinity")
        return algebra.symbol(PI if name == "pi" else E)
    if kind == "add":
        total: algebra.Value = {}
        for term in node[1]:
            total = algebra.add(total, exact(term))
        return total
    if kind == "neg":
        return algebra.neg(exact(node[1]))
    if kind == "mul":
        product = algebra.constant(1)
        for factor in node[1]:
            product = algebra.mul(product, exact(factor))
        return product
    if kind == "div":
        denominator = exact(node[2])
        if not denominator:
            raise Unsupported("division by zero")
        return algebra.mul(exact(node[1]), algebra.inverse(denominator))
    if kind == "pow":
        return _exact_power(node)
    if kind == "root":
        return algebra.nth_root(exact(node[1]), node[2])
    if kind == "fact":
        return algebra.constant(algebra.factorial(_rational(node[1])))
    if kind == "binom":
        n, k = _rational(node[1]), _rational(node[2])
        if n.denominator != 1 or k.denominator != 1 or n < 0 or k < 0:
            raise Unsupported("binomial of non-integers")
        if n > 100_000 or min(k, n - k) > algebra.MAX_FACTORIAL:
            raise TooBig("binomial too large")
        return algebra.constant(math.comb(int(n), int(k)))
    if kind == "abs":
        q = _rational(node[1])
        return algebra.constant(abs(q))
    if kind == "base":
        return algebra.constant(base_value(node[1], node[2]))
    raise Unsupported(kind)


def _rational(node: tuple) -> Fraction:
    q = algebra.as_rational(exact(node))
    if q is None:
        raise Unsupported("expected a rational")
    return q


def _exact_power(node: tuple) -> algebra.Value:
    base, exponent = node[1], node[2]
    q = algebra.as_rational(exact(exponent))
    if q is None:
        raise Unsupported("symbolic exponent")
    if base == ("const", "e") and q.denominator != 1:
        raise Unsupported("e to a fractional power")
    value = exact(base)
    if q.denominator == 1:
        if not value and q < 0:
            raise Unsupported("division by zero")
        return algebra.power(value, int(q))
    return algebra.power(algebra.nth_root(value, q.denominator), q.numerator)


def base_value(digits: str, base: int) -> int:
    if not 2 <= base <= 36:
        raise Unsupported("base out of range")
    try:
        return int(digits, base)
    except ValueError as err:
        raise Unsupported("digit not valid in base") from err


def walk(node: tuple) -> Iterator[tuple]:
    """Every node of an expression tree (children may be nodes or tuples of nodes)."""
    stack = [node]
    while stack:
        item = stack.pop()
        yield item
        for child in item[1:]:
            if isinstance(child, tuple) and child:
                if isinstance(child[0], str):
                    stack.append(child)
                else:
                    stack.extend(c for c in child if isinstance(c, tuple) and c and isinstance(c[0], str))


def symbols(node: tuple) -> set[str]:
    """Free variables of an expression tree."""
    return {item[1] for item in walk(node) if item[0] == "sym"}


def decimals(node: tuple) -> Iterator[tuple[int, float]]:
    """(significant digits, relative half-ulp) of every decimal literal in the tree."""
    return (item[2] for item in walk(node) if item[0] == "num" and item[2] is not None)


# -- numeric ------------------------------------------------------------------------------------
class _Numeric:
    def __init__(self, dps: int) -> None:
        self.ctx = mpmath.MPContext()
        self.ctx.dps = dps
        c = self.ctx
        self.functions = {
            "sin": c.sin, "cos": c.cos, "tan": c.tan, "cot": c.cot, "sec": c.sec, "csc": c.csc,
            "arcsin": c.asin, "arccos": c.acos, "arctan": c.atan, "sinh": c.sinh, "cosh": c.cosh,
            "tanh": c.tanh, "exp": c.exp, "log": c.log, "floor": c.floor, "ceil": c.ceil,
        }  # fmt: skip

    def _guard(self, value):  # noqa: ANN001 - an mpmath number
        c = self.ctx
        if not c.isfinite(value):
            raise Unsupported("not finite")
        if value != 0 and abs(c.mag(value)) > MAX_MAGNITUDE_BITS:
            raise TooBig("magnitude")
        return value

    def value(self, node: tuple, env: dict[str, object]):  # noqa: ANN201 - an mpmath number
        check_budget()
        c = self.ctx
        kind = node[0]
        if kind == "num":
            return c.mpf(node[1].numerator) / node[1].denominator
        if kind == "sym":
            return env[node[1]]
        if kind == "const":
            name = node[1]
            if name == "inf":
                raise Unsupported("infinity")
            return {"pi": c.pi, "e": c.e, "i": c.mpc(0, 1)}[name]
        if kind == "add":
            return self._guard(c.fsum(self.value(t, env) for t in node[1]))
        if kind == "neg":
            return -self.value(node[1], env)
        if kind == "mul":
            result = c.mpf(1)
            for factor in node[1]:
                result = self._guard(result * self.value(factor, env))
            return result
        if kind == "div":
            denominator = self.value(node[2], env)
            if denominator == 0:
                raise Unsupported("division by zero")
            return self._guard(self.value(node[1], env) / denominator)
        if kind == "pow":
            return self._power(self.value(node[1], env), self.value(node[2], env))
        if kind == "root":
            x, n = self.value(node[1], env), node[2]
            if n % 2 == 1 and c.im(x) == 0 and c.re(x) < 0:
                return -c.root(-c.re(x), n)  # the real odd root, as \sqrt[3]{-8} = -2
            return c.root(x, n) if n != 2 else c.sqrt(x)
        if kind == "fact":
            x = self.value(node[1], env)
            if c.im(x) != 0 or c.re(x) < 0 or c.re(x) > MAX_NUMERIC_FACTORIAL:
                raise TooBig("factorial")
            return self._guard(c.factorial(c.re(x)))
        if kind == "binom":
            return self._guard(c.binomial(self.value(node[1], env), self.value(node[2], env)))
        if kind == "abs":
            return abs(self.value(node[1], env))
        if kind == "func":
            arg = self.value(node[2], env)
            if node[1] == "exp" and abs(c.re(arg)) > MAX_MAGNITUDE_BITS:
                raise TooBig("exp")
            return self._guard(self.functions[node[1]](arg))
        if kind == "log":
            return c.log(self.value(node[1], env)) / c.log(self.value(node[2], env))
        if kind == "base":
            return c.mpf(base_value(node[1], node[2]))
        raise Unsupported(kind)

    def _power(self, base, exponent):  # noqa: ANN001, ANN202
        c = self.ctx
        if base == 0:
            if c.re(exponent) <= 0:
                raise Unsupported("0 to a non-positive power")
            return c.mpf(0)
        size = abs(exponent) * abs(c.log(abs(base), 2))  # log2 of the result's magnitude
        if size > MAX_MAGNITUDE_BITS:
            raise TooBig("power")
        if c.im(exponent) == 0 and c.im(base) == 0 and c.re(base) < 0:
            e = c.re(exponent)
            if e == int(e):
                return self._guard(c.power(c.re(base), int(e)))
        return self._guard(c.power(base, exponent))

    def point(self, names: list[str], index: int) -> dict[str, object]:
        c = self.ctx
        return {
            name: c.sqrt(c.mpf(2 * j + 3 + 11 * index)) / 2 + c.mpf(j + 1) / 7 for j, name in enumerate(names)
        }


_LOW, _HIGH = _Numeric(30), _Numeric(60)


def numeric(node: tuple, names: list[str], point: int) -> tuple[complex, bool]:
    """(value, reliable) of an expression at a test point; reliable means both precisions agree."""
    low = _LOW.value(node, _LOW.point(names, point))
    high = _HIGH.value(node, _HIGH.point(names, point))
    scale = max(abs(high), abs(low))
    reliable = scale == 0 or abs(high - low) <= scale * mpmath.mpf(10) ** -20
    return high, reliable


def relative_difference(a, b) -> float:  # noqa: ANN001
    scale = max(abs(a), abs(b))
    if scale == 0:
        return 0.0
    return float(abs(a - b) / scale)
