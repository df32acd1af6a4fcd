"""Unit tests of the building blocks: parser, exact arithmetic, numeric evaluation, limits."""

from __future__ import annotations

import time
from fractions import Fraction

import pytest

from oreal.verifier import algebra, budget
from oreal.verifier.latex import ParseError, parse_expression, tokenize
from oreal.verifier.normalize import normalize
from oreal.verifier.rules import check, prepare
from oreal.verifier.structure import parse_answer
from oreal.verifier.values import decimals, exact, numeric, symbols


def expr(text: str) -> tuple:
    return parse_expression(tokenize(normalize(text).text))


def test_square_free() -> None:
    assert algebra.square_free(117) == (3, 13)
    assert algebra.square_free(72) == (6, 2)
    assert algebra.square_free(1) == (1, 1)
    assert algebra.square_free(999_983 * 999_983) == (999_983, 1)  # a square of a large prime
    assert algebra.square_free(999_983 * 1_000_003) == (1, 999_983 * 1_000_003)
    with pytest.raises(algebra.TooBig):
        algebra.square_free(10**13)


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("\\sqrt{-4}", "2i"),
        ("i^2", "-1"),
        ("\\sqrt{-3}\\sqrt{-3}", "-3"),
        ("\\sqrt{2}\\sqrt{6}", "2\\sqrt{3}"),
        ("\\frac{1}{\\sqrt{-2}}", "-\\frac{\\sqrt{2}}{2}i"),
        ("(1+\\sqrt{2})^2", "3+2\\sqrt{2}"),
        ("8^{2/3}", "4"),
        ("4^{-1/2}", "\\frac12"),
        ("\\pi^2 / \\pi", "\\pi"),
        ("x^{-1} x", "1"),
    ],
)
def test_exact_domain_identities(left: str, right: str) -> None:
    assert exact(expr(left)) == exact(expr(right))


@pytest.mark.parametrize("text", ["\\sin x", "\\frac{1}{1+\\sqrt{2}}", "\\sqrt{x}", "2^x", "\\infty"])
def test_exact_domain_refuses_what_it_cannot_decide(text: str) -> None:
    with pytest.raises(algebra.Unsupported):
        exact(expr(text))


@pytest.mark.parametrize("text", ["2^{100000}", "(1+x)^{100}", "3000!", "\\binom{10^7}{5000}"])
def test_exact_domain_size_limits(text: str) -> None:
    with pytest.raises(algebra.TooBig):
        exact(expr(text))


def test_walk_finds_symbols_and_decimals_in_every_child() -> None:
    node = expr("2.5x \\cdot y + \\sin(z) \\cdot 0.125 w")
    assert symbols(node) == {"x", "y", "z", "w"}
    assert sorted(s for s, _ in decimals(node)) == [2, 3]


def test_numeric_reliability_detects_cancellation() -> None:
    value, reliable = numeric(expr("(10^{40}+1) - 10^{40}"), [], 0)
    assert not reliable
    value, reliable = numeric(expr("\\frac{1}{2004!}"), [], 0)
    assert reliable and value > 0


@pytest.mark.parametrize(
    "text",
    [
        "(" * 150 + "1" + ")" * 0,
        "-" * 3000 + "1",
        "\\sin" * 3000 + " x",
        "1" * 5000,
        "x^" + "-" * 3000 + "1",
        "\\frac{",
    ],
)
def test_parser_limits_raise_parse_error(text: str) -> None:
    with pytest.raises((ParseError, RecursionError)):
        parse_answer(normalize(text))


def test_redundant_parentheses_collapse_without_recursion() -> None:
    assert parse_answer(normalize("\\left(" * 1000 + "7" + "\\right)" * 1000)) == (
        "expr",
        ("num", Fraction(7), None),
    )


def test_plus_minus_and_list_sizes_are_bounded() -> None:
    start = time.perf_counter()
    assert check("5", "1 \\pm " * 40 + "1") is False
    assert check("5", ", ".join(["1"] * 5000)) is False
    assert time.perf_counter() - start < 1.0


def test_structures() -> None:
    assert parse_answer(normalize("(3,4]"))[0] == "interval"
    assert parse_answer(normalize("(3,4)"))[0] == "pair"
    assert parse_answer(normalize("\\{1,2\\}"))[0] == "set"
    assert parse_answer(normalize("1 \\pm \\sqrt{2}"))[0] == "set"
    assert parse_answer(normalize("x \\ge 3"))[0] == "rel"
    assert parse_answer(normalize("\\text{(B)}")) == ("choice", "B")
    assert parse_answer(normalize("\\text{Navin}")) == ("text", "navin")


def test_base_numerals_are_read_in_the_reference_base() -> None:
    assert check("52_8", "52") is True
    assert check("52_8", "42") is False  # 42 is the value, but the question asked for base 8
    assert check("42", "52_8") is True  # an answer in base 8 with the right value
    assert check("52", "52_8") is False


def test_budget_moves_long_checks_to_the_pool() -> None:
    huge = "(" + "+".join(f"{2**3000}x_{{{i}}}" for i in range(20)) + ")^{60}"
    start = time.perf_counter()
    assert check("1", huge, budget=0.3) is None
    assert time.perf_counter() - start < 1.0
    with pytest.raises(budget.OutOfTime), budget.deadline(0.0):
        time.sleep(0.001)
        budget.check()


def test_prepare_is_cached_and_never_raises() -> None:
    for text in [
        "",
        "\\frac{",
        "}{",
        "\\begin{pmatrix}1&2\\\\3\\end{pmatrix}",
        "\\unknowncommand{1}",
        "5 =",
        "1.2.3",
    ]:
        key, node, unit = prepare(text)
        assert isinstance(key, str) and unit in ("", "percent", "degrees")


def test_the_calling_process_never_imports_sympy() -> None:
    """The fast rules are sympy-free; sympy only ever runs inside killable workers."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from oreal.verifier.rules import check\n"
        "assert check('3\\\\sqrt{13}', '\\\\sqrt{117}') is True\n"
        "assert check('\\\\cot x', '\\\\frac{1}{\\\\tan x}') is None\n"
        "print('sympy' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"
