"""From scored samples to the kept, sharded, micro-batched training set of one step.

The global batch (every prompt's n samples) is the same list on every rank. Advantages and pass
rates are computed per group before filtering (RLOO over the whole group), the filter runs with a
generator seeded by (seed, step) so every rank and every resumed run keeps the same samples, and
the kept samples are dealt to ranks longest-first, round-robin, so shards are balanced.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from oreal.algorithm import (
    Behaviour,
    BehaviourCounts,
    group_pass_rates,
    grpo_advantages,
    rloo_advantages,
    select_for_training,
)
from oreal.trajectory import ScoredSample


@dataclass(frozen=True)
class KeptSample:
    prompt_ids: list[int]
    response_ids: list[int]
    reward: float
    advantage: float
    pass_rate: float
    # log μ(y_t) of each response token as the rollout engine sampled it (empty: the engine gave none)
    logprobs: list[float] = field(default_factory=list)
    staleness: int = 0  # policy versions between the weights being trained and the sampling policy

    @property
    def length(self) -> int:
        return len(self.prompt_ids) + len(self.response_ids)

    @property
    def has_logprobs(self) -> bool:
        """A finite behaviour log-prob for every response token (what an importance weight needs)."""
        return (
            bool(self.response_ids)
            and len(self.logprobs) == len(self.response_ids)
            and all(math.isfinite(x) for x in self.logprobs)
        )


@dataclass(frozen=True)
class PreparedBatch:
    kept: list[KeptSample]
    stats: dict[str, float]


def step_generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def prepare_batch(
    samples: Sequence[ScoredSample],
    *,
    advantage: str,
    keep: int | None,
    drop_uniform: bool,
    seed: int,
    step: int,
) -> PreparedBatch:
    group_of: dict[str, int] = {}
    for s in samples:
        group_of.setdefault(s.sample.prompt_id, len(group_of))
    num_groups = len(group_of)
    rewards = torch.tensor([s.reward for s in samples], dtype=torch.float64)
    groups = torch.tensor([group_of[s.sample.prompt_id] for s in samples], dtype=torch.long)
    if advantage == "grpo":
        adv = grpo_advantages(rewards, groups, num_groups)
    elif advantage == "rloo":
        adv = rloo_advantages(rewards, groups, num_groups)
    else:
        raise ValueError(f"unknown advantage estimator {advantage!r}")
    pass_rates = group_pass_rates(rewards, groups, num_groups)
    kept_idx = select_for_training(
        rewards,
        groups,
        num_groups,
        keep=keep,
        drop_uniform=drop_uniform,
        generator=step_generator(seed, step),
    ).tolist()
    kept = [
        KeptSample(
            prompt_ids=list(samples[i].sample.prompt_token_ids),
            response_ids=list(samples[i].sample.response_token_ids),
            reward=float(rewards[i]),
            advantage=float(adv[i]),
            pass_rate=float(pass_rates[groups[i]]),
            logprobs=list(samples[i].sample.logprobs),
            staleness=max(0, step - samples[i].sample.policy_version),
        )
        for i in kept_idx
    ]
    stale = [k for k in kept if k.staleness > 0]
    n = max(len(samples), 1)
    stats = {
        "pass_rate": float((rewards > 0).double().mean()) if len(samples) else 0.0,
        "reward": float(rewards.mean()) if len(samples) else 0.0,
        "groups": float(num_groups),
        "groups/all_correct": float((pass_rates == 1).sum()),
        "groups/all_wrong": float((pass_rates == 0).sum()),
        "kept_groups": float(len({int(groups[i]) for i in kept_idx})),
        "kept_samples": float(len(kept)),
        "response_length": sum(len(s.sample.response_token_ids) for s in samples) / n,
        "truncated": sum(1.0 for s in samples if s.sample.truncated) / n,
        # versions behind the weights being trained (0 on-policy; at most spec maxStaleness)
        "staleness": sum(max(0, step - s.sample.policy_version) for s in samples) / n,
        "stale_samples": float(len(stale)),  # kept samples from an older policy version
        "stale_uncorrected": float(sum(1 for k in stale if not k.has_logprobs)),  # no log-probs
    }
    return PreparedBatch(kept=kept, stats=stats)


def behaviour_counts(kept: Sequence[KeptSample]) -> BehaviourCounts:
    """Tokens and non-empty sequences of the rows with behaviour log-probs, on-policy and stale
    (the global batch: every rank holds it, so no all-reduce is needed)."""
    on = [k for k in kept if k.has_logprobs and k.staleness == 0]
    stale = [k for k in kept if k.has_logprobs and k.staleness > 0]
    return BehaviourCounts(
        on_policy_tokens=float(sum(len(k.response_ids) for k in on)),
        on_policy_sequences=float(len(on)),
        stale_tokens=float(sum(len(k.response_ids) for k in stale)),
        stale_sequences=float(len(stale)),
    )


def behaviour(chunk: Sequence[KeptSample], width: int, device: torch.device) -> Behaviour:
    """The rollout's log-probs of a micro-batch, right-padded to `width` response positions like
    `collate`'s, with each row's known/stale flags (a row without usable log-probs is never corrected)."""
    logp = torch.zeros((len(chunk), width), dtype=torch.float32)
    for i, k in enumerate(chunk):
        if k.has_logprobs:
            logp[i, : len(k.logprobs)] = torch.tensor(k.logprobs, dtype=torch.float32)
    known = torch.tensor([k.has_logprobs for k in chunk], dtype=torch.bool)
    stale = torch.tensor([k.staleness > 0 for k in chunk], dtype=torch.bool)
    return Behaviour(logp=logp.to(device), known=known.to(device), stale=stale.to(device))


def shard(kept: Sequence[KeptSample], rank: int, world_size: int) -> list[KeptSample]:
    """Longest first, dealt round-robin: rank r gets items r, r + W, r + 2W, ... (stable order)."""
    order = sorted(range(len(kept)), key=lambda i: (-kept[i].length, i))
    return [kept[i] for i in order[rank::world_size]]


def micro_batches(items: Sequence[KeptSample], size: int) -> list[list[KeptSample]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]
