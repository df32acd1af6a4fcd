"""One data-parallel rank of a short OREAL run; launched by test_trainer_distributed.py.

Rank and world size come from the environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
MASTER_PORT) exactly as torchrun sets them. Rank 0 writes per-step stats and the final weights.
The optimiser is LinearSGD, so that the ranks' other summation order stays within rounding.
"""

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1]))

from support.numerics import use_linear_sgd  # noqa: E402
from support.specs import run_spec  # noqa: E402
from trainer_fixtures import scored_batch  # noqa: E402

from oreal.spec.models import OptimizerSpec  # noqa: E402
from oreal.training import OREALTrainer  # noqa: E402
from oreal.training.distributed import shutdown  # noqa: E402


def batches():
    yield scored_batch(0)
    yield scored_batch(1, prompts=2, n=5, pass_rates=[0.4, 1.0])  # 5 kept: uneven shards
    yield scored_batch(2)
    yield scored_batch(3, prompts=1, n=2, pass_rates=[0.5])  # 2 kept: at world size 3 one rank has none


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--policy", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--zero-stage", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    use_linear_sgd()  # the update is linear in the gradient: see tests/support/numerics.py
    opts = run_spec(
        steps=5,
        warmup_steps=1,
        keep_per_prompt="all",
        micro_batch_size=2,
        backend=args.backend,
        zero_stage=args.zero_stage,
        policy_optimizer=OptimizerSpec(lr=1e-2, min_lr=1e-3),
        reward_model_optimizer=OptimizerSpec(lr=1e-1, min_lr=1e-2),
    )
    trainer = OREALTrainer(opts, policy_path=args.policy)
    all_stats = [trainer.train_step(batch, step) for step, batch in enumerate(batches())]
    out = Path(args.out)
    trainer.save_policy(out / "policy")
    trainer.save_reward_model(out / "reward_model")
    if trainer.dist.is_main:
        (out / "stats.json").write_text(json.dumps(all_stats))
    shutdown()


if __name__ == "__main__":
    main()
