"""OREALTrainer with issue #14's options: uniform groups kept, top-k token weights, the weight hook, and
a reward model that starts from a fitted folder (or is refused for its vocabulary or shape)."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
from safetensors.torch import save_file
from support.specs import run_spec
from trainer_fixtures import VOCAB, scored_batch, tiny_model_dir

from oreal.training import OREALTrainer
from oreal.training.reward_model import HEAD_FILE, TokenRewardModel

# groups: all wrong, all correct, 2 of 4 correct, 1 of 4 correct
PASS_RATES = [0.0, 1.0, 0.5, 0.25]


def batch(step: int = 0):
    return scored_batch(step, prompts=4, n=4, pass_rates=PASS_RATES)


@pytest.mark.parametrize(
    ("keep", "uniform", "kept"),
    [(1, None, 4), ("all", None, 8), ("all", "keep", 16), (1, "keep", 6)],
)
def test_uniform_groups_switch_and_keep_all(tiny_qwen, keep, uniform, kept):
    spec = run_spec(
        token_weights=False, keep_per_prompt=keep, uniform_groups=uniform, steps=2, warmup_steps=0
    )
    trainer = OREALTrainer(spec, policy_path=tiny_qwen)
    samples = batch()
    stats = trainer.train_step(samples, 0)
    assert stats["kept_samples"] == kept
    if uniform == "keep" and keep == "all":  # every token counts in the normalisation (released wo_tokenrm)
        assert stats["tokens/total"] == sum(len(s.sample.response_token_ids) for s in samples)


def test_topk_weights_on_the_first_step_follow_from_the_zero_head(tiny_qwen):
    """A zero head scores every token 0, so every q_t = 1/2: the top-k tie is broken by position and each
    sequence's first k = max(1, floor(ratio * n)) tokens get weight 1, the others 0."""
    spec = run_spec(
        token_weighting="topk", topk_ratio=0.5, warmup_steps=0, keep_per_prompt="all", uniform_groups="keep"
    )
    trainer = OREALTrainer(spec, policy_path=tiny_qwen)
    samples = batch()
    stats = trainer.train_step(samples, 0)
    for sign, key in ((1, "omega/positive"), (-1, "omega/negative")):
        lengths = [len(s.sample.response_token_ids) for s in samples if (s.reward > 0) == (sign > 0)]
        want = sum(max(1, math.floor(0.5 * n)) for n in lengths) / sum(lengths)
        assert stats[key] == pytest.approx(want, rel=1e-6)
    threshold = OREALTrainer(run_spec(warmup_steps=0, keep_per_prompt="all"), policy_path=tiny_qwen)
    stats = threshold.train_step(samples, 0)
    assert stats["omega/positive"] == 0.0 and stats["omega/negative"] == 0.0  # 2·(1/2) - 1 = 0


class RecordingTrainer(OREALTrainer):
    """Replaces ω± by constants and records what the hook was given."""

    calls: list

    def select_token_weights(self, chunk, scores, mask):
        self.calls = getattr(self, "calls", []) + [(list(chunk), scores.clone(), mask.clone())]
        ones = mask.to(torch.float32)
        return ones * 0.5, ones * 0.25


def test_weight_hook_sees_the_rows_of_its_scores_and_its_weights_are_used(tiny_qwen):
    trainer = RecordingTrainer(run_spec(warmup_steps=0, micro_batch_size=3), policy_path=tiny_qwen)
    stats = trainer.train_step(batch(), 0)
    assert len(trainer.calls) == 2  # 4 kept samples (1 + 1 of each mixed group), 3 per micro-batch
    for chunk, scores, mask in trainer.calls:
        assert mask.sum(-1).tolist() == [len(k.response_ids) for k in chunk]
        assert scores.shape == mask.shape and not scores.requires_grad
    assert stats["omega/positive"] == pytest.approx(0.5) and stats["omega/negative"] == pytest.approx(0.25)


def fitted_reward_model(policy, out, seed=3):
    """A reward-model folder as `oreal reward-model fit` writes it, with a non-zero head."""
    rm = TokenRewardModel.from_pretrained(policy, torch.float32, torch.device("cpu"))
    torch.manual_seed(seed)
    rm.head.weight.data.normal_()
    rm.save_pretrained(out)
    return rm.head.weight.detach().clone()


def test_trainer_starts_from_a_fitted_reward_model(tiny_qwen, tmp_path):
    head = fitted_reward_model(tiny_qwen, tmp_path / "rm")
    spec = run_spec(warmup_steps=0)
    trainer = OREALTrainer(spec, policy_path=tiny_qwen, reward_model_path=tmp_path / "rm")
    assert torch.equal(trainer.reward_model.module.head.weight.detach(), head)
    stats = trainer.train_step(batch(), 0)
    assert stats["omega/positive"] + stats["omega/negative"] > 0  # a zero head would give exactly 0
    fresh = OREALTrainer(spec, policy_path=tiny_qwen)
    assert fresh.reward_model.module.head.weight.abs().sum() == 0


def test_reward_model_of_another_vocabulary_or_shape_is_refused(tiny_qwen, tmp_path):
    other = tiny_model_dir(tmp_path / "other", "qwen2")
    config = json.loads((other / "config.json").read_text())
    config["vocab_size"] = VOCAB + 16
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="another tokenizer"):
        OREALTrainer(run_spec(), policy_path=tiny_qwen, reward_model_path=other)

    wrong_head = tmp_path / "wrong-head"
    shutil.copytree(tiny_qwen, wrong_head)
    save_file({"weight": torch.ones(1, 48)}, str(wrong_head / HEAD_FILE))  # hidden size is 32
    with pytest.raises(ValueError, match="another shape"):
        OREALTrainer(run_spec(), policy_path=tiny_qwen, reward_model_path=wrong_head)
