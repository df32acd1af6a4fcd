"""The DeepSpeed engine (single CPU process, gloo) matches plain PyTorch, and resumes exactly."""

import pytest
import torch
from trainer_fixtures import scored_batch

from oreal.training import OptimizerOptions, OREALTrainer, TrainerOptions

pytest.importorskip("deepspeed")
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def options(backend: str, stage: int) -> TrainerOptions:
    return TrainerOptions(
        steps=5,
        warmup_steps=1,
        micro_batch_size=3,
        backend=backend,
        zero_stage=stage,
        policy_optimizer=OptimizerOptions(lr=1e-4, min_lr=1e-5),
        reward_model_optimizer=OptimizerOptions(lr=1e-3, min_lr=1e-4),
    )


def run(opts, policy, ckpt):
    trainer = OREALTrainer(opts, policy_path=policy)
    stats = [trainer.train_step(scored_batch(s), s) for s in range(3)]
    trainer.save_checkpoint(ckpt)
    stats.append(trainer.train_step(scored_batch(3), 3))
    return trainer, stats


@pytest.mark.slow
@pytest.mark.parametrize("stage", [1, 3])
def test_deepspeed_matches_torch_and_resumes_exactly(tiny_qwen, tmp_path, stage):
    plain, plain_stats = run(options("torch", 0), tiny_qwen, tmp_path / "torch")
    ds, ds_stats = run(options("deepspeed", stage), tiny_qwen, tmp_path / "ds")
    # under ZeRO-3 the frozen reference is partitioned too (a DeepSpeed engine without optimiser)
    assert (type(ds.reference).__name__ == "DeepSpeedEngine") == (stage == 3)
    for a, b in zip(plain_stats, ds_stats, strict=True):
        for key in ("loss/policy", "rm/loss", "kl"):
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-8), key
    sd_plain = plain.policy.full_state_dict()
    sd_ds = ds.policy.full_state_dict()
    for name, value in sd_plain.items():
        assert torch.allclose(value, sd_ds[name].to(value.dtype), atol=1e-6), name

    resumed = OREALTrainer(options("deepspeed", stage), policy_path=tiny_qwen)
    assert resumed.load_checkpoint(tmp_path / "ds") == 3
    again = resumed.train_step(scored_batch(3), 3)
    assert again["loss/policy"] == ds_stats[-1]["loss/policy"]
    assert again["rm/loss"] == ds_stats[-1]["rm/loss"]
    sd_resumed = resumed.policy.full_state_dict()
    for name, value in ds.policy.full_state_dict().items():
        assert torch.equal(value, sd_resumed[name]), name
