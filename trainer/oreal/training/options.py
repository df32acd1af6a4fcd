"""TrainerOptions: everything the trainer needs, built from the spec or written out directly."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from oreal.algorithm.losses import LossConfig

if TYPE_CHECKING:
    from oreal.spec import OREALRunSpec


@dataclass(frozen=True)
class OptimizerOptions:
    """AdamW with a cosine learning rate from `lr` to `min_lr`."""

    lr: float
    min_lr: float
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    betas: tuple[float, float] = (0.9, 0.999)  # torch's default, as the released OREAL code

    def __post_init__(self) -> None:
        if not (self.lr > 0 and 0 <= self.min_lr <= self.lr):
            raise ValueError(f"need 0 <= min_lr <= lr and lr > 0, got lr={self.lr}, min_lr={self.min_lr}")
        if self.grad_clip <= 0 or self.weight_decay < 0:
            raise ValueError("grad_clip must be > 0 and weight_decay >= 0")

    def lr_at(self, step: int, start: int, end: int) -> float:
        """Cosine schedule: `lr` at step `start`, `min_lr` at step `end - 1` (clamped outside)."""
        span = max(end - 1 - start, 1)
        frac = min(max((step - start) / span, 0.0), 1.0)
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1.0 + math.cos(math.pi * frac))


def _policy_default() -> OptimizerOptions:
    return OptimizerOptions(lr=5e-7, min_lr=1e-7)


def _reward_default() -> OptimizerOptions:
    return OptimizerOptions(lr=2e-6, min_lr=4e-7)


@dataclass(frozen=True)
class TrainerOptions:
    """Algorithm + engine settings. Field names follow `oreal.spec` (algorithm.* and trainer.*)."""

    # algorithm
    algorithm: Literal["oreal", "grpo", "reinforce"] = "oreal"
    variant: Literal["reference", "paper"] = "reference"
    steps: int = 100
    warmup_steps: int = 10
    keep_per_prompt: int | Literal["all"] = 1
    advantage: Literal["rloo", "grpo"] | None = None
    token_weights: bool = True
    kl_coef: float = 0.01
    negative_coef: float = 0.5
    policy_optimizer: OptimizerOptions = field(default_factory=_policy_default)
    reward_model_optimizer: OptimizerOptions = field(default_factory=_reward_default)
    seed: int = 42
    # engine
    backend: Literal["torch", "deepspeed"] = "torch"
    zero_stage: int = 2
    micro_batch_size: int = 4
    gradient_checkpointing: bool = False
    compile: bool = False
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"

    def __post_init__(self) -> None:
        if self.warmup_steps < 0 or self.steps < 1:
            raise ValueError("need steps >= 1 and warmup_steps >= 0")
        if self.keep_per_prompt != "all" and int(self.keep_per_prompt) < 1:
            raise ValueError("keep_per_prompt must be >= 1 or 'all'")
        if self.backend not in ("torch", "deepspeed") or self.zero_stage not in (0, 1, 2, 3):
            raise ValueError(f"bad backend/zero_stage: {self.backend}/{self.zero_stage}")
        if self.micro_batch_size < 1:
            raise ValueError("micro_batch_size must be >= 1")
        self.loss_config()  # validates the loss hyperparameters

    # ------------------------------------------------------------------ derived settings
    def loss_config(self) -> LossConfig:
        return LossConfig(
            algorithm=self.algorithm,
            variant=self.variant,
            kl_coef=self.kl_coef,
            negative_coef=self.negative_coef,
            token_weights=self.token_weights and self.algorithm == "oreal",
        )

    @property
    def advantage_estimator(self) -> str:
        if self.advantage is not None:
            return self.advantage
        return "grpo" if self.algorithm == "grpo" else "rloo"

    @property
    def uses_reward_model(self) -> bool:
        return self.algorithm == "oreal" and self.token_weights

    @property
    def policy_warmup_steps(self) -> int:
        """Steps in which only the reward model learns (0 when there is no reward model)."""
        return self.warmup_steps if self.uses_reward_model else 0

    @property
    def keep(self) -> int | None:
        """Per-group correct/wrong samples kept; None keeps all (always for the baselines)."""
        if self.algorithm != "oreal" or self.keep_per_prompt == "all":
            return None
        return int(self.keep_per_prompt)

    @property
    def drop_uniform_groups(self) -> bool:
        return self.algorithm == "oreal"

    @classmethod
    def from_spec(cls, spec: OREALRunSpec) -> TrainerOptions:
        alg, tr = spec.algorithm, spec.trainer

        def opt(o) -> OptimizerOptions:
            return OptimizerOptions(
                lr=o.lr,
                min_lr=o.min_lr,
                weight_decay=o.weight_decay,
                grad_clip=o.grad_clip,
                betas=tuple(o.betas),
            )

        return cls(
            algorithm=alg.name,
            variant=alg.variant,
            steps=alg.steps,
            warmup_steps=alg.warmup_steps,
            keep_per_prompt=alg.keep_per_prompt,
            advantage=alg.advantage,
            token_weights=alg.token_weights,
            kl_coef=alg.kl_coef,
            negative_coef=alg.negative_coef,
            policy_optimizer=opt(alg.policy_optimizer),
            reward_model_optimizer=opt(alg.reward_model_optimizer),
            seed=alg.seed,
            backend=tr.backend,
            zero_stage=tr.zero_stage,
            micro_batch_size=tr.micro_batch_size,
            gradient_checkpointing=tr.gradient_checkpointing,
            compile=tr.compile,
            dtype=spec.model.dtype,
        )
