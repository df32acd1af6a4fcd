"""Token weights from reward-model scores (Eq. 10 on the prefix mean)."""

import math

import pytest
import torch

from oreal.algorithm import prefix_mean, sequence_logits, token_weights


def sig(x):
    return 1 / (1 + math.exp(-x))


def test_prefix_mean_and_weights_by_hand():
    scores = torch.tensor([[2.0, -4.0, 5.0, 1e9]])  # last position is padding
    mask = torch.tensor([[1, 1, 1, 0]])
    # prefix means: 2, (2-4)/2 = -1, (2-4+5)/3 = 1
    assert prefix_mean(scores, mask).tolist() == [[2.0, -1.0, 1.0, 0.0]]
    pos, neg = token_weights(scores, mask)
    q = [sig(2.0), sig(-1.0), sig(1.0)]
    assert pos[0, :3].tolist() == pytest.approx([2 * q[0] - 1, 0.0, 2 * q[2] - 1])
    assert neg[0, :3].tolist() == pytest.approx([0.0, 1 - 2 * q[1], 0.0])
    assert pos[0, 3].item() == 0.0 and neg[0, 3].item() == 0.0
    assert sequence_logits(scores, mask).tolist() == [pytest.approx(1.0)]


def test_zero_scores_give_zero_weights_and_weights_are_detached():
    scores = torch.zeros(2, 5, requires_grad=True)
    pos, neg = token_weights(scores, torch.ones(2, 5))
    assert pos.abs().sum() == 0 and neg.abs().sum() == 0
    assert not pos.requires_grad and not neg.requires_grad
