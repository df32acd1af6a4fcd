"""Run specs for tests that drive the trainer directly (no bucket, no workers)."""

from __future__ import annotations

from typing import Any

from oreal.spec.models import AlgorithmSpec, DataSpec, ModelSpec, OREALRunSpec, TrainerSpec

ENGINE_FIELDS = frozenset(TrainerSpec.model_fields)


def run_spec(*, dtype: str = "float32", algorithm: str = "oreal", **fields: Any) -> OREALRunSpec:
    """A spec from flat snake_case fields: trainer.* fields (backend, micro_batch_size, compile, ...)
    go to spec.trainer, the rest to spec.algorithm (`algorithm` is its name).

    Defaults are the spec's, except: plain torch on CPU without activation checkpointing, and dtype
    float32, not auto (bf16 on CPUs with native bf16 would make numbers machine-dependent). Model and
    data paths are placeholders: tests hand the policy folder to OREALTrainer.
    """
    engine = {"backend": "torch", "gpus_per_node": 0, "gradient_checkpointing": False}
    engine |= {k: v for k, v in fields.items() if k in ENGINE_FIELDS}
    return OREALRunSpec(
        model=ModelSpec(policy="unused", dtype=dtype),
        data=DataSpec(prompts="unused"),
        algorithm=AlgorithmSpec(
            name=algorithm, **{k: v for k, v in fields.items() if k not in ENGINE_FIELDS}
        ),
        trainer=TrainerSpec(**engine),
    )
