"""Each loss against hand-computed numbers; padding filled with extreme values proves the masks."""

import math

import pytest
import torch

from oreal.algorithm import (
    PolicyBatch,
    TokenCounts,
    kl_penalty,
    oreal_negative_loss,
    oreal_positive_loss,
    policy_gradient_loss,
    policy_loss,
    reward_model_loss,
)
from oreal.spec.models import AlgorithmSpec

HUGE = 1e9

# Two sequences: a correct one with 2 tokens, a wrong one with 3 tokens; padding at [0, 2].
LOGP = torch.tensor([[-1.0, -2.0, HUGE], [-0.5, -1.5, -3.0]])
REF = torch.tensor([[-1.5, -2.0, -HUGE], [-0.5, -1.0, -2.0]])
MASK = torch.tensor([[1, 1, 0], [1, 1, 1]])
ADV = torch.tensor([1.5, -0.5])
REWARDS = torch.tensor([1.0, -1.0])
PASS = torch.tensor([0.25, 0.25])
WPOS = torch.tensor([[0.5, 1.0, HUGE], [0.0, 0.0, 0.0]])
WNEG = torch.tensor([[0.0, 0.0, HUGE], [0.2, 0.4, 1.0]])
POS_MASK = MASK * (REWARDS > 0)[:, None]
NEG_MASK = MASK * (REWARDS <= 0)[:, None]
COUNTS = TokenCounts(positive=2, negative=3, total=5, sequences=2)


def k3(d):
    return math.exp(d) - d - 1


def test_config_validation():
    with pytest.raises(ValueError):
        AlgorithmSpec(name="ppo")
    with pytest.raises(ValueError):
        AlgorithmSpec(variant="other")
    with pytest.raises(ValueError):
        AlgorithmSpec(kl_coef=-1)
    with pytest.raises(ValueError):
        AlgorithmSpec(negative_coef=float("nan"))
    assert not AlgorithmSpec(name="reinforce").uses_kl


def test_positive_loss_reference_and_paper():
    # reference: A * Σ ω+ (-logp) / N+ = 1.5 * (0.5*1 + 1*2) / 2 = 1.875
    loss, _ = oreal_positive_loss(LOGP, ADV, WPOS, POS_MASK, 2, AlgorithmSpec())
    assert loss.item() == pytest.approx(1.875)
    # paper (Eq. 11): no advantage factor: (0.5 + 2) / 2 = 1.25
    loss, _ = oreal_positive_loss(LOGP, ADV, WPOS, POS_MASK, 2, AlgorithmSpec(variant="paper"))
    assert loss.item() == pytest.approx(1.25)
    # no token weights: 1.5 * (1 + 2) / 2 = 2.25
    loss, _ = oreal_positive_loss(LOGP, ADV, WPOS, POS_MASK, 2, AlgorithmSpec(token_weights=False))
    assert loss.item() == pytest.approx(2.25)


def test_negative_loss_values_and_gradient():
    logp = LOGP.clone().requires_grad_(True)
    # reference: -η Σ ratio·A·ω- / N- = -0.5 * (-0.5)(0.2 + 0.4 + 1.0) / 3 = 0.4/3
    loss, _ = oreal_negative_loss(logp, ADV, PASS, WNEG, NEG_MASK, 3, AlgorithmSpec())
    assert loss.item() == pytest.approx(0.4 / 3)
    loss.backward()
    # d/dlogp_t = -η A ω-_t / N- = 0.5*0.5*ω/3, zero on every other position (including padding)
    expected = torch.tensor([[0.0, 0.0, 0.0], [0.25 * 0.2 / 3, 0.25 * 0.4 / 3, 0.25 * 1.0 / 3]])
    assert torch.allclose(logp.grad, expected)
    # paper: -η Σ ratio·(1-p)(-1)·ω- / N- = 0.5 * 0.75 * 1.6 / 3 = 0.2
    loss, _ = oreal_negative_loss(LOGP, ADV, PASS, WNEG, NEG_MASK, 3, AlgorithmSpec(variant="paper"))
    assert loss.item() == pytest.approx(0.2)


def test_kl_k3_by_hand():
    # Δ = ref - logp: [-0.5, 0] and [0, 0.5, 1.0]; padding Δ would be -2e9 (ignored)
    expected_kl = (k3(-0.5) + 0 + 0 + k3(0.5) + k3(1.0)) / 5
    loss, stats = kl_penalty(LOGP, REF, MASK, 5, AlgorithmSpec(kl_coef=0.01))
    assert stats["kl"].item() == pytest.approx(expected_kl)
    assert loss.item() == pytest.approx(0.01 * expected_kl)


def test_policy_gradient_loss_by_hand():
    # -(1/N) Σ A_i Σ_t ratio = -(1.5*2 + (-0.5)*3)/5 = -0.3
    loss, _ = policy_gradient_loss(LOGP, ADV, MASK, 5, AlgorithmSpec(name="grpo"))
    assert loss.item() == pytest.approx(-0.3)


def test_reward_model_loss_by_hand():
    scores = torch.tensor([[1.0, 3.0, HUGE], [0.5, -0.5, -3.0], [HUGE, HUGE, HUGE]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1], [0, 0, 0]])  # third row: padding sequence
    rewards = torch.tensor([1.0, -1.0, 1.0])
    # seq logits: 2 and -1; BCE(2, 1) = log(1+e^-2); BCE(-1, 0) = log(1+e^-1)
    loss, stats = reward_model_loss(scores, mask, rewards, 2)
    assert loss.item() == pytest.approx((math.log1p(math.exp(-2)) + math.log1p(math.exp(-1))) / 2)
    assert stats["rm/accuracy"].item() == pytest.approx(1.0)


def _batch(logp, **kw):
    return PolicyBatch(
        logp=logp,
        mask=MASK,
        advantages=ADV,
        rewards=REWARDS,
        pass_rate=PASS,
        ref_logp=REF,
        pos_weights=WPOS,
        neg_weights=WNEG,
        **kw,
    )


def test_full_oreal_loss_is_sum_of_parts_and_finite_with_extreme_padding():
    logp = LOGP.clone().requires_grad_(True)
    loss, stats = policy_loss(_batch(logp), COUNTS, AlgorithmSpec())
    kl = (k3(-0.5) + k3(0.5) + k3(1.0)) / 5
    assert loss.item() == pytest.approx(1.875 + 0.4 / 3 + 0.01 * kl)
    loss.backward()
    assert torch.isfinite(logp.grad).all() and logp.grad[0, 2] == 0
    assert stats["omega/positive"].item() == pytest.approx(1.5 / 2)
    assert stats["omega/negative"].item() == pytest.approx(1.6 / 3)
    assert stats["entropy"].item() == pytest.approx((1 + 2 + 0.5 + 1.5 + 3) / 5)


def test_reinforce_has_no_kl_and_grpo_has_kl():
    loss_r, stats_r = policy_loss(_batch(LOGP), COUNTS, AlgorithmSpec(name="reinforce"))
    loss_g, _ = policy_loss(_batch(LOGP), COUNTS, AlgorithmSpec(name="grpo"))
    assert loss_r.item() == pytest.approx(-0.3)
    assert loss_g.item() == pytest.approx(-0.3 + 0.01 * stats_r["kl"].item())


def test_sharded_batch_sums_to_full_batch_loss_and_gradient():
    """Split the batch across 'ranks' row by row: summed losses and grads equal the full batch's."""
    cfg = AlgorithmSpec()
    full_logp = LOGP.clone().requires_grad_(True)
    full, _ = policy_loss(_batch(full_logp), COUNTS, cfg)
    full.backward()
    total = 0.0
    grads = []
    for row in range(2):
        logp = LOGP[row : row + 1].clone().requires_grad_(True)
        shard = PolicyBatch(
            logp=logp,
            mask=MASK[row : row + 1],
            advantages=ADV[row : row + 1],
            rewards=REWARDS[row : row + 1],
            pass_rate=PASS[row : row + 1],
            ref_logp=REF[row : row + 1],
            pos_weights=WPOS[row : row + 1],
            neg_weights=WNEG[row : row + 1],
        )
        loss, _ = policy_loss(shard, COUNTS, cfg)
        loss.backward()
        total += loss.item()
        grads.append(logp.grad)
    assert total == pytest.approx(full.item())
    assert torch.allclose(torch.cat(grads), full_logp.grad)
