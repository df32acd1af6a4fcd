"""The DeepSpeed engine (single CPU process, gloo) makes the same update as plain PyTorch, and resumes exactly."""

import pytest
import torch
from support.numerics import assert_same_update, use_linear_sgd
from support.specs import run_spec
from trainer_fixtures import scored_batch

from oreal.spec.models import OptimizerSpec, OREALRunSpec
from oreal.training import OREALTrainer
from oreal.training.models import load_causal_lm

pytest.importorskip("deepspeed")
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def options(backend: str, stage: int) -> OREALRunSpec:
    return run_spec(
        steps=5,
        warmup_steps=1,
        micro_batch_size=3,
        backend=backend,
        zero_stage=stage,
        policy_optimizer=OptimizerSpec(lr=1e-3, min_lr=1e-4),
        reward_model_optimizer=OptimizerSpec(lr=1e-3, min_lr=1e-4),
    )


def adamw_groups(optimizer) -> list[tuple]:
    """(type, betas, eps, weight decay) per parameter group (the lr follows the schedule each step);
    a ZeRO optimiser wraps the AdamW."""
    base = getattr(optimizer, "optimizer", optimizer)
    return [(type(base).__name__, tuple(g["betas"]), g["eps"], g["weight_decay"]) for g in base.param_groups]


def plain_adamw(policy):
    return OREALTrainer(options("torch", 0), policy_path=policy)


def run(opts, policy, ckpt):
    trainer = OREALTrainer(opts, policy_path=policy)
    stats = [trainer.train_step(scored_batch(s), s) for s in range(3)]
    trainer.save_checkpoint(ckpt)
    stats.append(trainer.train_step(scored_batch(3), 3))
    return trainer, stats


@pytest.mark.slow
@pytest.mark.parametrize("stage", [1, 3])
def test_deepspeed_matches_torch_and_resumes_exactly(tiny_qwen, tmp_path, stage, monkeypatch):
    # The same update through both engines, compared with LinearSGD (tests/support/numerics.py).
    with monkeypatch.context() as patch:
        use_linear_sgd(patch)
        plain, plain_stats = run(options("torch", 0), tiny_qwen, tmp_path / "torch")
        sgd, sgd_stats = run(options("deepspeed", stage), tiny_qwen, tmp_path / "ds-sgd")
    # under ZeRO-3 the frozen reference is partitioned too (a DeepSpeed engine without optimiser)
    assert (type(sgd.reference).__name__ == "DeepSpeedEngine") == (stage == 3)
    for a, b in zip(plain_stats, sgd_stats, strict=True):
        for key in ("loss/policy", "rm/loss", "kl"):
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-8), key
    start = load_causal_lm(tiny_qwen, torch.float32, torch.device("cpu")).state_dict()
    ds_weights = {n: w.to(torch.float32) for n, w in sgd.policy.full_state_dict().items()}
    assert_same_update(start, plain.policy.full_state_dict(), ds_weights)

    # Exact resume with DeepSpeed's AdamW: weights, optimiser moments, RNG and step come back.
    ds, ds_stats = run(options("deepspeed", stage), tiny_qwen, tmp_path / "ds")
    # ... and it is the AdamW the torch engine builds: same groups, same hyperparameters, exactly
    assert adamw_groups(ds.policy.engine.optimizer) == adamw_groups(plain_adamw(tiny_qwen).policy.optimizer)
    resumed = OREALTrainer(options("deepspeed", stage), policy_path=tiny_qwen)
    assert resumed.load_checkpoint(tmp_path / "ds") == 3
    again = resumed.train_step(scored_batch(3), 3)
    assert again["loss/policy"] == ds_stats[-1]["loss/policy"]
    assert again["rm/loss"] == ds_stats[-1]["rm/loss"]
    sd_resumed = resumed.policy.full_state_dict()
    for name, value in ds.policy.full_state_dict().items():
        assert torch.equal(value, sd_resumed[name]), name
