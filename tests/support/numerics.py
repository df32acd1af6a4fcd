"""Comparing two computations of the same training update with tolerances from the arithmetic.

Two correct ways of computing one step (micro-batches of another size, compiled layers, two ranks
instead of one) add the same fp32 numbers in another order. Each gradient then differs by at most
about n·u of the magnitudes it sums, u = 2^-24 ≈ 6e-8 the fp32 unit roundoff and n the longest
reduction (tiny test models: n ≲ 10^3, so ≲ 6e-5 worst case, ~√n·u ≈ 2e-6 typically).

AdamW does not keep that bound: its update m̂/(√v̂ + ε) is ≈ sign(g) on the first step, so a
coordinate whose gradient sums to within rounding of zero can move by ±lr in one run and ∓lr in
the other, however small the noise. How many such coordinates a model has depends on the CPU's
kernels, so a tolerance on weights after AdamW is a number fitted to one machine. Tests that
compare update paths therefore step with `LinearSGD` (w ← w − lr·(g + wd·w)): the update is linear
in the gradient, the difference in weights is lr·|Δg|, and `assert_same_update` checks it against
the bound above with room to spare (1e-4 of how far the step moved each tensor). A dropped
micro-batch or a wrong normalisation is off by tens of percent.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping

import torch

# Worst-case relative difference of two summation orders over the tiny models' reductions
# (n·u with n ≈ 10^3), rounded up.
SAME_UPDATE_RTOL = 1e-4


class LinearSGD(torch.optim.SGD):
    """Stand-in for torch.optim.AdamW with its constructor's signature: plain SGD with L2 decay."""

    def __init__(self, params, lr: float, betas=(0.9, 0.999), weight_decay: float = 0.0, **_ignored) -> None:
        super().__init__(params, lr=lr, weight_decay=weight_decay)


def use_linear_sgd(monkeypatch=None) -> None:
    """Replace AdamW by LinearSGD for the trainer's engines (through `monkeypatch` when given).

    DeepSpeed's ZeRO accepts only optimiser types it lists (read when it is imported): LinearSGD is
    added to that list when DeepSpeed is already loaded.
    """
    zero = sys.modules.get("deepspeed.runtime.zero.utils")
    allowed = [*zero.ZERO_SUPPORTED_OPTIMIZERS, LinearSGD] if zero is not None else None
    if monkeypatch is not None:
        monkeypatch.setattr(torch.optim, "AdamW", LinearSGD)
        if zero is not None:
            monkeypatch.setattr(zero, "ZERO_SUPPORTED_OPTIMIZERS", allowed)
    else:  # a worker process of a test: nothing to restore
        torch.optim.AdamW = LinearSGD
        if zero is not None:
            zero.ZERO_SUPPORTED_OPTIMIZERS = allowed


def assert_same_update(
    start: Mapping[str, torch.Tensor],
    weights_a: Mapping[str, torch.Tensor],
    weights_b: Mapping[str, torch.Tensor],
    rtol: float = SAME_UPDATE_RTOL,
) -> None:
    """Every tensor of b is within `rtol` of the distance a moved from `start` (after LinearSGD steps).

    Asserts its precondition first: training moved the weights, so the comparison means something.
    """
    assert weights_a.keys() == weights_b.keys()
    moved_total = sum(float((weights_a[n].double() - start[n].double()).norm()) for n in start)
    assert moved_total > 0, "precondition: the compared steps did not move any weight"
    for name, value in weights_a.items():
        a, b = value.double(), weights_b[name].double()
        moved = float((a - start[name].double()).norm())
        diff = float((a - b).norm())
        assert diff <= rtol * moved + 1e-12, (
            f"{name}: |a-b| = {diff:.3g}, allowed {rtol:g} x moved {moved:.3g}"
        )
