"""OREAL as pure tensor code: advantages, filtering, token weights, reductions, losses, resampling.

Nothing here touches models, devices or processes; every function is a pure map from tensors (or
plain lists) to tensors, so each one is tested on hand-built inputs. `oreal.training` composes them.
"""

from oreal.algorithm.advantages import group_pass_rates, grpo_advantages, rloo_advantages
from oreal.algorithm.filtering import select_for_training
from oreal.algorithm.importance import Behaviour, BehaviourCounts, importance_weights
from oreal.algorithm.losses import (
    PolicyBatch,
    TokenCounts,
    kl_penalty,
    oreal_negative_loss,
    oreal_positive_loss,
    policy_gradient_loss,
    policy_loss,
    reward_model_loss,
)
from oreal.algorithm.reduction import masked_sum, normalized_sum
from oreal.algorithm.resampling import DEFAULT_BUCKETS, resample_by_pass_rate
from oreal.algorithm.token_weights import prefix_mean, sequence_logits, token_weights

__all__ = [
    "DEFAULT_BUCKETS",
    "Behaviour",
    "BehaviourCounts",
    "PolicyBatch",
    "TokenCounts",
    "grpo_advantages",
    "importance_weights",
    "group_pass_rates",
    "kl_penalty",
    "masked_sum",
    "normalized_sum",
    "oreal_negative_loss",
    "oreal_positive_loss",
    "policy_gradient_loss",
    "policy_loss",
    "prefix_mean",
    "resample_by_pass_rate",
    "reward_model_loss",
    "rloo_advantages",
    "select_for_training",
    "sequence_logits",
    "token_weights",
]
