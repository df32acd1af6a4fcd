"""The trainer engine: models, micro-batching, plain PyTorch or DeepSpeed, checkpoints.

from oreal.training import OREALTrainer
trainer = OREALTrainer(run.spec, policy_path="...")   # settings: spec.algorithm, spec.trainer, spec.model.dtype
stats = trainer.train_step(scored_samples, step)
"""

from oreal.training.trainer import OREALTrainer

__all__ = ["OREALTrainer"]
