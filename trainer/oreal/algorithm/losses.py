"""OREAL's losses and the two baselines, one small function each.

Shapes: B sequences (kept samples of this micro-batch), T response positions (right-padded).
`logp`, `ref_logp` [B, T]: log π_θ(y_t | x, y_<t) and the frozen reference's; `mask` [B, T] is 1 on
real response tokens; `advantages`, `rewards`, `pass_rate` [B]; `weights` [B, T] token weights ω±.
Every function returns (loss, stats): `loss` is this micro-batch's *share of the global loss*
(a masked sum over a global count, see `reduction.py`), and every stat is additive in the same way,
so summing losses and stats over micro-batches and ranks gives the full-batch values.

Padding may hold anything (even inf): inputs are zeroed outside the mask before any arithmetic, so
neither values nor gradients ever see it.

ratio_t = exp(log π_θ - stopgrad(log π_θ)) is 1 in value and has gradient ∇ log π_θ: it is the
importance ratio π_θ/π_old of the released code with π_old = π_θ, exact for samples drawn by the
weights being trained (one optimiser step per rollout batch). Samples drawn by an older policy
version (`maxStaleness` > 0), and optionally every sample (`mismatchCorrection`), multiply each
policy-gradient token by a detached, bounded importance weight w_t (`importance.py`); `importance`
[B, T] below is that w (None: w = 1, today's exact form).

Which terms take w (decided here, tested in tests/algorithm/test_importance.py):
- L- / L2 and L_pg: yes. They are policy-gradient estimators E_{y~π_θ}[A ∇log π_θ(y)]; from y ~ μ
  the expectation is another one (first-order bias in the policy change), and w restores it.
- L+ / L1 (behaviour cloning on positives): yes, the same w. In the paper's analysis it is not a
  fixed-data MLE but a policy gradient too: on-policy its expected gradient is
  E_{y~π_θ|correct}[∇log π_θ(y)] = ∇ log p_θ (p = the prompt's pass rate), the counterpart of the
  negatives' -∇p/(1-p) (see oreal_negative_loss). Stale positives estimate E_{μ|correct}[∇log π_θ]
  instead, which points towards μ's correct answers; weighted by r they give (p_θ/p_μ)·∇ log p_θ
  for one-token answers, the on-policy direction. Correcting only the negatives would tilt the
  balance between the two terms that OREAL's reshaping is built on.
- β·KL (k3 to the reference): no. It is a regulariser, not an estimate of an expected gradient
  of the objective: per token its gradient is (1 - π_ref/π_θ)∇log π_θ, zero wherever π_θ = π_ref
  whatever sampled the token, so its fixed point (the reference) does not depend on the sampling
  distribution; μ only changes which prefixes it is applied on. A ratio would add variance and no
  change of target (verl and OpenRLHF also apply their KL loss unweighted under PPO's off-policy
  minibatches). The "kl" stat then estimates the KL on μ's samples, as it is read.

Hyperparameters come from the spec (`cfg` is `spec.algorithm`, validated there: name, variant,
β = klCoef, η = negativeCoef, tokenWeights); this module defines none of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from oreal.algorithm.importance import (
    Behaviour,
    BehaviourCounts,
    correction_stats,
    importance_weights,
)
from oreal.algorithm.reduction import normalized_sum
from oreal.algorithm.token_weights import sequence_logits
from oreal.spec.models import AlgorithmSpec

Stats = dict[str, torch.Tensor]


@dataclass(frozen=True)
class TokenCounts:
    """Global (all ranks) counts over the kept batch: N+, N-, N tokens and kept non-empty sequences."""

    positive: float
    negative: float
    total: float
    sequences: float
    behaviour: BehaviourCounts = BehaviourCounts()


@dataclass
class PolicyBatch:
    """Everything the policy loss needs for one micro-batch (see module docstring for shapes)."""

    logp: torch.Tensor
    mask: torch.Tensor
    advantages: torch.Tensor
    rewards: torch.Tensor
    pass_rate: torch.Tensor
    ref_logp: torch.Tensor | None = None
    pos_weights: torch.Tensor | None = None
    neg_weights: torch.Tensor | None = None
    behaviour: Behaviour | None = None  # who sampled each row (importance.py); None: all on-policy


def _clean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask.bool(), x, torch.zeros_like(x))


def _ratio(logp: torch.Tensor, importance: torch.Tensor | None = None) -> torch.Tensor:
    """w_t · exp(log π_θ - sg(log π_θ)): value w_t, gradient w_t ∇log π_θ (w = 1 when None)."""
    ratio = torch.exp(logp - logp.detach())
    return ratio if importance is None else ratio * importance.detach()


def oreal_positive_loss(
    logp: torch.Tensor,
    advantages: torch.Tensor,
    weights: torch.Tensor,
    mask: torch.Tensor,
    count: float,
    cfg: AlgorithmSpec,
    importance: torch.Tensor | None = None,
) -> tuple[torch.Tensor, Stats]:
    """Behaviour cloning on correct samples; `mask` covers only the positives' tokens, count = N+.

    reference (released code, `pos_mult_adv=True`):  L+ = (1/N+) Σ_i A_i Σ_t w_{i,t} ω+_{i,t} (-log π_θ(y_t))
    paper (Eq. 11, first term):                      L1 = (1/N+) Σ_i Σ_t w_{i,t} ω+_{i,t} (-log π_θ(y_t))

    w = `importance` (detached, 1 on-policy): why positives take it, see the module docstring.
    """
    logp = _clean(logp, mask)
    w = _clean(weights, mask) if cfg.token_weights else mask.to(logp.dtype)
    if importance is not None:
        w = w * _clean(importance.detach(), mask)
    scale = advantages[:, None].to(logp.dtype) if cfg.variant == "reference" else 1.0
    loss = normalized_sum(scale * w * (-logp), mask, count)
    return loss, {"loss/positive": loss.detach()}


def oreal_negative_loss(
    logp: torch.Tensor,
    advantages: torch.Tensor,
    pass_rate: torch.Tensor,
    weights: torch.Tensor,
    mask: torch.Tensor,
    count: float,
    cfg: AlgorithmSpec,
    importance: torch.Tensor | None = None,
) -> tuple[torch.Tensor, Stats]:
    """Policy gradient on wrong samples; `mask` covers only the negatives' tokens, count = N-.

    reference (released code):  L- = -(η/N-) Σ_i Σ_t w_t ratio_t · A_i · ω-_{i,t}     (A_i < 0)
    paper (§2.3, Eq. 6 / L2):   L2 = -(η/N-) Σ_i Σ_t w_t ratio_t · R*_i · ω-_{i,t},  R*_i = (1 - p_i) R_i, R_i = -1
    (w_t = `importance`, 1 on-policy; for a stale sample p_i is its group's pass rate under μ.)

    Reading of the paper implemented here: Eq. 11 keeps only the reshaped outcome reward on
    negatives (no RLOO baseline), p_i is the pass rate of sample i's whole group before filtering
    (the empirical estimate of the query's success probability), and L2 keeps the importance-ratio
    form with π_old = π_θ. Why (1 - p): per prompt, E[∇log π | wrong] = -∇p/(1-p), so a wrong
    sample's term reshaped by (1-p) has expected gradient ∇p, the same as behaviour cloning on the
    correct samples of a best-of-n group counted per sample (a fraction p of the group, each
    ∇p/p). Unshaped, negatives weigh each prompt by 1/(1-p) and the summed gradient over prompts of
    different difficulty no longer points along ∇ Σ_x p_x. tests/algorithm/test_gradient_consistency.py
    checks this by Monte Carlo in that per-group setting (positives divided by the group size n with
    every correct sample kept, negatives by the group's wrong samples).

    The trainer normalises as the released code does instead (global token counts N+ / N-, and by
    default 1 correct + 1 wrong sample per prompt), which reweights prompts: on the same toy
    problem routed through that filter and those counts, the cosine with the true gradient is 0.980
    reshaped vs 0.997 unshaped. So the argument motivates the reshaping; it is not an exact property
    of the trainer's default batch.
    """
    logp = _clean(logp, mask)
    w = _clean(weights, mask) if cfg.token_weights else mask.to(logp.dtype)
    coef = advantages.to(logp.dtype) if cfg.variant == "reference" else -(1.0 - pass_rate.to(logp.dtype))
    ratio = _ratio(logp, None if importance is None else _clean(importance, mask))
    loss = -cfg.negative_coef * normalized_sum(ratio * coef[:, None] * w, mask, count)
    return loss, {"loss/negative": loss.detach()}


def kl_penalty(
    logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor, count: float, cfg: AlgorithmSpec
) -> tuple[torch.Tensor, Stats]:
    """β·KL(π_θ || π_ref) with Schulman's k3 estimator, token-level over all kept tokens (count = N).

    KL = (β/N) Σ_t (exp(Δ_t) - Δ_t - 1),  Δ_t = log π_ref(y_t) - log π_θ(y_t).
    The "kl" stat is the unscaled mean k3.
    """
    delta = _clean(ref_logp, mask) - _clean(logp, mask)
    k3 = torch.exp(delta) - delta - 1.0
    kl = normalized_sum(k3, mask, count)
    loss = cfg.kl_coef * kl
    return loss, {"loss/kl": loss.detach(), "kl": kl.detach()}


def policy_gradient_loss(
    logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    count: float,
    cfg: AlgorithmSpec,
    importance: torch.Tensor | None = None,
) -> tuple[torch.Tensor, Stats]:
    """Baselines (grpo, reinforce): L_pg = -(1/N) Σ_i Σ_t w_t · ratio_t · A_i over all kept tokens
    (w_t = `importance`, 1 on-policy)."""
    logp = _clean(logp, mask)
    ratio = _ratio(logp, None if importance is None else _clean(importance, mask))
    loss = -normalized_sum(ratio * advantages[:, None].to(logp.dtype), mask, count)
    return loss, {"loss/pg": loss.detach()}


def reward_model_loss(
    scores: torch.Tensor, mask: torch.Tensor, rewards: torch.Tensor, count: float
) -> tuple[torch.Tensor, Stats]:
    """Token-level reward model (Eq. 12): BCE(σ(mean_t w_t), max(r, 0)), mean over kept sequences.

    scores [B, T] token logits w_t; rewards [B] in {+1, -1}; count = kept sequences (global).
    Rows with no unmasked token (padding micro-batches) contribute nothing.
    """
    scores = _clean(scores.float(), mask)
    valid = (mask.sum(-1) > 0).to(scores.dtype)
    logits = sequence_logits(scores, mask)
    target = (rewards > 0).to(scores.dtype)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    loss = normalized_sum(bce, valid, count)
    correct = ((logits > 0).to(scores.dtype) == target).to(scores.dtype)
    acc = normalized_sum(correct, valid, count)
    return loss, {"rm/loss": loss.detach(), "rm/accuracy": acc.detach()}


def policy_loss(batch: PolicyBatch, counts: TokenCounts, cfg: AlgorithmSpec) -> tuple[torch.Tensor, Stats]:
    """The full policy loss for one micro-batch plus additive diagnostics.

    oreal:     L+ + L- + β·KL   (or L1 + L2 + β·KL for variant=paper)
    grpo:      L_pg (group-normalised advantages) + β·KL
    reinforce: L_pg (RLOO advantages), no KL, no token weights: Table 2's first row.

    With `batch.behaviour`, the policy-gradient terms (not the KL) take the importance weights w of
    `importance.py`; the sign each row's term takes decides PPO's clip side (offPolicyCorrection: clip).
    """
    mask = batch.mask
    logp = _clean(batch.logp, mask)
    is_pos = (batch.rewards > 0)[:, None] & mask.bool()
    is_neg = (batch.rewards <= 0)[:, None] & mask.bool()
    stats: Stats = {}
    iw = None
    if batch.behaviour is not None:
        if cfg.name == "oreal" and cfg.variant == "paper":  # L1 pulls up, L2 pushes down
            direction = torch.where(batch.rewards > 0, 1.0, -1.0)
        else:
            direction = torch.sign(batch.advantages.to(logp.dtype))
        iw = importance_weights(logp, batch.behaviour, direction, mask, cfg)
        stats |= correction_stats(logp, batch.behaviour, iw, mask, counts.behaviour, cfg)
    if cfg.name == "oreal":
        ones = mask.to(logp.dtype)
        wp = batch.pos_weights if batch.pos_weights is not None else ones
        wn = batch.neg_weights if batch.neg_weights is not None else ones
        lp, sp = oreal_positive_loss(logp, batch.advantages, wp, is_pos, counts.positive, cfg, iw)
        ln, sn = oreal_negative_loss(
            logp, batch.advantages, batch.pass_rate, wn, is_neg, counts.negative, cfg, iw
        )
        loss = lp + ln
        stats |= sp | sn
        if cfg.token_weights:
            stats["omega/positive"] = normalized_sum(_clean(wp, is_pos), is_pos, counts.positive).detach()
            stats["omega/negative"] = normalized_sum(_clean(wn, is_neg), is_neg, counts.negative).detach()
    else:
        loss, s = policy_gradient_loss(logp, batch.advantages, mask, counts.total, cfg, iw)
        stats |= s
    if batch.ref_logp is not None:
        lk, sk = kl_penalty(logp, batch.ref_logp, mask, counts.total, cfg)
        stats["kl"] = sk["kl"]
        if cfg.uses_kl:
            loss = loss + lk
            stats["loss/kl"] = sk["loss/kl"]
    stats["entropy"] = normalized_sum(-logp.detach(), mask, counts.total)
    stats["loss/policy"] = loss.detach()
    return loss, stats
