"""The OREALRun models: paper defaults, the example run, and cross-field rules."""

from __future__ import annotations

import copy

import pytest

from oreal.spec import SpecError, load_run, run_from_dict


def test_defaults_are_the_papers(minimal: dict) -> None:
    spec = run_from_dict(minimal).spec
    a = spec.algorithm
    assert (a.name, a.variant) == ("oreal", "reference")
    assert (a.prompts_per_step, a.samples_per_prompt, a.keep_per_prompt) == (64, 16, 1)
    assert (a.steps, a.warmup_steps) == (90, 10)  # released configs: 90 steps, 10 reward-model-only
    assert (a.kl_coef, a.negative_coef, a.max_staleness) == (0.01, 0.5, 0)
    assert (a.policy_optimizer.lr, a.policy_optimizer.min_lr) == (5e-7, 1e-7)
    assert (a.reward_model_optimizer.lr, a.reward_model_optimizer.min_lr) == (2e-6, 4e-7)
    assert (a.policy_optimizer.weight_decay, a.policy_optimizer.grad_clip) == (0.01, 1.0)
    assert (spec.sampling.temperature, spec.sampling.top_p) == (1.0, 0.9)
    assert a.advantage_estimator == "rloo"


def test_grpo_defaults_to_group_normalised_advantages(minimal: dict) -> None:
    minimal["spec"]["algorithm"] = {"name": "grpo"}
    assert run_from_dict(minimal).spec.algorithm.advantage_estimator == "grpo"
    minimal["spec"]["algorithm"] = {"name": "oreal", "advantage": "grpo"}
    assert run_from_dict(minimal).spec.algorithm.advantage_estimator == "grpo"


def test_example_run_is_a_realistic_7b_run(repo_root) -> None:
    run = load_run(repo_root / "examples" / "run.yaml")
    s = run.spec
    assert "qwen2.5-7b" in s.model.policy.lower()
    assert s.storage.uri.startswith("s3://") and s.storage.secret_ref.name
    assert (s.rollout.replicas, s.rollout.gpus_per_replica, s.rollout.engine) == (4, 1, "vllm")
    assert s.verifier.replicas == 1
    assert (s.trainer.nodes, s.trainer.gpus_per_node, s.trainer.zero_stage) == (2, 8, 3)


def test_keep_per_prompt_accepts_all(minimal: dict) -> None:
    minimal["spec"]["algorithm"] = {"keepPerPrompt": "all"}
    assert run_from_dict(minimal).spec.algorithm.keep_per_prompt == "all"


@pytest.mark.parametrize(
    ("algorithm", "message"),
    [
        ({"keepPerPrompt": 20}, "keepPerPrompt (20) must be <= samplesPerPrompt (16)"),
        ({"warmupSteps": 10, "steps": 10}, "warmupSteps (10) must be < steps (10)"),
        ({"policyOptimizer": {"lr": 1e-7, "minLr": 1e-6}}, "minLr (1e-06) must be <= lr (1e-07)"),
        (
            {"samplesPerPrompt": 1},
            "spec.algorithm.samplesPerPrompt: Input should be greater than or equal to 2",
        ),
    ],
)
def test_cross_field_rules_name_the_field(minimal: dict, algorithm: dict, message: str) -> None:
    minimal["spec"]["algorithm"] = algorithm
    with pytest.raises(SpecError, match="spec.algorithm") as err:
        run_from_dict(minimal)
    assert message in str(err.value)


def test_rollout_replicas_cannot_exceed_prompts(minimal: dict) -> None:
    minimal["spec"]["algorithm"] = {"promptsPerStep": 2}
    minimal["spec"]["rollout"] = {"replicas": 3}
    with pytest.raises(SpecError, match=r"rollout.replicas \(3\) must be <= algorithm.promptsPerStep \(2\)"):
        run_from_dict(minimal)


def test_prompt_template_needs_placeholder(minimal: dict) -> None:
    minimal["spec"]["data"]["promptTemplate"] = "Solve it."
    with pytest.raises(
        SpecError, match=r"spec.data: promptTemplate must contain the placeholder \{problem\}"
    ):
        run_from_dict(minimal)


def test_unknown_field_suggests_the_close_one(minimal: dict) -> None:
    bad = copy.deepcopy(minimal)
    bad["spec"]["algorithm"] = {"samplesPerPromt": 8}
    with pytest.raises(
        SpecError, match=r"spec.algorithm.samplesPerPromt: unknown field; did you mean 'samplesPerPrompt'\?"
    ):
        run_from_dict(bad)


def test_manifest_round_trip_keeps_every_value(minimal: dict) -> None:
    run = run_from_dict(minimal)
    again = run_from_dict(run.to_manifest())
    assert again == run
