"""Importance weights for samples the current weights did not draw, and the rollout/trainer mismatch.

Shapes as in `losses.py`: B sequences, T response positions; `logp` [B, T] is log π_θ(y_t) under the
weights being trained, `behaviour.logp` [B, T] log μ(y_t) as the rollout engine reported it when it
sampled y (raw model, temperature 1: `oreal.engines.base.Generation`), `mask` [B, T].

Two reasons why μ ≠ π_θ:
- staleness (`spec.algorithm.maxStaleness` > 0): rollout for step k may sample with policy v(k-s),
  while the trainer holds v(k). A row is *stale* when its policy version is older than the step;
- mismatch: even with the same version, the engine's numerics (bf16, vLLM kernels, batch shapes)
  give log-probs that differ from the trainer's.

Per token r_t = π_θ(y_t)/μ(y_t) = exp(sg(log π_θ) - log μ). Every policy-gradient term of the loss
(`losses.py`) has the form  Σ_t w_t · ratio_t · c_t  with ratio_t = exp(log π_θ - sg(log π_θ)) (value
1, gradient ∇ log π_θ), c_t the term's coefficient (advantage times token weight) and w_t the detached
weight defined here, so its gradient is  Σ_t w_t c_t ∇ log π_θ(y_t):

    on-policy (today's exact form):   w_t = 1
    truncate (truncated IS):          w_t = min(r_t, C)
    clip (PPO):                       w_t = r_t  if c_t >= 0 and r_t <= 1+ε,  or c_t < 0 and 1-ε <= r_t <= C
                                      w_t = 0    otherwise
    mismatch correction (fresh rows): w_t = min(r_t, C)                   (Yao et al. 2025, "TIS")

C = `importanceCap`, ε = `clipRange`. `clip` gives exactly the gradient of PPO's clipped surrogate
min(r c, clip(r, 1-ε, 1+ε) c) (Schulman et al. 2017) with π_old = μ, plus the dual clip max(·, C c)
for c < 0 (Ye et al. 2020), at the one optimiser step the trainer takes per batch (the value differs:
a clipped token counts 0 instead of a constant). The bound: no token's term ever carries more than
C times its on-policy weight, in either mode.

Why truncate is the default: with one optimiser step per rollout batch there is no inner loop for
PPO's trust region to guard; its clip only discards the tokens the previous update already moved
(r > 1+ε with c > 0), which is where a stale sample's correction matters most. Truncated IS keeps
every token's gradient, exactly unbiased for r <= C, and bounds the variance (Espeholt et al. 2018,
IMPALA's ρ̄; Yao et al. 2025 and verl/OpenRLHF's token-level TIS use C = 2). One version of
staleness at the paper's learning rates keeps r close to 1 (measured: `benchmarks/staleness.py`).

The weight is per token, not the sequence product Π_t r_t: it corrects the distribution of each
token given its prefix, not of the prefixes themselves, as PPO does (exact for one-token answers,
first order in the policy change otherwise; tests/algorithm/test_importance.py checks both by Monte
Carlo). The engines report raw log-probs: with temperature ≠ 1 or top-p < 1 the sampling
distribution is a transform of μ, and r is the ratio of the raw models (approximate there).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from oreal.algorithm.reduction import normalized_sum
from oreal.spec.models import AlgorithmSpec

Stats = dict[str, torch.Tensor]

# exp() of a log-ratio above this is never needed (C <= 100 < e^30) and would overflow in products.
MAX_LOG_RATIO = 30.0


@dataclass
class Behaviour:
    """What sampled each row: log μ(y_t) [B, T], whether the row has it for every token [B] (bool),
    and whether it came from an older policy version than the weights being trained [B] (bool)."""

    logp: torch.Tensor
    known: torch.Tensor
    stale: torch.Tensor


@dataclass(frozen=True)
class BehaviourCounts:
    """Global counts of tokens and non-empty sequences in rows with known behaviour log-probs:
    on-policy rows (the mismatch) and stale rows (the off-policy correction)."""

    on_policy_tokens: float = 0.0
    on_policy_sequences: float = 0.0
    stale_tokens: float = 0.0
    stale_sequences: float = 0.0


def _clean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask.bool(), x, torch.zeros_like(x))


def log_ratio(logp: torch.Tensor, behaviour: Behaviour, mask: torch.Tensor) -> torch.Tensor:
    """sg(log π_θ) - log μ on unmasked tokens of known rows, 0 elsewhere, at most MAX_LOG_RATIO. [B, T]"""
    valid = mask.bool() & behaviour.known[:, None]
    diff = _clean(logp.detach(), valid) - _clean(behaviour.logp.to(logp.dtype), valid)
    return diff.clamp(max=MAX_LOG_RATIO)


def corrected_rows(behaviour: Behaviour, cfg: AlgorithmSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """(truncated, clipped) [B] bool: the rows weighted by min(r, C) and the rows PPO-clipped.

    Stale rows follow `offPolicyCorrection` (none: neither); fresh rows are truncated only with
    `mismatchCorrection`. Rows without behaviour log-probs are never corrected.
    """
    stale = behaviour.stale & behaviour.known
    fresh = ~behaviour.stale & behaviour.known
    mode = cfg.off_policy_correction
    truncated = (stale & (mode == "truncate")) | (fresh & cfg.mismatch_correction)
    clipped = stale & (mode == "clip")
    return truncated, clipped


def importance_weights(
    logp: torch.Tensor,
    behaviour: Behaviour | None,
    direction: torch.Tensor,
    mask: torch.Tensor,
    cfg: AlgorithmSpec,
) -> torch.Tensor:
    """The detached weight w_t of every token (module docstring); 1 wherever no correction applies.

    `direction` [B]: the sign of each row's coefficient c (advantage sign; the clip depends on it).
    """
    ones = torch.ones_like(logp, dtype=logp.dtype).detach()
    if behaviour is None:
        return ones
    truncated, clipped = corrected_rows(behaviour, cfg)
    r = torch.exp(log_ratio(logp, behaviour, mask))
    cap = cfg.importance_cap
    eps = cfg.clip_range
    up = (direction >= 0)[:, None]
    inside = torch.where(up, r <= 1.0 + eps, (r >= 1.0 - eps) & (r <= cap))
    clip_w = torch.where(inside, r, torch.zeros_like(r))
    w = torch.where(truncated[:, None], r.clamp(max=cap), ones)
    w = torch.where(clipped[:, None], clip_w, w)
    return _clean(w, mask).detach()


def correction_stats(
    logp: torch.Tensor,
    behaviour: Behaviour | None,
    weights: torch.Tensor,
    mask: torch.Tensor,
    counts: BehaviourCounts,
    cfg: AlgorithmSpec,
) -> Stats:
    """Additive diagnostics (shares of global means, like every loss stat):

    mismatch/abs_logp   mean_t |log π_θ(y_t) - log μ(y_t)| over on-policy rows' tokens
    mismatch/kl         mean over on-policy sequences of Σ_t (r_t - 1 - log r_t): Schulman's k3 per
                        token, an unbiased, non-negative estimate of the sequence-level KL(μ || π_θ)
                        for y ~ μ (the KL chain rule sums the per-token KLs along the sequence)
    offpolicy/abs_logp, offpolicy/kl    the same over stale rows (staleness and mismatch together)
    offpolicy/ratio     mean r_t over stale rows' tokens, before any bound
    offpolicy/bounded   fraction of stale rows' tokens whose weight the bound changed (w_t ≠ r_t)
    mismatch/bounded    the same for on-policy rows, with mismatchCorrection
    """
    if behaviour is None:
        return {}
    lr = log_ratio(logp, behaviour, mask)
    r = torch.exp(lr)
    k3 = r - 1.0 - lr
    m = mask.bool() & behaviour.known[:, None]
    stale_tokens = m & behaviour.stale[:, None]
    fresh_tokens = m & ~behaviour.stale[:, None]
    bounded = ((weights - r).abs() > 1e-6 * r.clamp(min=1.0)).to(r.dtype)
    out: Stats = {}
    for name, rows, n_tok, n_seq in (
        ("mismatch", fresh_tokens, counts.on_policy_tokens, counts.on_policy_sequences),
        ("offpolicy", stale_tokens, counts.stale_tokens, counts.stale_sequences),
    ):
        if n_tok <= 0:
            continue
        out[f"{name}/abs_logp"] = normalized_sum(lr.abs(), rows, n_tok).detach()
        out[f"{name}/kl"] = normalized_sum(k3, rows, n_seq).detach()
    if counts.stale_tokens > 0:
        out["offpolicy/ratio"] = normalized_sum(r, stale_tokens, counts.stale_tokens).detach()
        if cfg.off_policy_correction != "none":
            out["offpolicy/bounded"] = normalized_sum(bounded, stale_tokens, counts.stale_tokens).detach()
    if cfg.mismatch_correction and counts.on_policy_tokens > 0:
        out["mismatch/bounded"] = normalized_sum(bounded, fresh_tokens, counts.on_policy_tokens).detach()
    return out
