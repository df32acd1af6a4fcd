"""Advantages, filtering and resampling on hand-built groups."""

import math

import pytest
import torch

from oreal.algorithm import (
    group_pass_rates,
    grpo_advantages,
    resample_by_pass_rate,
    rloo_advantages,
    select_for_training,
)
from oreal.trajectory import Prompt

# Two prompts of n = 4 samples: group 0 has 1 correct (p = 1/4), group 1 has 3 correct (p = 3/4).
REWARDS = torch.tensor([1.0, -1.0, -1.0, -1.0, 1.0, 1.0, -1.0, 1.0])
GROUPS = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])


def test_pass_rates():
    assert group_pass_rates(REWARDS, GROUPS, 2).tolist() == [0.25, 0.75]


def test_rloo_matches_hand_computation_and_closed_form():
    adv = rloo_advantages(REWARDS, GROUPS, 2)
    # group 0, correct: 1 - mean(-1,-1,-1) = 2; wrong: -1 - mean(1,-1,-1) = -1 + 1/3 = -2/3
    # group 1, correct: 1 - mean(1,-1,1) = 1 - 1/3 = 2/3; wrong: -1 - mean(1,1,1) = -2
    expected = [2, -2 / 3, -2 / 3, -2 / 3, 2 / 3, 2 / 3, -2, 2 / 3]
    assert adv.tolist() == pytest.approx(expected)
    n = 4
    for p, correct, wrong in ((0.25, adv[0], adv[1]), (0.75, adv[4], adv[6])):
        assert correct.item() == pytest.approx(2 * n * (1 - p) / (n - 1))  # 2n(1-p)/(n-1)
        assert wrong.item() == pytest.approx(-2 * n * p / (n - 1))  # -2np/(n-1)


def test_rloo_single_sample_group_has_zero_advantage():
    assert rloo_advantages(torch.tensor([1.0]), torch.tensor([0]), 1).tolist() == [0.0]


def test_grpo_matches_hand_computation():
    adv = grpo_advantages(REWARDS, GROUPS, 2)
    # group 0: mean = -0.5, unbiased var = (1.5^2 + 3 * 0.5^2)/3 = 1, std = 1
    # correct: 1.5 / 1, wrong: -0.5 / 1 (eps 1e-8 is negligible)
    assert adv[:4].tolist() == pytest.approx([1.5, -0.5, -0.5, -0.5])
    assert adv[4:].tolist() == pytest.approx([0.5, 0.5, -1.5, 0.5])
    uniform = grpo_advantages(torch.tensor([1.0, 1.0]), torch.tensor([0, 0]), 1)
    assert uniform.tolist() == [0.0, 0.0] and not uniform.isnan().any()


def test_filter_drops_uniform_groups_and_keeps_one_each():
    rewards = torch.tensor([1.0, 1.0, 1.0, -1.0, -1.0, -1.0, 1.0, -1.0, -1.0, 1.0])
    groups = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 2])  # p = 1, p = 0, p = 1/2
    kept = select_for_training(
        rewards, groups, 3, keep=1, drop_uniform=True, generator=torch.Generator().manual_seed(0)
    )
    assert groups[kept].tolist() == [2, 2]
    assert sorted(rewards[kept].tolist()) == [-1.0, 1.0]


def test_filter_keep_all_and_no_drop():
    kept = select_for_training(REWARDS, GROUPS, 2, keep=None, drop_uniform=False)
    assert kept.tolist() == list(range(8))
    kept = select_for_training(
        REWARDS, GROUPS, 2, keep=2, drop_uniform=True, generator=torch.Generator().manual_seed(1)
    )
    # group 0: 1 correct + 2 of 3 wrong; group 1: 2 of 3 correct + 1 wrong
    assert (REWARDS[kept][GROUPS[kept] == 0] > 0).sum() == 1 and (GROUPS[kept] == 0).sum() == 3
    assert (REWARDS[kept][GROUPS[kept] == 1] > 0).sum() == 2 and (GROUPS[kept] == 1).sum() == 3


def test_filter_is_deterministic_given_seed_and_varies_with_it():
    rewards = torch.tensor([1.0] * 8 + [-1.0] * 8)
    groups = torch.zeros(16, dtype=torch.long)

    def pick(seed):
        return select_for_training(
            rewards, groups, 1, keep=1, drop_uniform=True, generator=torch.Generator().manual_seed(seed)
        ).tolist()

    assert pick(3) == pick(3)
    assert len({tuple(pick(s)) for s in range(10)}) > 1


def test_resample_buckets():
    prompts = [
        Prompt(str(i), "q", "a", pass_rate=p) for i, p in enumerate([0.0, 0.19, 0.2, 0.5, 0.7, 0.8, 1.0])
    ]
    prompts.append(Prompt("none", "q", "a"))
    out = resample_by_pass_rate(prompts)
    counts = {pid: sum(1 for q in out if q.prompt_id == pid) for pid in [p.prompt_id for p in prompts]}
    assert counts == {"0": 6, "1": 6, "2": 4, "3": 4, "4": 2, "5": 0, "6": 0, "none": 1}
    assert math.isclose(len(out), 6 + 6 + 4 + 4 + 2 + 1)
