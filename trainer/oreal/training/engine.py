"""One training interface over plain PyTorch and DeepSpeed (ZeRO 0/1/2/3): one config switch.

An engine owns one trainable module and its AdamW optimiser. Per optimiser step the caller runs
every micro-batch's forward and `backward(loss, last=...)`, where `loss` is this rank's share of the
*global* loss (see `oreal.algorithm.reduction`): the engine turns that into the exact full-batch
gradient by *summing* over micro-batches and ranks, then clips and steps with an explicit
learning rate (`step(lr)`), so the schedule is a pure function of the step number.

- TorchEngine: gradients accumulate in `.grad`; at `step` they are all-reduced with SUM in flat
  buckets, clipped, and AdamW steps. Parameters stay fp32; on GPU the forward runs under bf16 autocast.
- DeepSpeedEngine: `deepspeed.initialize` with gradient_accumulation_steps = 1 and a manual
  accumulation boundary on the last micro-batch. DeepSpeed *averages* gradients over ranks, so the
  loss is multiplied by the world size. AdamW is torch's (`torch_adam`: no JIT-built kernels).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from oreal.spec.models import OptimizerSpec
from oreal.training.distributed import DistInfo, is_distributed

BUCKET_ELEMENTS = 50_000_000


def param_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices only; biases and norm weights (1-D) are not decayed."""
    decay, no_decay = [], []
    for p in module.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


class TrainingEngine(Protocol):
    module: nn.Module

    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...
    def backward(self, loss: torch.Tensor, *, last: bool) -> None: ...
    def step(self, lr: float) -> float | None: ...  # the gradient norm before clipping, if known
    def full_state_dict(self) -> dict[str, torch.Tensor] | None: ...
    def save_optimizer(self, directory: Path) -> None: ...
    def load_optimizer(self, directory: Path) -> None: ...


class TorchEngine:
    def __init__(
        self, module: nn.Module, opt: OptimizerSpec, dist_info: DistInfo, autocast: torch.dtype | None
    ) -> None:
        self.module = module
        self.opt = opt
        self.dist = dist_info
        self.autocast = autocast
        self.params = [p for p in module.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            param_groups(module, opt.weight_decay), lr=opt.lr, betas=opt.betas, weight_decay=opt.weight_decay
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        device = next(self.module.parameters()).device
        ctx = (
            torch.autocast(device_type=device.type, dtype=self.autocast)
            if self.autocast is not None
            else contextlib.nullcontext()
        )
        with ctx:
            return self.module(*args, **kwargs)

    def backward(self, loss: torch.Tensor, *, last: bool) -> None:
        loss.backward()

    def _all_reduce_grads(self) -> None:
        for p in self.params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        if not is_distributed():
            return
        bucket: list[torch.Tensor] = []
        size = 0
        for p in self.params + [None]:  # None flushes the last bucket
            if p is not None:
                bucket.append(p.grad)
                size += p.grad.numel()
            if bucket and (p is None or size >= BUCKET_ELEMENTS):
                flat = torch.cat([g.reshape(-1) for g in bucket])
                torch.distributed.all_reduce(flat, op=torch.distributed.ReduceOp.SUM)
                offset = 0
                for g in bucket:
                    g.copy_(flat[offset : offset + g.numel()].view_as(g))
                    offset += g.numel()
                bucket, size = [], 0

    def step(self, lr: float) -> float:
        self._all_reduce_grads()
        norm = torch.nn.utils.clip_grad_norm_(self.params, self.opt.grad_clip)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm)

    def full_state_dict(self) -> dict[str, torch.Tensor] | None:
        return self.module.state_dict()

    def save_optimizer(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        if self.dist.is_main:
            torch.save(self.optimizer.state_dict(), directory / "optimizer.pt")

    def load_optimizer(self, directory: Path) -> None:
        state = torch.load(directory / "optimizer.pt", map_location="cpu", weights_only=True)
        self.optimizer.load_state_dict(state)


def deepspeed_config(opt: OptimizerSpec, zero_stage: int, bf16: bool) -> dict[str, Any]:
    return {
        "train_micro_batch_size_per_gpu": 1,
        "gradient_accumulation_steps": 1,
        "gradient_clipping": opt.grad_clip,
        "zero_optimization": {"stage": zero_stage, "stage3_gather_16bit_weights_on_model_save": True},
        "bf16": {"enabled": bf16},
        "optimizer": {
            "type": "AdamW",
            "params": {
                "lr": opt.lr,
                "betas": list(opt.betas),
                "weight_decay": opt.weight_decay,
                "torch_adam": True,
            },
        },
        "steps_per_print": 1 << 30,
        "wall_clock_breakdown": False,
    }


class DeepSpeedEngine:
    def __init__(
        self, module: nn.Module, opt: OptimizerSpec, dist_info: DistInfo, zero_stage: int, bf16: bool
    ) -> None:
        import deepspeed

        self.module = module
        self.dist = dist_info
        self.zero_stage = zero_stage
        config = deepspeed_config(opt, zero_stage, bf16)
        self.engine, _, _, _ = deepspeed.initialize(
            model=module, model_parameters=param_groups(module, opt.weight_decay), config=config
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.engine(*args, **kwargs)

    def backward(self, loss: torch.Tensor, *, last: bool) -> None:
        self.engine.set_gradient_accumulation_boundary(last)
        self.engine.backward(loss * self.dist.world_size, scale_wrt_gas=False)

    def step(self, lr: float) -> float | None:
        for group in self.engine.optimizer.param_groups:
            group["lr"] = lr
        self.engine.step()
        norm = self.engine.get_global_grad_norm()
        return float(norm) if norm is not None else None  # DeepSpeed may not have computed one

    def full_state_dict(self) -> dict[str, torch.Tensor] | None:
        """Full (gathered) weights on rank 0, None elsewhere under ZeRO-3."""
        if self.zero_stage == 3:
            sd = self.engine._zero3_consolidated_16bit_state_dict()
            return sd if self.dist.is_main else None
        return self.module.state_dict()

    def save_optimizer(self, directory: Path) -> None:
        self.engine.save_checkpoint(str(directory), tag="state")

    def load_optimizer(self, directory: Path) -> None:
        self.engine.load_checkpoint(
            str(directory), tag="state", load_optimizer_states=True, load_lr_scheduler_states=False
        )


def shard_frozen_module(module: nn.Module, bf16: bool) -> Any:
    """Wrap a frozen network (the KL reference) in a ZeRO-3 DeepSpeed engine without an optimiser,
    so it is partitioned across ranks like the trained networks; call it like the module."""
    import deepspeed

    config = {
        "train_micro_batch_size_per_gpu": 1,
        "zero_optimization": {"stage": 3},
        "bf16": {"enabled": bf16},
        "steps_per_print": 1 << 30,
    }
    engine, _, _, _ = deepspeed.initialize(model=module, config=config)
    engine.eval()
    return engine


def make_training_engine(
    module: nn.Module,
    opt: OptimizerSpec,
    dist_info: DistInfo,
    *,
    backend: str,
    zero_stage: int,
    compute_dtype: torch.dtype,
) -> TrainingEngine:
    """The one switch: `backend` is "torch" or "deepspeed"."""
    if compute_dtype == torch.float16:
        raise ValueError("float16 training needs loss scaling, which the trainer does not do: use bfloat16")
    on_gpu = next(module.parameters()).device.type == "cuda"
    low_precision = compute_dtype == torch.bfloat16
    if backend == "deepspeed":
        return DeepSpeedEngine(module, opt, dist_info, zero_stage, bf16=low_precision and on_gpu)
    return TorchEngine(module, opt, dist_info, autocast=compute_dtype if (low_precision and on_gpu) else None)
