"""Token importance from the token-level reward model (OREAL §2.4, Eq. 10 and Eq. 12).

The reward model emits one logit w_t per response token. Its sequence-level prediction of the
outcome is σ(mean_t w_t) (Eq. 12), so the prefix mean  w̄_t = mean_{k<=t} w_k  is its running
estimate, and q_t = σ(w̄_t) the probability that the answer is still on track after token t.
Correct samples are weighted by q_t, wrong ones by 1 - q_t, each through one of the released code's
two rescalings (`spec.algorithm.tokenWeighting`):

threshold (`threshold_rescale = True`, `correct_threshold = incorrect_threshold = 0.5`): how far the
probability lies beyond 0.5, rescaled to [0, 1]:

    ω+_t = clamp((q_t - 0.5) / 0.5, 0, 1) = max(2 q_t - 1, 0)   for correct samples,
    ω-_t = clamp((0.5 - q_t) / 0.5, 0, 1) = max(1 - 2 q_t, 0)   for wrong samples.

topk (`topk_rescale = True`, `correct_topk_ratio = incorrect_topk_ratio`): per sequence, the
k = floor(ratio · T) tokens of highest probability (q_t for ω+, 1 - q_t for ω-) get their probability
min-max rescaled over those k, so the k-th gets 0 and the highest 1 (all k get 1 when they are
equal); every other token gets 0. It needs no calibrated reward model: only the ranking of tokens
within a sequence counts. Two details the released code leaves open: k is at least 1 (it calls
torch.topk with k = 0 on a sequence shorter than 1/ratio, which fails), and ties are broken by
position (earlier first) where torch.topk's choice is unspecified.

Weights are detached: the policy loss must not train the reward model.
"""

from __future__ import annotations

from typing import Literal

import torch

TokenWeighting = Literal["threshold", "topk"]


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


def threshold_rescale(prob: torch.Tensor, mask: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """clamp((p - threshold) / (1 - threshold), 0, 1) on unmasked tokens, 0 elsewhere.  [B, T] -> [B, T]."""
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must lie in [0, 1), got {threshold}")
    out = ((prob - threshold) / (1.0 - threshold)).clamp(0.0, 1.0)
    return out * mask.to(out.dtype)


def topk_rescale(prob: torch.Tensor, mask: torch.Tensor, ratio: float) -> torch.Tensor:
    """Per row: min-max rescaled p on its k = max(1, floor(ratio · n)) highest tokens, 0 elsewhere.

    prob, mask [B, T] (n = the row's unmasked tokens; a row without any stays 0) -> [B, T].
    """
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"ratio must lie in (0, 1], got {ratio}")
    valid = mask.bool()
    n = valid.sum(-1)
    # floor(ratio * n) in float64, as the released code's int(numel * ratio) computes it in Python
    k = torch.floor(n.to(torch.float64) * ratio).to(torch.long).clamp(min=1)
    k = torch.where(n > 0, k, torch.zeros_like(k))
    # rank of every token within its row, highest first; padding last, ties by position (stable)
    ordered = prob.masked_fill(~valid, float("-inf"))
    order = torch.sort(ordered, dim=-1, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(-1, order, torch.arange(prob.shape[-1], device=prob.device).expand_as(order))
    chosen = valid & (rank < k[:, None])
    top = prob.masked_fill(~chosen, float("-inf")).amax(-1, keepdim=True)
    low = prob.masked_fill(~chosen, float("inf")).amin(-1, keepdim=True)
    span = top - low
    flat = ~(span > 0)  # all k equal (or no token): every chosen token gets 1
    scaled = (prob - low) / torch.where(flat, torch.ones_like(span), span)
    scaled = torch.where(flat, torch.ones_like(scaled), scaled)
    return torch.where(chosen, scaled, torch.zeros_like(scaled))


def token_weights(
    scores: torch.Tensor,
    mask: torch.Tensor,
    weighting: TokenWeighting = "threshold",
    topk_ratio: float = 0.25,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(ω+, ω-) for every token, each [B, T], detached, zero on padding.

    q_t = σ(prefix mean of the scores); ω+ rescales q_t, ω- rescales 1 - q_t (see the module docstring).
    """
    with torch.no_grad():
        q = torch.sigmoid(prefix_mean(scores.detach().float(), mask))
        if weighting == "threshold":
            return threshold_rescale(q, mask), threshold_rescale(1.0 - q, mask)
        if weighting == "topk":
            return topk_rescale(q, mask, topk_ratio), topk_rescale(1.0 - q, mask, topk_ratio)
    raise ValueError(f"unknown token weighting {weighting!r}; expected threshold or topk")
