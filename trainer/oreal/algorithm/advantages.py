"""Group advantages over the n samples of each prompt, computed before any filtering.

Samples are flat: `rewards[S]` (+1 correct, -1 otherwise) and `group_index[S]` in 0..G-1 naming
each sample's prompt. Groups may have different sizes (a lost sample just shrinks its group).
"""

from __future__ import annotations

import torch


def _group_sums(values: torch.Tensor, group_index: torch.Tensor, num_groups: int) -> torch.Tensor:
    out = torch.zeros(num_groups, dtype=values.dtype, device=values.device)
    return out.index_add_(0, group_index, values)


def group_pass_rates(rewards: torch.Tensor, group_index: torch.Tensor, num_groups: int) -> torch.Tensor:
    """p_g = fraction of correct samples (reward > 0) in group g.  Shape [G]."""
    correct = (rewards > 0).to(torch.float64)
    counts = _group_sums(torch.ones_like(correct), group_index, num_groups)
    return (_group_sums(correct, group_index, num_groups) / counts.clamp(min=1)).to(rewards.dtype)


def rloo_advantages(rewards: torch.Tensor, group_index: torch.Tensor, num_groups: int) -> torch.Tensor:
    """REINFORCE leave-one-out: A_i = r_i - mean_{j != i} r_j over the sample's group.  Shape [S].

    With r in {+1, -1} and group pass rate p over n samples this gives a correct sample
    2n(1-p)/(n-1) and a wrong one -2np/(n-1). A group of one sample has no baseline: A = 0.
    """
    r = rewards.to(torch.float64)
    sums = _group_sums(r, group_index, num_groups)
    counts = _group_sums(torch.ones_like(r), group_index, num_groups)
    n = counts[group_index]
    others_mean = (sums[group_index] - r) / (n - 1).clamp(min=1)
    adv = torch.where(n > 1, r - others_mean, torch.zeros_like(r))
    return adv.to(rewards.dtype)


def grpo_advantages(
    rewards: torch.Tensor, group_index: torch.Tensor, num_groups: int, eps: float = 1e-8
) -> torch.Tensor:
    """GRPO group normalisation (Shao et al. 2024): A_i = (r_i - mean_g r) / (std_g r + eps).  Shape [S].

    std is the unbiased (n-1) standard deviation, as in `torch.std`; a group of one sample gets A = 0.
    """
    r = rewards.to(torch.float64)
    counts = _group_sums(torch.ones_like(r), group_index, num_groups)
    mean = _group_sums(r, group_index, num_groups) / counts.clamp(min=1)
    centred = r - mean[group_index]
    var = _group_sums(centred**2, group_index, num_groups) / (counts - 1).clamp(min=1)
    std = var.sqrt()[group_index]
    adv = torch.where(counts[group_index] > 1, centred / (std + eps), torch.zeros_like(r))
    return adv.to(rewards.dtype)
