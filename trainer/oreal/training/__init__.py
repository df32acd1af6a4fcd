"""The trainer engine: models, micro-batching, plain PyTorch or DeepSpeed, checkpoints.

from oreal.training import OREALTrainer, TrainerOptions
trainer = OREALTrainer(TrainerOptions.from_spec(spec), policy_path="...")
stats = trainer.train_step(scored_samples, step)
"""

from oreal.training.options import OptimizerOptions, TrainerOptions
from oreal.training.trainer import OREALTrainer

__all__ = ["OREALTrainer", "OptimizerOptions", "TrainerOptions"]
