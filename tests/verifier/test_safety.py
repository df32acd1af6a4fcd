"""Model output is hostile: no code execution, and no check outlives its time limit."""

from __future__ import annotations

import ast
import time
from pathlib import Path

import pytest
from verifier_helpers import boxed

import oreal.verifier

INJECTIONS = [
    "__import__('os').system('touch {marker}')",
    "eval(\"__import__('os').system('touch {marker}')\")",
    'exec(\'open("{marker}", "w")\')',
    "().__class__.__bases__[0].__subclasses__()",
    "\\text{__import__('os').system('touch {marker}')}",
    "lambda: __import__('os').system('touch {marker}')",
    "Symbol('x').__class__.__init__.__globals__['os'].system('touch {marker}')",
    "\\operatorname{__import__}('os')",
]


@pytest.mark.parametrize("template", INJECTIONS)
def test_code_injection_is_harmless(verifier, tmp_path: Path, template: str) -> None:
    marker = tmp_path / "pwned"
    payload = template.replace("{marker}", str(marker))
    for gold, response in (
        (str(marker), boxed(payload)),
        ("5", boxed(payload)),
        (payload, boxed(payload + "+1")),
    ):
        verdict = verifier.verify(gold, response)
        assert verdict.status in ("incorrect", "error")
    assert not marker.exists()


def test_the_package_never_evaluates_strings() -> None:
    """No eval/exec/sympify/parse_expr/S(...) anywhere in oreal.verifier."""
    builtins = {"eval", "exec", "compile", "__import__"}
    sympy_parsers = {"sympify", "parse_expr", "parse_latex", "S", "simplify_logic", "lambdify"}
    package = Path(oreal.verifier.__file__).parent
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                if isinstance(node.func, ast.Name):
                    assert node.func.id not in builtins | sympy_parsers, f"{path.name}:{node.lineno}"
                if isinstance(node.func, ast.Attribute):
                    assert node.func.attr not in sympy_parsers, f"{path.name}:{node.lineno}"


POLYNOMIAL = " + ".join(f"{k}x^{{{k}}}" for k in range(1, 1501))
PATHOLOGICAL = [
    ("5", "9^{9^{9^9}}"),
    ("9^{9^{9^9}}", "9^{9^{9^9}}+1"),
    ("5", "(10^{10})!"),
    ("(10^{10})!", "(10^{10})!+1"),
    ("5", "\\left(" * 300 + "5" + "\\right)" * 300),
    ("301", "(" * 300 + "1" + "+1)" * 300),
    ("5", "\\sqrt{" * 300 + "4" + "}" * 300),
    (POLYNOMIAL, " + ".join(f"{k}x^{{{k}}}" for k in range(1500, 0, -1))),
    (POLYNOMIAL, POLYNOMIAL.replace("777x^{777}", "778x^{777}")),
    ("0", "(x+1)^{5000} - (x+1)^{5000}"),
    ("2", "10^{10^{10}} - 10^{10^{10}} + 2"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("gold", "answer"), PATHOLOGICAL, ids=[f"case{i}" for i in range(len(PATHOLOGICAL))])
def test_pathological_inputs_finish_within_the_limit(gold: str, answer: str) -> None:
    from oreal.verifier import Verifier

    with Verifier(timeout_seconds=1.0, workers=1) as verifier:
        verifier.warm_up()
        start = time.perf_counter()
        verdict = verifier.verify(gold, boxed(answer))
        elapsed = time.perf_counter() - start
    assert elapsed < 1.0 + 1.0, (elapsed, verdict)
    assert verdict.status in ("correct", "incorrect", "timeout")


def test_pathological_answers_get_the_right_verdict_when_decidable(verifier) -> None:
    assert verifier.verify("5", boxed("\\left(" * 300 + "5" + "\\right)" * 300)).correct
    assert not verifier.verify("5", boxed("9^{9^{9^9}}")).correct
    assert not verifier.verify("5", boxed("(10^{10})!")).correct
    reversed_polynomial = " + ".join(f"{k}x^{{{k}}}" for k in range(1500, 0, -1))
    assert verifier.verify(POLYNOMIAL, boxed(reversed_polynomial)).correct
    assert not verifier.verify(POLYNOMIAL, boxed(POLYNOMIAL.replace("777x^{777}", "778x^{777}"))).correct


def test_megabyte_response(verifier) -> None:
    start = time.perf_counter()
    assert verifier.verify("5", "a" * 1_000_000 + "\\boxed{5}").correct
    assert not verifier.verify("5", "\\boxed{" + "1" * 1_000_000 + "}").correct
    assert not verifier.verify("5", "\\boxed{" * 150_000).correct
    assert time.perf_counter() - start < 3.0
