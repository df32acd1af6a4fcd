"""The trainer reads each kept sample's behaviour log-probs and policy version (maxStaleness > 0).

Updates are compared through LinearSGD (tests/support/numerics.py): with the bounds inactive, a
stale batch whose behaviour log-probs are the trainer's own minus log 1.5 on every token (r = 1.5)
must move the weights exactly 1.5 times as far as the on-policy step, and one whose behaviour
log-probs equal the trainer's must make the on-policy step.
"""

import dataclasses
import math

import pytest
import torch
from support.numerics import assert_same_update, use_linear_sgd
from support.specs import run_spec
from trainer_fixtures import scored_batch

from oreal.spec.models import OptimizerSpec
from oreal.training import OREALTrainer
from oreal.training.batch import KeptSample, behaviour, behaviour_counts, prepare_batch
from oreal.training.logprobs import collate, response_logprobs
from oreal.trajectory import ScoredSample

STEP = 3
# A large SGD step: the per-element rounding of fp32 weights (ulp(w)/2) must be small against Δw.
NO_CLIP = OptimizerSpec(lr=10.0, min_lr=10.0, weight_decay=0.0, grad_clip=1e9)


def with_behaviour(
    samples: list[ScoredSample], logprobs: list[list[float]], version: int
) -> list[ScoredSample]:
    return [
        ScoredSample(dataclasses.replace(s.sample, logprobs=list(lp), policy_version=version), s.verdict)
        for s, lp in zip(samples, logprobs, strict=True)
    ]


def own_logprobs(trainer: OREALTrainer, samples: list[ScoredSample]) -> list[list[float]]:
    """The trainer's own log π_θ of every response token (what an exact rollout engine reports)."""
    out = []
    with torch.no_grad():
        for s in samples:
            batch = collate([s.sample.prompt_token_ids], [s.sample.response_token_ids], trainer.device)
            logp = response_logprobs(trainer.policy_model, batch)[0, : len(s.sample.response_token_ids)]
            out.append(logp.tolist())
    return out


def kept(**fields) -> KeptSample:
    base = dict(prompt_ids=[1, 2], response_ids=[3, 4, 5], reward=1.0, advantage=0.5, pass_rate=0.5)
    return KeptSample(**(base | fields))


def test_prepare_carries_logprobs_and_staleness():
    samples = scored_batch(STEP)
    samples = with_behaviour(samples, [[-0.5] * len(s.sample.response_token_ids) for s in samples], STEP - 2)
    samples[0].sample.logprobs = []  # one sample whose engine gave no log-probs
    prepared = prepare_batch(samples, advantage="rloo", keep=None, drop_uniform=False, seed=0, step=STEP)
    assert all(k.staleness == 2 for k in prepared.kept)
    assert [k.has_logprobs for k in prepared.kept].count(False) == 1
    assert prepared.stats["staleness"] == 2.0
    assert prepared.stats["stale_samples"] == len(samples)
    assert prepared.stats["stale_uncorrected"] == 1.0
    fresh = prepare_batch(
        scored_batch(STEP), advantage="rloo", keep=None, drop_uniform=False, seed=0, step=STEP
    )
    assert fresh.stats["staleness"] == 0.0 and fresh.stats["stale_samples"] == 0.0


def test_behaviour_tensors_pad_like_collate_and_flag_unusable_rows():
    rows = [
        kept(logprobs=[-0.1, -0.2, -0.3], staleness=1),
        kept(logprobs=[-0.1, -0.2]),  # wrong length: unusable
        kept(logprobs=[-0.1, math.inf, -0.3], staleness=2),  # not finite: unusable
        kept(response_ids=[7], logprobs=[-1.5]),
    ]
    b = behaviour(rows, 4, torch.device("cpu"))
    assert b.logp.shape == (4, 4)
    assert torch.equal(b.logp[0], torch.tensor([-0.1, -0.2, -0.3, 0.0]))
    assert torch.equal(b.logp[3], torch.tensor([-1.5, 0.0, 0.0, 0.0]))
    assert b.known.tolist() == [True, False, False, True]
    assert b.stale.tolist() == [True, False, True, False]
    counts = behaviour_counts(rows)
    assert (counts.on_policy_tokens, counts.on_policy_sequences) == (1.0, 1.0)
    assert (counts.stale_tokens, counts.stale_sequences) == (3.0, 1.0)


def _grpo_step(policy, monkeypatch, shift: float | None, version: int, **fields):
    """One GRPO step at STEP on a fixed batch whose behaviour log-probs are the trainer's own + shift."""
    use_linear_sgd(monkeypatch)
    spec = run_spec(
        algorithm="grpo",
        steps=8,
        warmup_steps=0,
        kl_coef=0.0,
        micro_batch_size=3,
        policy_optimizer=NO_CLIP,
        **fields,
    )
    trainer = OREALTrainer(spec, policy_path=policy)
    samples = scored_batch(STEP)
    if shift is not None:
        samples = with_behaviour(
            samples, [[x + shift for x in lp] for lp in own_logprobs(trainer, samples)], version
        )
    stats = trainer.train_step(samples, STEP)
    weights = {n: p.detach().clone() for n, p in trainer.policy.module.named_parameters()}
    return stats, weights


def _start(policy):
    from oreal.training.models import load_causal_lm

    return load_causal_lm(policy, torch.float32, torch.device("cpu")).state_dict()


def test_stale_samples_with_the_trainers_own_logprobs_make_the_on_policy_step(tiny_qwen, monkeypatch):
    on_stats, on_weights = _grpo_step(tiny_qwen, monkeypatch, None, STEP)
    stale_stats, stale_weights = _grpo_step(tiny_qwen, monkeypatch, 0.0, STEP - 1)
    assert_same_update(_start(tiny_qwen), on_weights, stale_weights)
    assert stale_stats["loss/policy"] == pytest.approx(on_stats["loss/policy"], rel=1e-5, abs=1e-7)
    assert stale_stats["offpolicy/abs_logp"] == pytest.approx(0.0, abs=1e-5)
    assert stale_stats["offpolicy/bounded"] == 0.0
    assert "mismatch/abs_logp" not in stale_stats and "offpolicy/abs_logp" not in on_stats


def test_ratio_one_and_a_half_moves_the_weights_one_and_a_half_times(tiny_qwen, monkeypatch):
    """r = 1.5 on every token, below C = 2: w = 1.5 everywhere, so (SGD, no clip) Δw is 1.5x."""
    start = _start(tiny_qwen)
    _, on_weights = _grpo_step(tiny_qwen, monkeypatch, None, STEP)
    stats, stale_weights = _grpo_step(tiny_qwen, monkeypatch, -math.log(1.5), STEP - 1)
    scaled = {n: start[n] + 1.5 * (on_weights[n] - start[n]) for n in start}
    assert_same_update(start, scaled, stale_weights)
    assert stats["offpolicy/ratio"] == pytest.approx(1.5, rel=1e-5)
    assert stats["offpolicy/abs_logp"] == pytest.approx(math.log(1.5), rel=1e-4)
    # without the correction the stale step is the on-policy step (the bias this issue removes)
    _, plain = _grpo_step(tiny_qwen, monkeypatch, -math.log(1.5), STEP - 1, off_policy_correction="none")
    assert_same_update(start, on_weights, plain)


def test_mismatch_is_measured_on_policy_and_corrected_only_when_asked(tiny_qwen, monkeypatch):
    """On-policy samples whose engine log-probs are 0.25 nats below the trainer's: r = e^0.25."""
    start = _start(tiny_qwen)
    _, on_weights = _grpo_step(tiny_qwen, monkeypatch, None, STEP)
    stats, measured = _grpo_step(tiny_qwen, monkeypatch, -0.25, STEP)
    assert stats["mismatch/abs_logp"] == pytest.approx(0.25, rel=1e-4)
    # k3 per token r - 1 - log r, summed over each sequence, averaged over sequences
    samples = scored_batch(STEP)
    mean_len = sum(len(s.sample.response_token_ids) for s in samples) / len(samples)
    r = math.exp(0.25)
    assert stats["mismatch/kl"] == pytest.approx(mean_len * (r - 1 - 0.25), rel=1e-4)
    assert_same_update(start, on_weights, measured)  # measured, not corrected: the exact form
    stats, corrected = _grpo_step(tiny_qwen, monkeypatch, -0.25, STEP, mismatch_correction=True)
    scaled = {n: start[n] + r * (on_weights[n] - start[n]) for n in start}
    assert_same_update(start, scaled, corrected)
    assert stats["mismatch/bounded"] == 0.0


def test_oreal_with_stale_samples_trains_and_reports(tiny_qwen):
    """Full OREAL (reward model, token weights, KL) on a stale batch: finite stats, correction reported."""
    spec = run_spec(steps=6, warmup_steps=0, micro_batch_size=3, importance_cap=1.2)
    trainer = OREALTrainer(spec, policy_path=tiny_qwen)
    samples = scored_batch(STEP)
    logprobs = [
        [x - 0.4 * ((i + t) % 2) for t, x in enumerate(lp)]
        for i, lp in enumerate(own_logprobs(trainer, samples))
    ]
    stats = trainer.train_step(with_behaviour(samples, logprobs, STEP - 1), STEP)
    for key in ("loss/policy", "loss/positive", "loss/negative", "kl", "offpolicy/kl", "offpolicy/bounded"):
        assert key in stats and math.isfinite(stats[key]), key
    # r = e^0.4 ≈ 1.49 > C = 1.2 on about half the tokens: those are truncated
    assert 0.3 < stats["offpolicy/bounded"] < 0.7
    assert stats["stale_samples"] == stats["kept_samples"]


def test_mismatch_gauge_exports_what_the_step_had():
    from prometheus_client import REGISTRY, CollectorRegistry

    from oreal import metrics

    def value(statistic, samples):
        labels = {"statistic": statistic, "samples": samples}
        return REGISTRY.get_sample_value("oreal_trainer_logprob_mismatch", labels)

    gauges = metrics.LastStepGauges()
    CollectorRegistry().register(gauges)
    gauges.record({"mismatch/abs_logp": 0.02, "mismatch/kl": 0.1, "offpolicy/abs_logp": 0.3})
    assert value("mean_abs_diff", "on_policy") == 0.02
    assert value("sequence_kl", "on_policy") == 0.1
    assert value("mean_abs_diff", "stale") == 0.3
    assert value("sequence_kl", "stale") is None  # the step did not have it: no series, not 0
    gauges.record({"pass_rate": 0.5})
    assert value("mean_abs_diff", "on_policy") is None
