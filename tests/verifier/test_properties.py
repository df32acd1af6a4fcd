"""Property tests: exact arithmetic agrees with Fractions, and hostile strings never crash the rules."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from oreal.verifier.rules import check

fractions = st.fractions(min_value=-(10**6), max_value=10**6, max_denominator=10**4)


def latex(q: Fraction) -> str:
    if q.denominator == 1:
        return str(q.numerator)
    sign = "-" if q < 0 else ""
    return f"{sign}\\frac{{{abs(q.numerator)}}}{{{q.denominator}}}"


@settings(max_examples=200, deadline=None)
@given(fractions, fractions)
def test_rationals_are_equal_exactly_when_fractions_are(a: Fraction, b: Fraction) -> None:
    assert check(latex(a), latex(b)) is (a == b)


@settings(max_examples=200, deadline=None)
@given(fractions, st.integers(min_value=2, max_value=30))
def test_unreduced_and_slash_forms_are_equal(a: Fraction, k: int) -> None:
    unreduced = f"\\frac{{{a.numerator * k}}}{{{a.denominator * k}}}"
    assert check(latex(a), unreduced) is True
    assert check(latex(a), f"{a.numerator}/{a.denominator}") is True


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=1, max_value=10**9), st.integers(min_value=1, max_value=60))
def test_near_misses_are_never_equal(n: int, digits: int) -> None:
    """x and x * (10^d + 1) / 10^d agree to d digits but are different exact values."""
    near = f"{n} \\cdot \\frac{{10^{{{digits}}}+1}}{{10^{{{digits}}}}}"
    assert check(str(n), near) is False


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=2, max_value=10**6), st.integers(min_value=1, max_value=50))
def test_radicals(n: int, k: int) -> None:
    assert check(f"{k}\\sqrt{{{n}}}", f"\\sqrt{{{k * k * n}}}") is True
    assert check(f"{k}\\sqrt{{{n}}}", f"\\sqrt{{{k * k * n + 1}}}") is False


alphabet = list("0123456789+-*/^_{}()[],.=<>!|&$% xyeipi\\") + [
    "\\frac",
    "\\sqrt",
    "\\pm",
    "\\cup",
    "\\infty",
    "\\text{",
    "\\begin{pmatrix}",
]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(alphabet), max_size=25).map("".join),
    st.lists(st.sampled_from(alphabet), max_size=25).map("".join),
)
def test_random_strings_never_raise(gold: str, answer: str) -> None:
    assert check(gold, answer, budget=1.0) in (True, False, None)
