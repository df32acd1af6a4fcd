"""Smoke run of the learning benchmark: a few steps of every row of every experiment on a tiny config,
end to end (SFT warm starts, the offline reward-model fit through `oreal reward-model fit`, rollouts,
verifier, OREALTrainer.train_step and the diagnostic trainer, evaluation, tables and plots)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("matplotlib")

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

import learning  # noqa: E402
import learning_diag  # noqa: E402
import learning_report  # noqa: E402, F401  (imported by learning.main)

# Off sys.path again once imported: benchmarks/ is a folder of scripts, and its names must not
# shadow modules for the rest of the session.
sys.path[:] = [p for p in sys.path if p != str(BENCH)]


@pytest.mark.timeout(300)
def test_quick_run_of_every_row_produces_finite_numbers_and_files(tmp_path: Path, capsys) -> None:
    torch.set_num_threads(1)
    (tmp_path / "learning_reading.md").write_text("## 1\n\nHand-written reading of experiment 1.\n")
    rc = learning.main(["--quick", "--seeds", "0", "--out", str(tmp_path)])
    assert rc == 0

    data = json.loads((tmp_path / "learning.json").read_text())
    runs = data["runs"]
    wanted = {(e.task, m) for e in learning.EXPERIMENTS.values() for m in (*e.methods, *e.compare)}
    assert {(r["task"], r["method"]) for r in runs} == wanted
    cfg = learning.quick_config()
    for r in runs:
        steps = [s for s, _ in r["curve"]]
        assert steps[0] == 0 and steps[-1] == cfg.steps + learning.extra_steps(r["method"], cfg)
        assert all(0.0 <= v <= 1.0 for _, v in r["curve"])
        assert all(math.isfinite(x) for x in r["train_pass_rate"])
        token_weighted = learning.METHODS[r["method"]].token_weighted
        assert bool(r["rm_probe"]) == token_weighted  # every run with a reward model probes it
    # every method of a task starts from the same cached SFT checkpoint, so the step-0 evaluation agrees
    for task in ("chain", "sort"):
        assert len({r["curve"][0][1] for r in runs if r["task"] == task}) == 1
    fixed = [r for r in runs if r["method"] == "oreal_fixed"]
    assert fixed and all(r["fixed_omega"] is not None for r in fixed)
    assert data["offline_reward_model"]["chain"]["samples"] > 0
    assert (tmp_path / "learning.png").stat().st_size > 1000
    assert (tmp_path / "learning_rm.png").stat().st_size > 1000
    md = (tmp_path / "learning.md").read_text()
    for e in learning.EXPERIMENTS.values():
        assert e.title in md
    assert "Hand-written reading of experiment 1." in md
    assert "best full OREAL a user can set" in capsys.readouterr().out
    assert list((tmp_path / "cache").glob("rm-*/reward_head.safetensors"))


def test_methods_map_to_distinct_specs() -> None:
    cfg = learning.BenchConfig()
    algs = {m: learning.method_spec(m, cfg, seed=0, reward_model="rm").algorithm for m in learning.METHODS}
    assert algs["reinforce"].name == "reinforce" and not algs["reinforce"].uses_kl
    assert algs["grpo"].advantage_estimator == "grpo"
    released = algs["oreal_no_rm"]  # oreal_wo_tokenrm: keep all, uniform groups too, no freeze
    assert not released.uses_reward_model and released.keep_per_group is None
    assert not released.drop_uniform_groups and released.policy_warmup_steps == 0
    full = algs["oreal"]
    assert full.uses_reward_model and full.keep_per_group == 1 and full.policy_warmup_steps == 10
    assert algs["oreal_topk"].token_weighting == "topk" and algs["oreal_beta0"].kl_coef == 0
    warm = algs["oreal_rm_warm50"]
    assert warm.policy_warmup_steps == 50 and warm.steps - warm.policy_warmup_steps == 90
    spec = learning.method_spec("oreal_rm_offline", cfg, seed=0, reward_model="rm")
    assert spec.model.token_reward_model == "rm"
    # shared hyperparameters (the released sampling and weight decay) are identical across methods
    assert len({a.policy_optimizer.model_dump_json() for a in algs.values()}) == 1
    assert {a.policy_optimizer.weight_decay for a in algs.values()} == {0.01} and cfg.top_p == 0.9
    # diagnostics stay in the benchmark: no spec field selects them
    assert {m.weights for m in learning.METHODS.values()} - {None} <= set(learning_diag.WEIGHT_MODES)


def test_oracle_weights_start_at_the_first_wrong_token() -> None:
    from oreal.training.batch import KeptSample

    tok = learning.lt.build_tokenizer()
    task = learning.lt.TaskConfig(kind="sort")
    gold = learning_diag.gold_ids(tok, ["312="], task)  # gold: "1,2,3. \boxed{123}" + eos
    prompt = learning.lt.encode_prompt(tok, "312=")
    wrong = tok("1,3,2. \\boxed{132}", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    right = gold[tuple(prompt)]
    rows = [KeptSample(prompt, wrong, -1.0, -1.0, 0.5), KeptSample(prompt, right, 1.0, 1.0, 0.5)]
    width = max(len(wrong), len(right))
    mask = torch.tensor([[1] * len(r.response_ids) + [0] * (width - len(r.response_ids)) for r in rows])
    w = learning_diag.oracle_negative_weights(rows, gold, mask)
    assert w[0].tolist() == [0.0, 0.0] + [1.0] * (len(wrong) - 2) + [0.0] * (width - len(wrong))
    assert w[1].sum() == 0  # a response equal to the gold one has no error
