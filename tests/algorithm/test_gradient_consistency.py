"""Paper §2.3, gradient consistency, checked by Monte Carlo on a toy categorical policy.

Each prompt x has a categorical policy π_x = softmax(θ_x) over K answers, some of them correct, so
the expected reward is p_x = Σ_{y correct} π_x(y) and the true gradient of Σ_x p_x is known exactly.
Per prompt we draw a best-of-n group, clone its correct samples (summed, divided by n) and push down
its wrong samples with the paper's reshaped reward (1-p̂)·R, both through the real loss functions.
The summed gradient over prompts of very different difficulty must point along ∇ Σ_x p_x; with
unshaped negatives (R = -1) each prompt is weighted by 1 + η/(1-p_x) and it does not.

This is the per-group normalisation of the paper's argument, not the trainer's default batch (global
token counts, 1 correct + 1 wrong sample per prompt), under which the property does not hold exactly;
see the docstring of oreal_negative_loss.
"""

import torch

from oreal.algorithm import oreal_negative_loss, oreal_positive_loss
from oreal.spec.models import AlgorithmSpec

CORRECT = [torch.tensor([1, 0, 0, 0, 0]), torch.tensor([1, 1, 0, 0, 0]), torch.tensor([1, 1, 1, 1, 0])]
THETA = torch.tensor([[0.0, 0.5, 0.2, 0.1, -0.3], [0.3, -0.2, 0.4, 0.0, 0.1], [0.8, 0.6, 0.7, 0.9, -0.5]])
N = 8
TRIALS = 600
CFG = AlgorithmSpec(variant="paper", negative_coef=1.0, token_weights=False)


def true_gradient() -> torch.Tensor:
    theta = THETA.clone().requires_grad_(True)
    probs = torch.softmax(theta, -1)
    expected_reward = sum((probs[x] * CORRECT[x]).sum() for x in range(len(CORRECT)))
    (grad,) = torch.autograd.grad(expected_reward, theta)
    return grad


def estimated_gradient(reshape: bool, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    theta = THETA.clone().requires_grad_(True)
    total = torch.zeros(())
    for x in range(len(CORRECT)):
        logprobs = torch.log_softmax(theta[x], -1)
        draws = torch.multinomial(torch.softmax(THETA[x], -1), N * TRIALS, replacement=True, generator=gen)
        draws = draws.view(TRIALS, N)
        for t in range(TRIALS):
            y = draws[t]
            r = CORRECT[x][y].float() * 2 - 1
            logp = logprobs[y][:, None]  # [n, 1]: n one-token "sequences"
            pos = (r > 0)[:, None]
            neg = (r <= 0)[:, None]
            p_hat = (r > 0).float().mean()
            pass_rate = p_hat.expand(N) if reshape else torch.zeros(N)  # (1 - 0)·R = R: unshaped
            lp, _ = oreal_positive_loss(logp, r, torch.ones_like(logp), pos, N, CFG)
            ln, _ = oreal_negative_loss(logp, r, pass_rate, torch.ones_like(logp), neg, int(neg.sum()), CFG)
            total = total + (lp + ln) / TRIALS
    (grad,) = torch.autograd.grad(-total, theta)  # ascent direction
    return grad


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0).item()


def test_reshaped_negatives_follow_true_gradient_unshaped_do_not():
    true = true_gradient()
    shaped = estimated_gradient(reshape=True)
    unshaped = estimated_gradient(reshape=False)
    # shaped: E = (1 + η) ∇p per prompt, i.e. 2 ∇ Σ p_x
    assert cosine(shaped, true) > 0.99
    assert torch.allclose(shaped, 2 * true, atol=0.03)
    # unshaped: prompt x is weighted by 1 + η·P(some wrong sample)/(1-p_x), which differs across prompts
    p = torch.stack([(torch.softmax(THETA[x], -1) * CORRECT[x]).sum() for x in range(3)])
    predicted = true * (1 + (1 - p**N) / (1 - p))[:, None]
    assert cosine(unshaped, predicted) > 0.99
    assert cosine(unshaped, true) < 0.97
    assert cosine(unshaped, true) < cosine(shaped, true) - 0.02
