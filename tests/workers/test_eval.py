"""`oreal eval` on the tiny model, and the subcommand registration the CLI relies on."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from oreal import evaluation, runner, workers

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="oreal")
    sub = parser.add_subparsers(dest="command")
    for module in (workers, runner, evaluation):
        module.register(sub)
    return parser


def test_subcommands_parse_the_pod_flags():
    args = _parser().parse_args(["worker", "rollout", "--run", "s3://b/r", "--index", "1", "--replicas", "3"])
    assert (args.role, args.run, args.index, args.replicas) == ("rollout", "s3://b/r", 1, 3)
    args = _parser().parse_args(["worker", "trainer", "--run", "file:///x"])
    assert args.role == "trainer" and not hasattr(args, "index")
    args = _parser().parse_args(["run", "examples/quickstart.yaml"])
    assert args.spec == "examples/quickstart.yaml" and callable(args.func)


def test_eval_writes_per_problem_results_and_a_summary(tmp_path, tiny_model, prompts_file):
    out = tmp_path / "eval"
    args = _parser().parse_args(
        ["eval", "--model", str(tiny_model), "--data", str(prompts_file), "--limit", "6", "--samples", "3",
         "--template", "{problem}", "--max-new-tokens", "16", "--output", str(out)]
    )  # fmt: skip
    assert args.func(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert summary["problems"] == len(rows) == 6 and summary["samples"] == 3
    assert summary["pass@1"] == pytest.approx(sum(r["correct"] for r in rows) / 18)
    assert summary["pass@3"] >= summary["pass@1"]
    assert all(len(r["responses"]) == 3 for r in rows)


@pytest.mark.skipif(not (SHARED / "gsm8k.jsonl").exists(), reason="shared data not present")
def test_eval_reads_gsm8k_format(tmp_path, tiny_model):
    out = tmp_path / "gsm"
    args = _parser().parse_args(
        ["eval", "--model", str(tiny_model), "--data", str(SHARED / "gsm8k.jsonl"), "--limit", "2",
         "--max-new-tokens", "8", "--output", str(out)]
    )  # fmt: skip
    assert args.func(args) == 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["gold"] for r in rows] == ["18", "3"]


def test_eval_of_a_missing_model_is_one_line(tmp_path, capsys):
    args = _parser().parse_args(["eval", "--model", str(tmp_path / "nope"), "--data", "x.jsonl"])
    assert args.func(args) == 1
    assert "not a model folder" in capsys.readouterr().err


def test_evaluate_is_a_library_call_and_a_spec_sets_the_run_format(tmp_path, tiny_model, prompts_file):
    from oreal.spec import run_from_dict

    from .conftest import tiny_spec

    settings = evaluation.EvalSettings(template="{problem}", max_new_tokens=8, dtype="float32", samples=2)
    summary = evaluation.evaluate(tiny_model, str(prompts_file), settings, tmp_path / "out", limit=3)
    assert summary["problems"] == 3 and summary["samples"] == 2 and summary["temperature"] == 0.6
    assert (tmp_path / "out" / "summary.json").is_file()

    spec = run_from_dict(tiny_spec(tiny_model, prompts_file)).spec
    from_spec = evaluation.EvalSettings.from_spec(spec)
    assert (from_spec.template, from_spec.dtype, from_spec.chat) == ("{problem}", "float32", True)
    assert from_spec.max_new_tokens == spec.sampling.max_new_tokens and from_spec.sampling_temperature == 0.0
