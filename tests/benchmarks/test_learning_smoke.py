"""Smoke run of the learning benchmark: a few steps of every method on a tiny config, end to end
(SFT warm start, rollouts, verifier, OREALTrainer.train_step, evaluation, table and plot)."""

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


@pytest.mark.timeout(120)
def test_quick_run_of_every_method_produces_finite_numbers_and_files(tmp_path: Path, capsys) -> None:
    torch.set_num_threads(1)
    rc = learning.main(["--quick", "--seeds", "0", "--out", str(tmp_path)])
    assert rc == 0

    data = json.loads((tmp_path / "learning.json").read_text())
    runs = data["runs"]
    assert sorted(r["method"] for r in runs) == sorted(learning.METHODS)
    cfg = learning.quick_config()
    for r in runs:
        steps = [s for s, _ in r["curve"]]
        assert steps[0] == 0 and steps[-1] == cfg.steps
        assert all(0.0 <= v <= 1.0 for _, v in r["curve"])
        assert len(r["train_pass_rate"]) == cfg.steps
        assert all(math.isfinite(x) for x in r["train_pass_rate"])
    # every method starts from the same cached SFT checkpoint, so the step-0 evaluation agrees
    assert len({r["curve"][0][1] for r in runs}) == 1
    assert (tmp_path / "learning.png").stat().st_size > 1000
    md = (tmp_path / "learning.md").read_text()
    for label in learning.LABELS.values():
        assert label in md
    out = capsys.readouterr().out
    assert "oreal - grpo:" in out and "oreal - reinforce:" in out
    assert list((tmp_path / "cache").glob("sft-*/model.safetensors"))


def test_methods_map_to_distinct_specs() -> None:
    cfg = learning.BenchConfig()
    algs = {m: learning.method_spec(m, cfg, seed=0).algorithm for m in learning.METHODS}
    assert algs["reinforce"].name == "reinforce" and not algs["reinforce"].uses_kl
    assert algs["grpo"].advantage_estimator == "grpo"
    assert algs["oreal_no_tw"].name == "oreal" and not algs["oreal_no_tw"].uses_reward_model
    assert algs["oreal"].uses_reward_model
    # shared hyperparameters are identical across methods
    assert len({a.policy_optimizer.model_dump_json() for a in algs.values()}) == 1
    assert len({a.steps for a in algs.values()}) == 1
