"""Issue #14's algorithm options: uniform groups, the token-weight function and its top-k ratio."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from oreal.spec.crd import crd_manifest
from oreal.spec.models import AlgorithmSpec


def test_released_oreal_without_token_rm_is_expressible():
    # oreal_wo_tokenrm_OREAL-7B-SFT: filter_trajectory=False (all samples, uniform groups too), no
    # token-level reward model, hence no actor freeze
    alg = AlgorithmSpec.model_validate(
        {"keepPerPrompt": "all", "uniformGroups": "keep", "tokenWeights": False}
    )
    assert alg.keep_per_group is None and not alg.drop_uniform_groups
    assert not alg.uses_reward_model and alg.policy_warmup_steps == 0
    # the released full config is the default: 1 correct + 1 wrong, uniform groups dropped, 10 frozen steps
    full = AlgorithmSpec()
    assert full.keep_per_group == 1 and full.drop_uniform_groups and full.policy_warmup_steps == 10


@pytest.mark.parametrize(
    ("name", "uniform", "drop"),
    [
        ("oreal", None, True),
        ("grpo", None, False),
        ("reinforce", None, False),
        ("oreal", "keep", False),
        ("grpo", "drop", True),
    ],
)
def test_uniform_groups_default_depends_on_the_algorithm(name, uniform, drop):
    assert AlgorithmSpec(name=name, uniform_groups=uniform).drop_uniform_groups is drop


def test_token_weighting_fields_and_bounds():
    alg = AlgorithmSpec.model_validate({"tokenWeighting": "topk", "topkRatio": 0.5})
    assert (alg.token_weighting, alg.topk_ratio) == ("topk", 0.5)
    assert (AlgorithmSpec().token_weighting, AlgorithmSpec().topk_ratio) == ("threshold", 0.25)
    for bad in (
        {"topkRatio": 0},
        {"topkRatio": 1.5},
        {"tokenWeighting": "softmax"},
        {"uniformGroups": "yes"},
    ):
        with pytest.raises(ValidationError):
            AlgorithmSpec.model_validate(bad)


def test_new_fields_are_documented_in_the_crd():
    schema = crd_manifest()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    algorithm = schema["properties"]["spec"]["properties"]["algorithm"]["properties"]
    assert algorithm["uniformGroups"]["enum"] == ["drop", "keep"]
    assert algorithm["tokenWeighting"]["enum"] == ["threshold", "topk"]
    assert algorithm["topkRatio"]["maximum"] == 1
    for field in ("uniformGroups", "tokenWeighting", "topkRatio"):
        assert "released" in algorithm[field]["description"]
    model = schema["properties"]["spec"]["properties"]["model"]["properties"]
    assert "oreal reward-model fit" in model["tokenRewardModel"]["description"]
