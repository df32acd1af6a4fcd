"""Prompt loading, field mapping, templates, per-step selection and sharding."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from oreal.data import DataError, load_prompts, shard, step_prompts
from oreal.data.arithmetic import make_problems
from oreal.data.prompts import gold_from_answer, guess_fields
from oreal.trajectory import Prompt

SHARED = __import__("pathlib").Path(__file__).resolve().parents[3] / "shared" / "data"


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_jsonl_and_parquet_give_the_same_prompts(tmp_path):
    rows = [{"q": f"problem {i}", "a": str(i), "k": f"id{i}", "p": 0.25} for i in range(5)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "p.parquet")
    from_jsonl = load_prompts(_jsonl(tmp_path / "p.jsonl", rows), "q", "a", "k", "p")
    from_parquet = load_prompts(str(tmp_path / "p.parquet"), "q", "a", "k", "p")
    assert from_jsonl == from_parquet
    assert from_jsonl[3] == Prompt(prompt_id="id3", problem="problem 3", gold="3", pass_rate=0.25)


def test_ids_default_to_the_row_index_and_file_uri_works(tmp_path):
    path = _jsonl(tmp_path / "p.jsonl", [{"problem": "x", "answer": "1"}, {"problem": "y", "answer": "2"}])
    assert [p.prompt_id for p in load_prompts("file://" + path)] == ["0", "1"]


def test_gsm8k_gold_is_the_number_after_the_marks():
    assert gold_from_answer("so 2 + 3 = 5\n#### 1,005") == "1005"
    assert gold_from_answer("\\frac{1}{2}") == "\\frac{1}{2}"


@pytest.mark.skipif(not (SHARED / "gsm8k.jsonl").exists(), reason="shared data not present")
def test_real_gsm8k_and_math500_files_load():
    gsm = load_prompts(str(SHARED / "gsm8k.jsonl"), *guess_fields(str(SHARED / "gsm8k.jsonl")))
    assert len(gsm) == 1319 and gsm[0].gold == "18"
    math = load_prompts(str(SHARED / "math500.jsonl"), *guess_fields(str(SHARED / "math500.jsonl")))
    assert len(math) == 500 and math[0].gold


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"problem": "x"}\n', "line 1: missing field 'answer'"),
        (b'{"problem": "  ", "answer": "1"}\n', "line 1: field 'problem' is empty"),
        (b'{"problem": "ok", "answer": "1"}\n{"problem": "caf\xe9", "answer": "2"}\n', "line 2: not UTF-8"),
        (b'{"problem": "ok", "answer": "1"}\n[1, 2]\n', "line 2: expected a JSON object"),
        (b'{"problem": \n', "line 1: invalid JSON"),
        (b"\n\n", "holds no prompts"),
    ],
)
def test_bad_prompt_files_name_the_line_and_field(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        load_prompts(str(path))


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_prompts(str(tmp_path / "absent.jsonl"))


def _pool(n):
    return [Prompt(prompt_id=str(i), problem=f"p{i}", gold=str(i)) for i in range(n)]


def test_step_prompts_are_a_function_of_seed_and_step():
    pool = _pool(50)
    assert step_prompts(pool, 7, 3, 8) == step_prompts(list(pool), 7, 3, 8)
    assert step_prompts(pool, 7, 3, 8) != step_prompts(pool, 7, 4, 8)
    assert step_prompts(pool, 7, 3, 8) != step_prompts(pool, 8, 3, 8)


def test_one_epoch_visits_every_prompt_once():
    pool = _pool(12)
    seen = [p.prompt_id for step in range(3) for p in step_prompts(pool, 0, step, 4)]
    assert sorted(seen, key=int) == [str(i) for i in range(12)]


def test_repeats_inside_a_step_get_unique_ids():
    pool = _pool(3)
    ids = [p.prompt_id for p in step_prompts(pool, 0, 0, 7)]
    assert len(set(ids)) == 7


@pytest.mark.parametrize(("n", "replicas"), [(8, 1), (8, 3), (5, 5), (2, 4)])
def test_shards_partition_the_step(n, replicas):
    items = _pool(n)
    shards = [shard(items, i, replicas) for i in range(replicas)]
    assert [p for s in shards for p in s] == items
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_arithmetic_problems_are_deterministic_and_correct():
    a, b = make_problems(30, seed=3), make_problems(30, seed=3)
    assert a == b and a != make_problems(30, seed=4)
    for row in a:
        assert row["answer"].lstrip("-").isdigit()


def test_templates_with_and_without_the_chat_template():
    from support.tiny_model import build_tokenizer

    from oreal.data import encode_prompt, render_prompt

    tok = build_tokenizer()
    plain = render_prompt(tok, "2+2?", "Q: {problem}\nbox it in \\boxed{{}}", use_chat_template=False)
    assert plain == "Q: 2+2?\nbox it in \\boxed{}"
    chat = render_prompt(tok, "{x} + 1?", "{problem}", system_prompt="Be brief.")
    assert (
        chat
        == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n{x} + 1?<|im_end|>\n<|im_start|>assistant\n"
    )
    ids = encode_prompt(tok, chat, chat=True)
    assert ids[0] == tok.convert_tokens_to_ids("<|im_start|>") and tok.decode(ids) == chat
    assert encode_prompt(tok, chat, chat=True, max_tokens=5) == ids[-5:]
