"""What one trainer step did, read from its stats, and the line that says so.

A step updates the policy, or it does not:
- `warmup`: during the first `algorithm.warmupSteps` steps only the token reward model learns, the
  policy is frozen (OREAL's warm-up);
- `no_learnable_group`: no prompt had both a correct and a wrong answer (every group all-correct or
  all-wrong is dropped), so nothing is trained at all.
Such a step has no policy loss: the key is absent from its stats, never NaN, and the trainer's
log, the local runner's progress line and the loss gauge leave it out. The trainer counts these
steps in `oreal_trainer_empty_steps_total{reason}` (reason is the outcome above).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

Outcome = Literal["trained", "warmup", "no_learnable_group"]
EMPTY_OUTCOMES: tuple[Outcome, ...] = ("warmup", "no_learnable_group")


def step_outcome(stats: Mapping[str, Any]) -> Outcome:
    """`trained`, `warmup` or `no_learnable_group`, from the keys OREALTrainer.train_step writes."""
    if stats.get("skipped"):
        return "no_learnable_group"
    if stats.get("warmup"):
        return "warmup"
    return "trained"


def describe_step(stats: Mapping[str, Any]) -> str:
    """One plain line for a step without a policy update; '' for a step that trained the policy."""
    outcome = step_outcome(stats)
    if outcome == "no_learnable_group":
        return "no prompt had both a correct and a wrong answer; nothing to learn"
    if outcome == "warmup":
        rm_loss = stats.get("rm/loss")
        tail = f", RM loss {float(rm_loss):.3f}" if rm_loss is not None else ""
        return f"reward-model warm-up, policy frozen{tail}"
    return ""
