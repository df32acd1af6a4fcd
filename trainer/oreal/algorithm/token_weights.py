"""Token importance from the token-level reward model (OREAL §2.4, Eq. 10 and Eq. 12).

The reward model emits one logit w_t per response token. Its sequence-level prediction of the
outcome is σ(mean_t w_t) (Eq. 12), so the prefix mean  w̄_t = mean_{k<=t} w_k  is its running
estimate, and q_t = σ(w̄_t) the probability that the answer is still on track after token t.
Following the released code (threshold 0.5 "rescale"), tokens are weighted by how far q_t is on
the right side of 1/2:

    ω+_t = max(2 q_t - 1, 0)   for correct samples,
    ω-_t = max(1 - 2 q_t, 0)   for wrong samples.

Weights are detached: the policy loss must not train the reward model.

Rescaling (option `rescaleTokenWeights`, our reading of the released config's `threshold_rescale`):
ω+ is multiplied by N+ / Σω+ over the whole global batch (and ω- by N- / Σω-), so the weights sum
to the token counts. The loss (1/N+) Σ A ω̃+ ℓ then equals the ω-weighted token mean Σ A ω+ ℓ / Σω+:
the reward model decides *which* tokens carry the loss, not how large it is. Without rescaling a
reward model near chance (q ≈ 1/2) gives ω ≈ 0 and switches the policy gradient off while the KL
term keeps full strength.
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


def rescale_factor(weight_sum: float, token_count: float, eps: float = 1e-12) -> float:
    """N / Σω: multiply ω by it so the weights sum to N (1 where Σω is 0: nothing to rescale)."""
    return token_count / weight_sum if weight_sum > eps else 1.0
