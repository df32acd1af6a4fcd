"""Every answer category, positive and negative, through the full verifier (fast rules + sympy pool)."""

from __future__ import annotations

import pytest
from verifier_helpers import boxed

# (category, gold, answer written by the model, equivalent?)
CASES = [
    ("integer", "42", "42", True),
    ("integer", "42", "042", True),
    ("integer", "42", "43", False),
    ("integer", "-50", "-50", True),
    ("integer", "-50", "50", False),
    ("decimal", "0.15", "\\frac{3}{20}", True),
    ("decimal", ".0000672", "6.72 \\times 10^{-5}", True),
    ("decimal", "3.21", "3.210", True),
    ("decimal", "3.21", "3.2", False),
    ("decimal", "5", "5.0", True),
    ("decimal", "5", "4.9999", False),
    ("fraction", "\\frac{14}{3}", "\\dfrac{14}{3}", True),
    ("fraction", "\\frac{14}{3}", "14/3", True),
    ("fraction", "\\frac43", "\\tfrac{4}{3}", True),
    ("fraction", "\\frac9{19}", "\\frac{9}{19}", True),
    ("fraction", "\\frac{3}{56}", "\\frac{56}{3}", False),
    ("fraction", "\\frac{243}{625}", "\\frac{486}{1250}", True),
    ("fraction", "-\\frac{35}{9}", "\\frac{-35}{9}", True),
    ("fraction", "-\\frac{35}{9}", "\\frac{35}{9}", False),
    ("mixed number", "1\\frac{4}{5}", "\\frac{9}{5}", True),
    ("mixed number", "137 \\frac{1}{2}", "137.5", True),
    ("mixed number", "1\\frac{4}{5}", "\\frac{4}{5}", False),
    ("radical", "3\\sqrt{13}", "\\sqrt{117}", True),
    ("radical", "\\frac{\\sqrt{3}}{3}", "\\frac{1}{\\sqrt{3}}", True),
    ("radical", "11\\sqrt2", "11 \\sqrt{2}", True),
    ("radical", "\\sqrt{51}", "\\sqrt{52}", False),
    ("radical", "2\\sqrt{5}", "\\sqrt{10}", False),
    ("radical", "\\sqrt[3]{2}", "2^{1/3}", True),
    ("radical", "\\sqrt{2+\\sqrt{3}}", "\\frac{\\sqrt{6}+\\sqrt{2}}{2}", True),
    ("radical", "\\sqrt{2+\\sqrt{3}}", "\\frac{\\sqrt{6}-\\sqrt{2}}{2}", False),
    ("pi", "288 \\pi", "288\\pi", True),
    ("pi", "\\frac{20000}{\\pi}", "20000\\pi^{-1}", True),
    ("pi", "18+2\\pi", "2\\pi + 18", True),
    ("pi", "18+2\\pi", "18+\\pi", False),
    ("pi", "7\\pi", "21.99", True),
    ("pi", "7\\pi", "22", False),
    ("e", "e^2", "e \\cdot e", True),
    ("e", "e^2", "2e", False),
    ("e", "\\ln 2", "\\log 2", True),
    ("complex", "6 - 5i", "-5i + 6", True),
    ("complex", "6 - 5i", "6 + 5i", False),
    ("complex", "1+2i", "\\frac{5}{1-2i}", True),
    ("complex", "-2 + 7i", "-2+7i", True),
    ("scientific", "26000", "2.6 \\times 10^4", True),
    ("scientific", "26000", "2.6e4", True),
    ("scientific", "26000", "2.6 \\times 10^5", False),
    ("thousands", "10,\\!080", "10080", True),
    ("thousands", "11,\\! 111,\\! 111,\\! 100", "11111111100", True),
    ("thousands", "58,500", "58500", True),
    ("thousands", "58,500", "58,600", False),
    ("percent", "25\\%", "25", True),
    ("percent", "25\\%", "0.25", True),
    ("percent", "25\\%", "25\\%", True),
    ("percent", "25\\%", "2.5", False),
    ("degrees", "90^\\circ", "90", True),
    ("degrees", "30^\\circ", "30^{\\circ}", True),
    ("degrees", "120^\\circ", "60^\\circ", False),
    ("units", "864 \\mbox{ inches}^2", "864", True),
    ("units", "5.4 \\text{ cents}", "5.4", True),
    ("units", "\\frac{270}7\\text{ degrees}", "\\frac{270}{7}", True),
    ("units", "15\\mbox{ cm}^2", "16 \\text{ cm}^2", False),
    ("dollars", "\\$32,\\!348", "32348", True),
    ("dollars", "\\$18.90", "\\$18.9", True),
    ("dollars", "\\$18.90", "18.09", False),
    ("equation", "x=5", "5", True),
    ("equation", "x=5", "x = 5", True),
    ("equation", "x=5", "y=5", False),
    ("equation", "x=5", "x=-5", False),
    ("equation", "y = 2x + 3", "y=3+2x", True),
    ("equation", "y = 2x + 3", "y=2x-3", False),
    ("equation", "5x - 7y + 11z + 4 = 0", "-10x + 14y - 22z - 8 = 0", True),
    ("equation", "5x - 7y + 11z + 4 = 0", "5x - 7y + 11z - 4 = 0", False),
    ("inequality", "(-\\infty, 0]", "x \\le 0", True),
    ("inequality", "(-\\infty, 0]", "x < 0", False),
    ("inequality", "[-2,7]", "-2 \\le x \\le 7", True),
    ("inequality", "(2,\\infty)", "x > 2", True),
    ("interval", "(3,4]", "(3, 4]", True),
    ("interval", "(3,4]", "(3,4)", False),
    ("interval", "(3,4]", "[3,4]", False),
    ("interval", "x \\in [-2,7]", "[-2, 7]", True),
    ("interval", "\\left(\\frac{3}{5},\\frac{8}{3}\\right]", "(0.6, \\frac{8}{3}]", True),
    ("union", "(-\\infty, 2) \\cup (3, \\infty)", "(3,\\infty)\\cup(-\\infty,2)", True),
    ("union", "(-\\infty, 2) \\cup (3, \\infty)", "(-\\infty, 2] \\cup (3, \\infty)", False),
    ("union", "(0,9) \\cup (9,36)", "(0,36)", False),
    ("set", "\\{1\\pm\\sqrt{5},-2\\}", "-2, 1+\\sqrt5, 1-\\sqrt5", True),
    ("set", "\\{1\\pm\\sqrt{5},-2\\}", "-2, 1+\\sqrt5", False),
    ("list", "3, 5, 7", "7, 5, 3", True),
    ("list", "3, 5, 7", "3, 5, 7, 9", False),
    ("list", "1,-2", "x=1 \\text{ or } x=-2", True),
    ("list", "1 \\pm \\sqrt{19}", "1+\\sqrt{19}, 1-\\sqrt{19}", True),
    ("list", "1 \\pm \\sqrt{19}", "1+\\sqrt{19}", False),
    ("tuple", "(6,31,-1)", "(6, 31, -1)", True),
    ("tuple", "(6,31,-1)", "(31, 6, -1)", False),
    ("point", "\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\pi/2)", True),
    ("point", "(15,-29)", "(-29, 15)", False),
    (
        "matrix",
        "\\begin{pmatrix} -1 & 0 \\\\ 0 & -1 \\end{pmatrix}",
        "\\begin{bmatrix} -1 & 0 \\\\ 0 & -1 \\end{bmatrix}",
        True,
    ),
    (
        "matrix",
        "\\begin{pmatrix} -1 & 0 \\\\ 0 & -1 \\end{pmatrix}",
        "\\begin{pmatrix} 1 & 0 \\\\ 0 & 1 \\end{pmatrix}",
        False,
    ),
    (
        "vector",
        "\\begin{pmatrix} 1/5 \\\\ -18/5 \\end{pmatrix}",
        "\\begin{pmatrix} 0.2 \\\\ -3.6 \\end{pmatrix}",
        True,
    ),
    ("vector", "\\begin{pmatrix} -7 \\\\ 16 \\\\ 5 \\end{pmatrix}", "(-7, 16, 5)", True),
    (
        "vector",
        "\\begin{pmatrix} -7 \\\\ 16 \\\\ 5 \\end{pmatrix}",
        "\\begin{pmatrix} -7 \\\\ 5 \\\\ 16 \\end{pmatrix}",
        False,
    ),
    ("choice", "\\text{(C)}", "C", True),
    ("choice", "\\text{(C)}", "(C)", True),
    ("choice", "\\text{(C)}", "\\text{(D)}", False),
    ("text", "\\text{Evelyn}", "Evelyn", True),
    ("text", "\\text{east}", "\\text{East}", True),
    ("text", "\\text{Evelyn}", "\\text{Navin}", False),
    ("text", "\\text{even}", "\\text{odd}", False),
    ("base", "52_8", "52_8", True),
    ("base", "4210_{5}", "4210_5", True),
    ("base", "52_8", "52", True),
    ("base", "52_8", "42", False),
    ("base", "52_8", "53_8", False),
    ("infinity", "\\infty", "\\infty", True),
    ("infinity", "-\\infty", "\\infty", False),
    ("close but not equal", "\\frac{1}{2^{99}}", "\\frac{1}{2^{98}}", False),
    ("close but not equal", "\\frac{1}{2004!}", "\\frac{1}{2006!}", False),
    ("close but not equal", "\\frac{1}{2^{99}}", "2^{-99}", True),
    ("close but not equal", "1 + 10^{-30}", "1", False),
    ("close but not equal", "\\frac{1}{3}", "0.33", False),
    ("close but not equal", "\\frac{1}{3}", "0.333", True),
    ("close but not equal", "\\frac{1}{3}", "0.334", False),
    ("expression", "p - q", "-q + p", True),
    ("expression", "p - q", "q - p", False),
    ("expression", "x^5 - x^4 + x^3 - x^2 + x - 1", "(x-1)(x^4+x^2+1)", True),
    ("expression", "x^5 - x^4 + x^3 - x^2 + x - 1", "(x-1)(x^4+x^2-1)", False),
    ("expression", "\\cot x", "\\frac{\\cos x}{\\sin x}", True),
    ("expression", "\\cot x", "\\tan x", False),
    ("expression", "2k+2", "2(k+1)", True),
    ("expression", "6r^2-4r-24", "2(3r^2-2r-12)", True),
    ("expression", "\\frac{11+9a}{20}", "\\frac{11}{20} + \\frac{9a}{20}", True),
    ("expression", "\\frac{11+9a}{20}", "\\frac{11+9a}{2}", False),
    ("repeating decimal", "\\frac{4}{11}", "0.\\overline{36}", True),
    ("repeating decimal", "\\frac{1}{6}", "0.1\\overline{6}", True),
    ("repeating decimal", "\\frac{4}{11}", "0.\\overline{37}", False),
    ("equation chain", "\\frac52", "\\frac{5}{2} = 2.5", True),
    ("equation chain", "2", "1 = 2", False),
    ("system", "(1,2)", "x=1, y=2", True),
    ("system", "(1,2)", "x=2, y=1", False),
    ("approx", "\\pi", "\\approx 3.1416", True),
    ("approx", "\\pi", "\\approx 3.2", False),
    ("empty set", "\\emptyset", "\\varnothing", True),
    ("empty set", "\\emptyset", "\\{0\\}", False),
    ("choice", "\\text{(C)}", "(C) 42", True),
    ("huge", "2^{100000}", "4^{50000}", True),
    ("huge", "2^{100000}", "4^{50000} + 1", False),
    ("huge", "2^{100000}", "2^{99999}", False),
    ("floor", "1", "\\lfloor 1.5 \\rfloor", True),
    ("floor", "2", "\\lfloor 1.5 \\rfloor", False),
    ("binomial", "\\binom{10}{3}", "120", True),
    ("binomial", "\\dbinom{10}{3}", "121", False),
]


@pytest.mark.parametrize(
    ("category", "gold", "answer", "expected"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_equivalence(verifier, category: str, gold: str, answer: str, expected: bool) -> None:
    verdict = verifier.verify(gold, boxed(answer))
    assert verdict.correct is expected, (category, gold, answer, verdict)
    assert verdict.status == ("correct" if expected else "incorrect")
    assert verdict.extracted == answer


def test_every_category_has_positive_and_negative_cases() -> None:
    by_category: dict[str, set[bool]] = {}
    for category, _, _, expected in CASES:
        by_category.setdefault(category.split()[0], set()).add(expected)
    assert {c for c, seen in by_category.items() if seen != {True, False}} == set()


def test_verify_batch_matches_verify(verifier) -> None:
    items = [(gold, boxed(answer), False) for _, gold, answer, _ in CASES]
    batch = verifier.verify_batch(items)
    assert [v.correct for v in batch] == [expected for *_, expected in CASES]


def test_truncated_and_missing_answers_are_wrong(verifier) -> None:
    truncated = verifier.verify("5", boxed("5"), truncated=True)
    assert (truncated.correct, truncated.status) == (False, "no_answer")
    missing = verifier.verify("5", "I think it is five")
    assert (missing.correct, missing.status, missing.extracted) == (False, "no_answer", None)
    unfinished = verifier.verify("5", "<think>so \\boxed{5}")
    assert unfinished.status == "no_answer"
    after_think = verifier.verify("5", "<think>\\boxed{4}</think>The answer is \\boxed{5}")
    assert after_think.correct


def test_verdict_converts_to_the_trajectory_record(verifier) -> None:
    from oreal.trajectory import Verdict as Record

    verdict = verifier.verify("5", boxed("5"))
    record = Record(step=0, prompt_id="p", sample_index=0, **verdict.as_dict())
    assert record.reward == 1.0 and record.extracted == "5"
