"""The learning benchmark's task options: the sort task's problems, and SFT cache keys per task."""

from __future__ import annotations

import random
import re
import sys
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

import learning_task as lt  # noqa: E402

# Off sys.path again: benchmarks/ is a folder of scripts, and its names must not shadow modules for
# the rest of the session.
sys.path[:] = [p for p in sys.path if p != str(BENCH)]

SORT = lt.TaskConfig(kind="sort", min_digits=6, max_digits=8)


def test_sort_solution_lists_the_prompt_digits_in_order_and_boxes_them() -> None:
    rng = random.Random(0)
    lengths = set()
    for _ in range(200):
        problem, solution, gold = lt.make_problem(rng, SORT)
        digits = problem.removesuffix("=")
        assert problem.endswith("=") and digits.isdigit() and "0" not in digits
        lengths.add(len(digits))
        listed = re.fullmatch(r"([1-9](?:,[1-9])*)\. \\boxed\{([1-9]+)\}", solution)
        assert listed is not None, solution
        written = listed.group(1).split(",")
        assert written == sorted(digits)
        assert listed.group(2) == gold == "".join(written)
    assert lengths == {6, 7, 8}


def test_sort_solutions_tokenize_without_unknown_tokens() -> None:
    tokenizer = lt.build_tokenizer()
    _, solution, _ = lt.make_problem(random.Random(1), SORT)
    ids = tokenizer(solution, add_special_tokens=False)["input_ids"]
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.convert_tokens_to_ids(lt.BOXED) in ids
    assert tokenizer.decode(ids) == solution


def test_problem_sets_differ_by_task_and_unknown_kind_is_refused() -> None:
    chain = {p.problem for p in lt.problem_set(7, 20, lt.TaskConfig())}
    sort = {p.problem for p in lt.problem_set(7, 20, SORT)}
    assert all("+" in p or "-" in p for p in chain)
    assert not any("+" in p or "-" in p for p in sort)
    with pytest.raises(ValueError, match="unknown task kind"):
        lt.make_problem(random.Random(0), replace(SORT, kind="copy"))


def test_cache_key_fields_per_task() -> None:
    chain = lt.cache_fields(lt.TaskConfig())
    # the chain task's key has no field of the sort task, so it is the key from before the option
    assert not {"kind", *lt.SORT_FIELDS} & chain.keys()
    assert {"operands", "max_operand", "hidden_size"} <= chain.keys()
    sort = lt.cache_fields(SORT)
    assert sort["kind"] == "sort" and not set(lt.CHAIN_FIELDS) & sort.keys()
    assert lt.cache_fields(replace(SORT, max_digits=9)) != sort


@pytest.mark.parametrize("task", [lt.TaskConfig(), SORT], ids=["chain", "sort"])
def test_worked_solution_of_a_prompt_is_the_one_sft_teaches(task) -> None:
    rng = random.Random(3)
    for _ in range(200):
        problem, solution, _ = lt.make_problem(rng, task)
        assert lt.worked_solution(problem, task) == solution


def test_first_error_against_the_gold_tokens() -> None:
    gold = [5, 6, 7, 2]  # ends with eos
    assert lt.first_error([5, 9, 7, 2], gold) == 1
    assert lt.first_error([5, 6, 7, 2, 4], gold) == 4  # kept going after the gold end
    assert lt.first_error([5, 6], gold) == 1  # stopped early: its last token is the error
    assert lt.first_error([5, 6, 7, 2], gold) == 4  # no error: past the end
