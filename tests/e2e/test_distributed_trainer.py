"""The trainer worker under torchrun with two CPU ranks (gloo) trains the same step as one process.

What the tiny model samples depends on the CPU's kernels, so the test does not leave the verdicts
to chance: every group gets alternating correct and wrong verdicts, hence learnable groups on any
machine. The optimiser is LinearSGD on both sides (tests/support/numerics.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from support.numerics import assert_same_update, use_linear_sgd
from support.verdicts import inject_verdicts
from workers.conftest import tiny_spec, write_prompts, write_spec

from oreal.runner.local import prepare_run
from oreal.training.checkpoint_folder import load_safetensors_dir
from oreal.workers.__main__ import main as worker

pytestmark = [pytest.mark.slow, pytest.mark.numerics]
SHIM = Path(__file__).with_name("linear_sgd_worker.py")


def _one_step_run(root, model, prompts, name, token_weights: bool):
    overrides = {"algorithm.steps": 1, "algorithm.warmupSteps": 0, "algorithm.tokenWeights": token_weights}
    spec = tiny_spec(model, prompts, name=name, **overrides)
    lr, bucket = prepare_run(str(write_spec(root / f"{name}.yaml", spec)), bucket_uri=(root / name).as_uri())
    bucket.publish_policy(0, model)
    flags = [
        "--run",
        lr.uri,
        "--work-dir",
        str(root / name / "work"),
        "--poll-seconds",
        "0.05",
        "--exit-after-last-step",
    ]
    for index in (0, 1):
        assert worker(["rollout", *flags, "--index", str(index), "--replicas", "2"]) == 0
    inject_verdicts(bucket, 0)
    return lr, bucket, flags


def _trained(bucket_dir: Path, token_weights: bool) -> dict[str, dict[str, torch.Tensor]]:
    out = {"policy": load_file(str(bucket_dir / "policy" / "v000001" / "model.safetensors"))}
    if token_weights:
        out["reward_model"] = load_safetensors_dir(bucket_dir / "final" / "reward_model")
    return out


@pytest.mark.parametrize("token_weights", [False, True], ids=["no-token-weights", "token-weights"])
def test_two_rank_trainer_matches_one_process(tmp_path, tiny_model, monkeypatch, token_weights):
    prompts = write_prompts(tmp_path / "prompts.jsonl")
    _, single, flags = _one_step_run(tmp_path, tiny_model, prompts, "single", token_weights)
    with monkeypatch.context() as patch:
        use_linear_sgd(patch)
        assert worker(["trainer", *flags]) == 0
    stats = single.read_stats(0)
    # Preconditions: the step kept 1 correct + 1 wrong answer per prompt and trained on them.
    assert stats["kept_groups"] == 4 and stats["kept_samples"] == 8, stats
    assert ("loss/positive" in stats) and (
        stats["rm/loss"] > 0 if token_weights else stats["loss/positive"] != 0
    )

    lr, bucket, flags = _one_step_run(tmp_path, tiny_model, prompts, "ranks", token_weights)
    # torchrun's own parser would take --run for its --run-path: the bucket goes in OREAL_RUN_URI.
    env = dict(os.environ, OMP_NUM_THREADS="1", OREAL_METRICS_PORT="0", OREAL_RUN_URI=lr.uri)
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         str(SHIM), "trainer", *flags[2:]],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert bucket.read_state().done
    for key in ("kept_samples", "loss/policy", "loss/positive", "loss/negative", "rm/loss"):
        if key in stats:
            assert bucket.read_stats(0)[key] == pytest.approx(stats[key], rel=1e-5, abs=1e-8), key

    start = {"policy": load_file(str(tiny_model / "model.safetensors"))}
    start["reward_model"] = {n.removeprefix("model."): w for n, w in start["policy"].items()}
    one, two = _trained(tmp_path / "single", token_weights), _trained(tmp_path / "ranks", token_weights)
    for network, weights in one.items():
        initial = {n: start[network].get(n, torch.zeros_like(w)) for n, w in weights.items()}  # RM head: 0
        assert_same_update(initial, weights, two[network])
