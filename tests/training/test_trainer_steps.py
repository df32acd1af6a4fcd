"""OREALTrainer on a tiny random model: warm-up, the three algorithms, saving, exact resume."""

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file
from support.numerics import assert_same_update, use_linear_sgd
from support.specs import run_spec
from trainer_fixtures import scored_batch

from oreal.algorithm import PolicyBatch, TokenCounts, policy_loss, reward_model_loss, token_weights
from oreal.spec.models import OptimizerSpec
from oreal.training import OREALTrainer
from oreal.training.batch import prepare_batch
from oreal.training.checkpoint_folder import load_safetensors_dir
from oreal.training.logprobs import collate, response_logprobs
from oreal.training.models import load_causal_lm
from oreal.trajectory import ScoredSample

FAST = dict(
    steps=6,
    warmup_steps=2,
    micro_batch_size=3,
    policy_optimizer=OptimizerSpec(lr=1e-3, min_lr=1e-4),
    reward_model_optimizer=OptimizerSpec(lr=1e-2, min_lr=1e-3),
)


def params(module):
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def changed(before, module):
    return [n for n, p in module.named_parameters() if not torch.equal(before[n], p.detach())]


def test_warmup_freezes_policy_and_trains_reward_model(tiny_qwen):
    trainer = OREALTrainer(run_spec(**FAST), policy_path=tiny_qwen)
    policy0 = params(trainer.policy.module)
    head0 = trainer.reward_model.module.head.weight.detach().clone()
    for step in range(2):
        stats = trainer.train_step(scored_batch(step), step)
        assert stats["warmup"] == 1.0 and "loss/policy" not in stats
    assert changed(policy0, trainer.policy.module) == []
    assert not torch.equal(head0, trainer.reward_model.module.head.weight)
    stats = trainer.train_step(scored_batch(2), 2)
    assert stats["warmup"] == 0.0
    assert len(changed(policy0, trainer.policy.module)) > 0
    # after warm-up the reward model has non-zero scores, so some tokens carry weight
    assert stats["omega/positive"] + stats["omega/negative"] > 0
    for key in ("loss/positive", "loss/negative", "loss/kl", "kl", "entropy", "rm/loss", "rm/accuracy"):
        assert key in stats and stats[key] == stats[key]  # present and not NaN
    assert stats["kept_samples"] == 8 and stats["kept_groups"] == 4  # 1 correct + 1 wrong per prompt


def test_paper_variant_trains_with_token_weights(tiny_llama):
    trainer = OREALTrainer(run_spec(variant="paper", **FAST), policy_path=tiny_llama)
    for step in range(3):
        stats = trainer.train_step(scored_batch(step), step)
    assert stats["loss/positive"] > 0 and stats["omega/positive"] + stats["omega/negative"] > 0


def test_filter_drops_uniform_groups_and_empty_batch_is_skipped(tiny_qwen):
    trainer = OREALTrainer(run_spec(**FAST), policy_path=tiny_qwen)
    stats = trainer.train_step(scored_batch(0, pass_rates=[1.0, 0.0, 0.5, 0.5]), 0)
    assert stats["groups/all_correct"] == 1 and stats["groups/all_wrong"] == 1 and stats["kept_groups"] == 2
    stats = trainer.train_step(scored_batch(1, pass_rates=[1.0, 0.0, 1.0, 0.0]), 1)
    assert stats["skipped"] == 1.0


@pytest.mark.parametrize("algorithm", ["grpo", "reinforce"])
def test_baselines_use_all_samples_and_no_reward_model(tiny_llama, algorithm):
    trainer = OREALTrainer(run_spec(algorithm=algorithm, **FAST), policy_path=tiny_llama)
    assert trainer.reward_model is None
    assert (trainer.reference is None) == (algorithm == "reinforce")
    policy0 = params(trainer.policy.module)
    stats = trainer.train_step(scored_batch(0), 0)  # no warm-up without a reward model
    assert stats["kept_samples"] == 16 and "loss/pg" in stats
    assert ("loss/kl" in stats) == (algorithm == "grpo")
    assert len(changed(policy0, trainer.policy.module)) > 0


def test_oreal_without_token_weights_has_no_reward_model(tiny_qwen):
    trainer = OREALTrainer(run_spec(token_weights=False, **FAST), policy_path=tiny_qwen)
    assert trainer.reward_model is None
    stats = trainer.train_step(scored_batch(0), 0)
    assert stats["warmup"] == 0.0 and stats["loss/positive"] > 0


def test_save_policy_is_loadable_hf_with_tokenizer(tiny_qwen, tmp_path):
    from transformers import AutoModelForCausalLM

    trainer = OREALTrainer(run_spec(token_weights=False, **FAST), policy_path=tiny_qwen)
    trainer.train_step(scored_batch(0), 0)
    assert trainer.policy_model is trainer.policy.module
    trainer.save_policy(tmp_path / "out")
    assert (tmp_path / "out" / "tokenizer_config.json").is_file()
    loaded = AutoModelForCausalLM.from_pretrained(str(tmp_path / "out"))
    for name, p in trainer.policy.module.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], p), name


def test_policy_is_published_in_the_compute_dtype_under_autocast(tiny_qwen, tmp_path):
    full = OREALTrainer(run_spec(token_weights=False, **FAST), policy_path=tiny_qwen)
    assert full.published_dtype is None  # fp32 weights, fp32 compute: saved as they are
    options = run_spec(**(FAST | {"token_weights": False, "dtype": "bfloat16"}))
    trainer = OREALTrainer(options, policy_path=tiny_qwen)
    trainer.train_step(scored_batch(0), 0)
    assert trainer.published_dtype == torch.bfloat16  # fp32 weights trained under bf16 autocast
    trainer.save_policy(tmp_path / "out", dtype=trainer.published_dtype)
    saved = load_safetensors_dir(tmp_path / "out")
    weights = trainer.policy.module.state_dict()
    assert saved and all(t.dtype == torch.bfloat16 for t in saved.values())
    for name, tensor in saved.items():  # exactly the rounding a bf16 rollout engine applies on load
        assert torch.equal(tensor, weights[name].to(torch.bfloat16)), name
    assert next(trainer.policy.module.parameters()).dtype == torch.float32  # training state untouched
    assert json.loads((tmp_path / "out" / "config.json").read_text())["dtype"] == "bfloat16"


@pytest.mark.parametrize("reuse_published", [False, True], ids=["policy-saved", "policy-linked"])
def test_resume_reproduces_next_step_bit_for_bit(tiny_qwen, tmp_path, reuse_published):
    opts = run_spec(**FAST)
    a = OREALTrainer(opts, policy_path=tiny_qwen)
    for step in range(3):
        a.train_step(scored_batch(step), step)
    if reuse_published:  # the worker checkpoints right after publishing: the policy files are linked
        a.save_policy(tmp_path / "published")
        a.save_checkpoint(tmp_path / "ckpt", saved_policy=tmp_path / "published")
        published = sorted((tmp_path / "published").glob("*.safetensors"))
        assert published and all(
            (tmp_path / "ckpt" / "policy" / f.name).stat().st_ino == f.stat().st_ino for f in published
        )
    else:
        a.save_checkpoint(tmp_path / "ckpt")
    saved_rng = torch.get_rng_state()
    stats_a = a.train_step(scored_batch(3), 3)

    torch.manual_seed(12345)  # a fresh process would start from another RNG state
    b = OREALTrainer(opts, policy_path=tiny_qwen)
    assert b.load_checkpoint(tmp_path / "ckpt") == 3
    assert torch.equal(torch.get_rng_state(), saved_rng)  # RNG restored (dropout, sampling in-process)
    stats_b = b.train_step(scored_batch(3), 3)
    for key in ("loss/policy", "rm/loss", "kl", "grad_norm/policy"):
        assert stats_a[key] == stats_b[key], key
    for module_a, module_b in (
        (a.policy.module, b.policy.module),
        (a.reward_model.module, b.reward_model.module),
    ):
        for (name, pa), pb in zip(module_a.state_dict().items(), module_b.state_dict().values(), strict=True):
            assert torch.equal(pa, pb), name
    state = json.loads((tmp_path / "ckpt" / "trainer_state.json").read_text())
    assert state["next_step"] == 3
    assert (tmp_path / "ckpt" / "reward_model" / "reward_head.safetensors").is_file()
    assert load_safetensors_dir(tmp_path / "ckpt" / "policy")
    assert load_file(str(tmp_path / "ckpt" / "reward_model" / "reward_head.safetensors"))["weight"].shape == (
        1,
        32,
    )


@pytest.mark.parametrize("variant", ["reference", "paper"])
def test_step_losses_equal_the_pure_loss_functions_on_the_whole_batch(tiny_qwen, variant):
    """The trainer's micro-batched, sharded step reports exactly policy_loss / reward_model_loss of the
    whole kept batch, with ω± from the reward model *before* its update and global token counts.
    One kept sample has an empty response: it adds no tokens and is not a scored sequence."""
    options = run_spec(**(FAST | {"variant": variant, "keep_per_prompt": "all", "warmup_steps": 1}))
    trainer = OREALTrainer(options, policy_path=tiny_qwen)
    trainer.train_step(scored_batch(0), 0)  # warm-up: the reward model's scores become non-zero
    batch_samples = scored_batch(1)
    empty = batch_samples[1]  # group 0 (pass rate 0.25): a wrong sample, kept with keep_per_prompt=all
    batch_samples[1] = ScoredSample(dataclasses.replace(empty.sample, response_token_ids=[]), empty.verdict)
    kept = prepare_batch(
        batch_samples, advantage="rloo", keep=None, drop_uniform=True, seed=options.algorithm.seed, step=1
    ).kept
    assert any(not k.response_ids for k in kept)
    b = collate([k.prompt_ids for k in kept], [k.response_ids for k in kept], torch.device("cpu"))
    with torch.no_grad():
        scores = trainer.reward_model.module(b.input_ids, b.response_index)
        pos_w, neg_w = token_weights(scores, b.response_mask)
        logp = response_logprobs(trainer.policy.module, b)
        ref = response_logprobs(trainer.reference, b)
    rewards, mask = torch.tensor([k.reward for k in kept]), b.response_mask
    counts = TokenCounts(
        positive=float(mask[rewards > 0].sum()),
        negative=float(mask[rewards <= 0].sum()),
        total=float(mask.sum()),
        sequences=float(sum(1 for k in kept if k.response_ids)),
    )
    advantages = torch.tensor([k.advantage for k in kept])
    pass_rate = torch.tensor([k.pass_rate for k in kept])
    pb = PolicyBatch(logp, mask, advantages, rewards, pass_rate, ref, pos_w, neg_w)
    want_policy, _ = policy_loss(pb, counts, trainer.algorithm)
    want_rm, _ = reward_model_loss(scores, mask, rewards, counts.sequences)
    stats = trainer.train_step(batch_samples, 1)
    assert stats["loss/policy"] == pytest.approx(want_policy.item(), rel=1e-5, abs=1e-9)
    assert stats["rm/loss"] == pytest.approx(want_rm.item(), rel=1e-5)


def test_learning_rate_schedules(tiny_qwen):
    trainer = OREALTrainer(run_spec(token_weights=True, steps=12, warmup_steps=2), policy_path=tiny_qwen)
    assert trainer.policy_lr(2) == pytest.approx(5e-7) and trainer.policy_lr(11) == pytest.approx(1e-7)
    # reward model: linear warm-up over the 2 frozen-policy steps (released code), then cosine
    assert trainer.reward_model_lr(0) == pytest.approx(1e-6) and trainer.reward_model_lr(1) == pytest.approx(
        2e-6
    )
    assert trainer.reward_model_lr(2) == pytest.approx(2e-6) and trainer.reward_model_lr(11) == pytest.approx(
        4e-7
    )
    assert 4e-7 < trainer.reward_model_lr(6) < 2e-6
    assert 1e-7 < trainer.policy_lr(6) < 5e-7


def test_trainer_settings_are_derived_from_the_spec():
    from oreal.spec import run_from_dict

    run = run_from_dict(
        {
            "apiVersion": "oreal.io/v1alpha1",
            "kind": "OREALRun",
            "metadata": {"name": "t"},
            "spec": {
                "model": {"policy": "/m"},
                "data": {"prompts": "/p.jsonl"},
                "algorithm": {
                    "name": "grpo",
                    "steps": 20,
                    "warmupSteps": 3,
                    "klCoef": 0.02,
                    "keepPerPrompt": "all",
                },
                "trainer": {"backend": "torch", "zeroStage": 1, "microBatchSize": 2},
            },
        }
    )
    alg, engine = run.spec.algorithm, run.spec.trainer
    assert (alg.name, alg.steps, alg.warmup_steps, alg.kl_coef) == ("grpo", 20, 3, 0.02)
    assert alg.keep_per_group is None and alg.advantage_estimator == "grpo" and engine.micro_batch_size == 2
    assert alg.policy_optimizer.lr == 5e-7 and alg.reward_model_optimizer.min_lr == 4e-7
    assert alg.policy_warmup_steps == 0  # grpo has no reward model, hence no warm-up
    assert not alg.uses_reward_model and alg.uses_kl and not alg.drop_uniform_groups
    oreal = alg.model_copy(update={"name": "oreal", "keep_per_prompt": 2})
    assert oreal.keep_per_group == 2 and oreal.uses_reward_model and oreal.policy_warmup_steps == 3
    assert oreal.drop_uniform_groups
    assert not alg.model_copy(update={"name": "reinforce"}).uses_kl  # Table 2, first row: no KL term


def _weights_after(policy, monkeypatch, **overrides):
    """Three steps with LinearSGD (see support/numerics.py: AdamW's sign-like first step turns
    rounding noise into ±lr moves), returning the stats and the policy's weights."""
    use_linear_sgd(monkeypatch)
    trainer = OREALTrainer(run_spec(**(FAST | overrides)), policy_path=policy)
    assert trainer.policy.module.is_activation_checkpointing == trainer.spec.trainer.gradient_checkpointing
    stats = [trainer.train_step(scored_batch(step), step) for step in range(3)]
    assert "loss/policy" in stats[-1], "precondition: the last step trained the policy"
    return stats, trainer.policy.module.state_dict()


def _initial(policy):
    return load_causal_lm(policy, torch.float32, torch.device("cpu")).state_dict()


def test_micro_batch_size_and_gradient_checkpointing_do_not_change_the_update(tiny_qwen, monkeypatch):
    """Losses are shares of the global loss, so cutting the batch differently gives the same step."""
    stats_a, weights_a = _weights_after(tiny_qwen, monkeypatch, micro_batch_size=1)
    stats_b, weights_b = _weights_after(
        tiny_qwen, monkeypatch, micro_batch_size=8, gradient_checkpointing=True
    )
    for a, b in zip(stats_a, stats_b, strict=True):
        for key in ("rm/loss", "loss/policy", "kl", "grad_norm/reward_model"):
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-8), key
    assert_same_update(_initial(tiny_qwen), weights_a, weights_b)


@pytest.mark.slow
def test_compiled_decoder_layers_train_like_eager(tiny_qwen, monkeypatch):
    """trainer.compile only changes how the layers run: same losses and weights after 3 steps."""
    stats_a, weights_a = _weights_after(tiny_qwen, monkeypatch, micro_batch_size=2)
    stats_b, weights_b = _weights_after(tiny_qwen, monkeypatch, micro_batch_size=2, compile=True)
    for a, b in zip(stats_a, stats_b, strict=True):
        for key in ("rm/loss", "loss/policy", "kl"):
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-7), key
    assert_same_update(_initial(tiny_qwen), weights_a, weights_b)


def test_compile_option_compiles_every_decoder_layer_of_the_three_networks(tiny_qwen):
    trainer = OREALTrainer(run_spec(**(FAST | {"compile": True})), policy_path=tiny_qwen)
    nets = (trainer.policy.module, trainer.reference, trainer.reward_model.module)
    layers = [m for net in nets for m in net.modules() if type(m).__name__.endswith("DecoderLayer")]
    assert len(layers) == 3 * trainer.policy.module.config.num_hidden_layers
    assert all(m._compiled_call_impl is not None for m in layers)
