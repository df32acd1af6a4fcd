"""Token importance from the token-level reward model (OREAL §2.4, Eq. 10 and Eq. 12).

The reward model emits one logit w_t per response token. Its sequence-level prediction of the
outcome is σ(mean_t w_t) (Eq. 12), so the prefix mean  w̄_t = mean_{k<=t} w_k  is its running
estimate, and q_t = σ(w̄_t) the probability that the answer is still on track after token t.
Following the released config (`threshold_rescale = True`, `correct_threshold = incorrect_threshold
= 0.5`), tokens are weighted by how far q_t lies beyond the 0.5 threshold, rescaled to [0, 1]:

    ω+_t = max((q_t - 0.5) / 0.5, 0) = max(2 q_t - 1, 0)   for correct samples,
    ω-_t = max((0.5 - q_t) / 0.5, 0) = max(1 - 2 q_t, 0)   for wrong samples.

Weights are detached: the policy loss must not train the reward model.
"""

from __future__ import annotations

import torch


def prefix_mean(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """w̄_t = Σ_{k<=t} m_k w_k / Σ_{k<=t} m_k.  scores, mask: [B, T] -> [B, T] (0 where masked)."""
    m = mask.to(scores.dtype)
    ws = scores.masked_fill(mask == 0, 0.0)
    csum = torch.cumsum(ws, dim=-1)
    ccount = torch.cumsum(m, dim=-1).clamp(min=1)
    return (csum / ccount) * m


def sequence_logits(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Eq. 12's sequence logit mean_t w_t over unmasked tokens.  [B, T] -> [B]."""
    m = mask.to(scores.dtype)
    total = scores.masked_fill(mask == 0, 0.0).sum(-1)
    return total / m.sum(-1).clamp(min=1)


def token_weights(scores: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(ω+, ω-) for every token, each [B, T], detached, zero on padding (Eq. 10 on the prefix mean)."""
    with torch.no_grad():
        q = torch.sigmoid(prefix_mean(scores.detach().float(), mask))
        m = mask.to(q.dtype)
        positive = (2 * q - 1).clamp(min=0) * m
        negative = (1 - 2 * q).clamp(min=0) * m
    return positive, negative
