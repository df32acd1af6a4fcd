"""Comparing two computations of the same training update, with a tolerance that holds on any CPU.

Two correct ways of computing one step (micro-batches of another size, compiled layers, two ranks
instead of one, DeepSpeed instead of plain torch) add the same fp32 numbers in another order. A sum
of n terms then moves by at most about n·u·Σ|terms| (u = 2^-24 ≈ 6e-8, the fp32 unit roundoff),
so a gradient coordinate whose terms cancel (RLOO advantages sum to zero per group) can move by
much more than u relative to its own size.

AdamW turns that into differences of any size: its first update m̂/(√v̂ + ε) is ≈ sign(g), so a
coordinate whose gradient sums to within rounding of zero moves by ±lr in one run and ∓lr in the
other. How many such coordinates a model has depends on the CPU's kernels, so any tolerance on
weights after AdamW is a number fitted to one machine (it failed on an AVX2-only EPYC).

Tests that compare update paths therefore step with `LinearSGD` (w ← w − lr·(g + wd·w)), whose
update is linear in the gradient: the weights then differ by lr·|Δg| per step, a sum over the
gradient's coordinates instead of a sign per coordinate, and cancellation in a few coordinates no
longer decides the outcome. Measured on the tiny test models over 3-5 steps, ‖Δw‖ / ‖w − w0‖ was
2e-6 to 1e-5 under ATEN_CPU_CAPABILITY=default, avx2 and avx512 (compiled vs eager, the largest);
`assert_same_update` allows 1e-4, a 10x margin over every kernel set tried, and still 1000x below
what a dropped micro-batch or a wrong normalisation changes (tens of percent). That AdamW itself is
configured alike in both paths is checked separately and exactly (tests/training/test_trainer_deepspeed.py).
DeepSpeed's ZeRO accepts only optimiser types it lists when it is imported; `use_linear_sgd` adds
LinearSGD to that list when DeepSpeed is already loaded (and a process that imports DeepSpeed after
the patch lists LinearSGD in AdamW's place).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping

import torch

# 10x the largest relative difference measured under the default, avx2 and avx512 kernel sets.
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
