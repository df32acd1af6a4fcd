"""From scored samples to the kept, sharded, micro-batched training set of one step.

The global batch (every prompt's n samples) is the same list on every rank. Advantages and pass
rates are computed per group before filtering (RLOO over the whole group), the filter runs with a
generator seeded by (seed, step) so every rank and every resumed run keeps the same samples, and
the kept samples are dealt to ranks longest-first, round-robin, so shards are balanced.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from oreal.algorithm import group_pass_rates, grpo_advantages, rloo_advantages, select_for_training
from oreal.trajectory import ScoredSample


@dataclass(frozen=True)
class KeptSample:
    prompt_ids: list[int]
    response_ids: list[int]
    reward: float
    advantage: float
    pass_rate: float

    @property
    def length(self) -> int:
        return len(self.prompt_ids) + len(self.response_ids)


@dataclass(frozen=True)
class PreparedBatch:
    kept: list[KeptSample]
    stats: dict[str, float]


def step_generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def prepare(
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
        )
        for i in kept_idx
    ]
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
    }
    return PreparedBatch(kept=kept, stats=stats)


def shard(kept: Sequence[KeptSample], rank: int, world_size: int) -> list[KeptSample]:
    """Longest first, dealt round-robin: rank r gets items r, r + W, r + 2W, ... (stable order)."""
    order = sorted(range(len(kept)), key=lambda i: (-kept[i].length, i))
    return [kept[i] for i in order[rank::world_size]]


def micro_batches(items: Sequence[KeptSample], size: int) -> list[list[KeptSample]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]
