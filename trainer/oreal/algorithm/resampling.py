"""Prompt resampling by pass-rate bucket (the released code's `data_difficulty_balance_cfg`).

Prompts with a known pass rate (of the initial policy) are repeated by difficulty: hard prompts
more often, easy ones less, and prompts the policy almost always solves (p >= 0.8) are dropped.
Prompts without a pass rate are kept once.
"""

from __future__ import annotations

from collections.abc import Sequence

from oreal.trajectory import Prompt

# (low, high, repeats): pass rate in [low, high) is repeated `repeats` times; uncovered rates are dropped.
DEFAULT_BUCKETS: tuple[tuple[float, float, int], ...] = (
    (0.0, 0.2, 6),
    (0.2, 0.4, 4),
    (0.4, 0.6, 4),
    (0.6, 0.8, 2),
)


def resample_by_pass_rate(
    prompts: Sequence[Prompt],
    buckets: Sequence[tuple[float, float, int]] = DEFAULT_BUCKETS,
) -> list[Prompt]:
    """Repeat each prompt by its pass-rate bucket, keeping the input order (repeats stay adjacent).

    Deterministic: shuffling belongs to the caller's seeded sampler.
    """
    for low, high, repeats in buckets:
        if not (low < high) or repeats < 0:
            raise ValueError(f"bad bucket ({low}, {high}, {repeats})")
    out: list[Prompt] = []
    for prompt in prompts:
        if prompt.pass_rate is None:
            out.append(prompt)
            continue
        for low, high, repeats in buckets:
            if low <= prompt.pass_rate < high:
                out.extend([prompt] * repeats)
                break
    return out
