"""The one reduction every loss uses: a masked sum divided by a *global* count.

Token-level vs sequence-level averaging
---------------------------------------
A token-level mean divides the sum over all unmasked tokens of the batch by the number of those
tokens, N: every token weighs the same, so long answers weigh more than short ones. A
sequence-level mean first averages inside each sequence and then over sequences: every answer
weighs the same. OREAL's policy losses (Eq. 11 and the released code's `loss_type="per_token"`)
are token-level with separate denominators N+ (tokens of kept correct samples), N- (tokens of kept
wrong samples) and N (all kept tokens, for the KL term). The reward-model loss (Eq. 12) is a
sequence-level mean over the kept sequences.

Data-parallel scaling
---------------------
With W ranks each holding a shard of the global batch (and each shard cut into micro-batches), the
full-batch mean  Σ_all x / N  equals  Σ_ranks Σ_micro (Σ_local x / N)  as long as N is the *global*
count. So every micro-batch computes  `normalized_sum(x, mask, N_global)`, gradients are *summed*
over micro-batches and ranks (not averaged), and the result is identical for any world size and any
micro-batch size. N comes in as an argument: the caller all-reduces the token counts once per step
before the first micro-batch. An engine whose all-reduce averages (DDP, DeepSpeed) must multiply
the local loss by the world size to turn the average back into a sum (see `training/engine.py`).
"""

from __future__ import annotations

import torch


def masked_sum(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Σ values where mask != 0; masked entries may hold anything finite or not (they are zeroed)."""
    return torch.where(mask.bool(), values, torch.zeros_like(values)).sum()


def normalized_sum(values: torch.Tensor, mask: torch.Tensor, count: float | torch.Tensor) -> torch.Tensor:
    """Σ_masked values / max(count, 1): this micro-batch's share of a global mean over `count` items."""
    denom = count.to(values.dtype).clamp(min=1) if isinstance(count, torch.Tensor) else max(float(count), 1.0)
    return masked_sum(values, mask) / denom
