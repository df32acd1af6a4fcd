"""Token weights from reward-model scores (Eq. 10 on the prefix mean): the released code's
threshold_rescale and topk_rescale, checked against hand-computed weights."""

import math

import pytest
import torch

from oreal.algorithm import prefix_mean, sequence_logits, token_weights
from oreal.algorithm.token_weights import topk_rescale


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


def test_threshold_is_the_default_and_equals_the_released_threshold_rescale():
    scores = torch.tensor([[0.5, -1.5, 3.0, 7.0]])
    mask = torch.tensor([[1, 1, 1, 1]])
    q = torch.sigmoid(prefix_mean(scores, mask))
    pos, neg = token_weights(scores, mask, "threshold")
    # released: threshold_rescale(p, 0.5) = clamp((p - 0.5) / 0.5, 0, 1), on q for ω+ and 1 - q for ω-
    assert pos[0].tolist() == pytest.approx(((q - 0.5) / 0.5).clamp(0, 1)[0].tolist())
    assert neg[0].tolist() == pytest.approx(((0.5 - q) / 0.5).clamp(0, 1)[0].tolist())
    assert torch.equal(token_weights(scores, mask)[0], pos)


def test_topk_rescale_by_hand():
    prob = torch.tensor(
        [
            [0.2, 0.9, 0.5, 0.7, 0.6, 9.0],  # 5 tokens (last is padding): k = floor(0.6 * 5) = 3
            [0.3, 0.8, 0.0, 0.0, 0.0, 0.0],  # 2 tokens: k = floor(1.2) = 1, a lone top token gets 1
            [0.4, 0.4, 0.4, 0.4, 0.0, 0.0],  # 4 equal tokens: k = 2, the first two (ties by position) get 1
            [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],  # no token
        ]
    )
    mask = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0], [0, 0, 0, 0, 0, 0]])
    w = topk_rescale(prob, mask, 0.6)
    # row 0: top 3 are 0.9, 0.7, 0.6 -> (p - 0.6) / (0.9 - 0.6): 1, 1/3, 0; the rest 0
    assert w[0].tolist() == pytest.approx([0.0, 1.0, 0.0, 1 / 3, 0.0, 0.0])
    assert w[1].tolist() == [0.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    assert w[2].tolist() == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    assert w[3].tolist() == [0.0] * 6


def test_topk_keeps_at_least_one_token_and_rejects_bad_ratios():
    prob = torch.tensor([[0.1, 0.7, 0.3]])
    mask = torch.ones(1, 3)
    # floor(0.25 * 3) = 0: the released code would call topk with k = 0; here the best token gets 1
    assert topk_rescale(prob, mask, 0.25).tolist() == [[0.0, 1.0, 0.0]]
    # ratio 1: plain min-max over the whole sequence
    assert topk_rescale(prob, mask, 1.0).tolist()[0] == pytest.approx([0.0, 1.0, 1 / 3])
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(ValueError, match="ratio"):
            topk_rescale(prob, mask, bad)
    with pytest.raises(ValueError, match="unknown token weighting"):
        token_weights(prob, mask, "softmax")


def test_topk_weights_from_scores_by_hand():
    # prefix means 2, -1, 1, 0.5 -> q = σ(2), σ(-1), σ(1), σ(0.5); k = floor(0.5 * 4) = 2
    scores = torch.tensor([[2.0, -4.0, 5.0, -1.0, 1e9]])
    mask = torch.tensor([[1, 1, 1, 1, 0]])
    pos, neg = token_weights(scores, mask, "topk", topk_ratio=0.5)
    q = [sig(2.0), sig(-1.0), sig(1.0), sig(0.5)]
    # ω+: the two highest q are t0 (σ(2)) and t2 (σ(1)): t0 -> 1, t2 -> 0
    assert pos[0].tolist() == pytest.approx([1.0, 0.0, 0.0, 0.0, 0.0])
    # ω-: the two highest 1 - q are t1 (1 - σ(-1)) and t3 (1 - σ(0.5)): t1 -> 1, t3 -> 0
    assert neg[0].tolist() == pytest.approx([0.0, 1.0, 0.0, 0.0, 0.0])
    # with k = 3 the middle one is rescaled: ω+ at t2 = (σ(1) - σ(0.5)) / (σ(2) - σ(0.5))
    pos3, _ = token_weights(scores, mask, "topk", topk_ratio=0.75)
    assert pos3[0].tolist() == pytest.approx([1.0, 0.0, (q[2] - q[3]) / (q[0] - q[3]), 0.0, 0.0])
    assert not pos3.requires_grad
