"""Which samples the policy learns from (OREAL §3.1 / the released code's `filter_trajectory`).

Groups where every sample is correct (p = 1) or every sample is wrong (p = 0) carry no contrast
and are dropped; from each remaining group we keep `keep` correct and `keep` wrong samples, chosen
uniformly at random with a caller-supplied generator so that every data-parallel rank (and a resumed
run) makes the same choice. `keep=None` keeps every sample of the surviving groups.
"""

from __future__ import annotations

import torch


def select_for_training(
    rewards: torch.Tensor,
    group_index: torch.Tensor,
    num_groups: int,
    *,
    keep: int | None,
    drop_uniform: bool,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Indices (sorted, LongTensor) of the samples kept for the update.

    rewards[S], group_index[S]; keep: per-group number of correct and of wrong samples kept
    (None: all); drop_uniform: drop groups with pass rate 0 or 1.
    """
    if keep is not None and keep < 1:
        raise ValueError(f"keep must be >= 1 or None, got {keep}")
    kept: list[torch.Tensor] = []
    for g in range(num_groups):
        members = torch.nonzero(group_index == g).flatten()
        if members.numel() == 0:
            continue
        correct = members[rewards[members] > 0]
        wrong = members[rewards[members] <= 0]
        if drop_uniform and (correct.numel() == 0 or wrong.numel() == 0):
            continue
        for part in (correct, wrong):
            if keep is None or part.numel() <= keep:
                kept.append(part)
            else:
                order = torch.randperm(part.numel(), generator=generator)
                kept.append(part[order[:keep]])
    if not kept:
        return torch.zeros(0, dtype=torch.long)
    return torch.sort(torch.cat(kept)).values
