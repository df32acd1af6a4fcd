"""The sympy back end, used only inside worker processes (see `oreal.verifier.pool`).

Expression trees from `oreal.verifier.latex` are converted with explicit sympy constructors;
nothing is ever passed to `sympify` or `parse_expr`, so model text cannot execute code.
Anything here may be slow (simplify, huge integers): the pool kills a worker that runs past its
time limit.
"""

from __future__ import annotations

import sympy

from .rules import Symbolic

_FUNCTIONS = {
    "sin": sympy.sin, "cos": sympy.cos, "tan": sympy.tan, "cot": sympy.cot, "sec": sympy.sec,
    "csc": sympy.csc, "arcsin": sympy.asin, "arccos": sympy.acos, "arctan": sympy.atan,
    "sinh": sympy.sinh, "cosh": sympy.cosh, "tanh": sympy.tanh, "exp": sympy.exp, "log": sympy.log,
    "floor": sympy.floor, "ceil": sympy.ceiling,
}  # fmt: skip
_CONSTANTS = {"pi": sympy.pi, "e": sympy.E, "i": sympy.I, "inf": sympy.oo}


def to_sympy(node: tuple) -> sympy.Expr:
    kind = node[0]
    if kind == "num":
        return sympy.Rational(node[1].numerator, node[1].denominator)
    if kind == "sym":
        return sympy.Symbol(node[1])
    if kind == "const":
        return _CONSTANTS[node[1]]
    if kind == "add":
        return sympy.Add(*(to_sympy(t) for t in node[1]))
    if kind == "neg":
        return -to_sympy(node[1])
    if kind == "mul":
        return sympy.Mul(*(to_sympy(f) for f in node[1]))
    if kind == "div":
        return to_sympy(node[1]) / to_sympy(node[2])
    if kind == "pow":
        return sympy.Pow(to_sympy(node[1]), to_sympy(node[2]))
    if kind == "root":
        x, n = to_sympy(node[1]), node[2]
        if n % 2 == 1 and x.is_number and x.is_negative:
            return -sympy.root(-x, n)
        return sympy.root(x, n)
    if kind == "fact":
        return sympy.factorial(to_sympy(node[1]))
    if kind == "binom":
        return sympy.binomial(to_sympy(node[1]), to_sympy(node[2]))
    if kind == "abs":
        return sympy.Abs(to_sympy(node[1]))
    if kind == "func":
        return _FUNCTIONS[node[1]](to_sympy(node[2]))
    if kind == "log":
        return sympy.log(to_sympy(node[1]), to_sympy(node[2]))
    if kind == "base":
        return sympy.Integer(int(node[1], node[2]))
    raise ValueError(f"unknown node {kind}")


def is_zero(difference: sympy.Expr) -> bool:
    if difference == 0:
        return True
    simplified = sympy.simplify(difference)
    if simplified == 0:
        return True
    if not simplified.free_symbols:
        try:  # an algebraic number is zero exactly when its minimal polynomial is x
            return sympy.minimal_polynomial(simplified, sympy.Dummy("x")).is_Symbol
        except (NotImplementedError, sympy.polys.polyerrors.NotAlgebraic, ValueError):
            return False
    return False


def scalar_equal(x: tuple, y: tuple) -> bool:
    return is_zero(to_sympy(x) - to_sympy(y))


def proportional(x: tuple, y: tuple) -> bool:
    a, b = to_sympy(x), to_sympy(y)
    if a == 0 or b == 0:
        return False
    ratio = sympy.simplify(a / b)
    return ratio != 0 and ratio.is_finite is not False and not ratio.free_symbols


SYMPY = Symbolic(scalar=scalar_equal, proportional=proportional)
