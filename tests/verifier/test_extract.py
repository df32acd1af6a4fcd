from __future__ import annotations

import pytest

from oreal.verifier.extract import extract_answer, final_section, gold_answer, last_boxed


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("so $\\boxed{5}$.", "5"),
        ("first \\boxed{3} then \\boxed{4}", "4"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
        ("\\boxed{\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}}", "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}"),
        ("\\fbox{7}", "7"),
        ("thus \\boxed 5 is it", "5"),
        ("The final answer is $\\frac{3}{4}$. I hope it is correct.", "\\frac{3}{4}"),
        ("The answer is 3.5.", "3.5"),
        ("blah\nAnswer: 12\n", "12"),
        ("**Answer:** 12", "12"),
        ("the answer is: (2, 3).", "(2, 3)"),
    ],
)
def test_extracts_the_final_answer(response: str, expected: str) -> None:
    assert extract_answer(response) == expected


def test_boxed_beats_phrases_and_last_box_wins() -> None:
    assert extract_answer("The answer is 3. Actually \\boxed{4}.") == "4"
    assert last_boxed("\\boxed{1} \\boxed{2} \\fbox{3}") == "3"


@pytest.mark.parametrize("response", ["no answer here", "\\boxed{", "", "The answer is .", "\\boxed{}"])
def test_no_answer(response: str) -> None:
    assert extract_answer(response) is None


def test_only_text_after_think_counts() -> None:
    assert extract_answer("<think>maybe \\boxed{3}</think> so \\boxed{4}") == "4"
    assert extract_answer("<think>maybe \\boxed{3}</think> I am not sure.") is None
    assert final_section("<think>still thinking \\boxed{3}") is None
    assert extract_answer("<think>still thinking \\boxed{3}") is None


def test_unbalanced_box_falls_back_to_an_earlier_complete_one() -> None:
    assert extract_answer("\\boxed{2} and then \\boxed{3") == "2"


def test_gold_is_unboxed_when_boxed() -> None:
    assert gold_answer("\\boxed{12}") == "12"
    assert gold_answer(" \\frac{1}{2} ") == "\\frac{1}{2}"


def test_megabyte_response_is_fast() -> None:
    import time

    response = "x" * 1_000_000 + " the answer is 5"
    start = time.perf_counter()
    assert extract_answer(response) == "5"
    assert extract_answer("{" * 1_000_000) is None
    assert extract_answer("\\boxed{" + "{" * 500_000) is None
    assert extract_answer("\\boxed{" * 140_000) is None
    assert time.perf_counter() - start < 2.0
