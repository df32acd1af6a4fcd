"""OREALTrainer: policy, frozen reference and token-level reward model, one optimiser step per batch.

Per step (Algorithm 1 of the paper, strictly on-policy):
  1. advantages over each whole group (RLOO, or GRPO's normalisation), then the filter;
  2. the kept samples are sharded over ranks and cut into micro-batches; N+, N-, N and the number of
     kept sequences are all-reduced so every micro-batch's loss is its share of the global loss;
  3. reward-model pass, per micro-batch: forward → its BCE loss (Eq. 12) → backward, and token
     weights ω± from the same (pre-update) scores;
  4. policy pass, per micro-batch: reference forward (no grad); policy forward → OREAL loss → backward
     (a sample drawn by an older policy version, maxStaleness > 0, weights its policy-gradient terms
     by its importance ratio from the rollout's log-probs: algorithm/importance.py);
  5. one optimiser step for each network. During the first `warmup_steps` only the reward model
     learns: the policy is not even run forward.
"""

from __future__ import annotations

import json
import os
import time
import zlib
from collections.abc import Sequence
from pathlib import Path

import torch

from oreal.algorithm import PolicyBatch, TokenCounts, policy_loss, reward_model_loss, token_weights
from oreal.dtypes import resolve_dtype
from oreal.spec.models import OptimizerSpec, OREALRunSpec
from oreal.training import checkpoint_folder as ckpt
from oreal.training.batch import KeptSample, behaviour, behaviour_counts, micro_batches, prepare_batch, shard
from oreal.training.distributed import (
    all_reduce_max,
    all_reduce_sum,
    barrier,
    init_distributed,
    is_distributed,
)
from oreal.training.engine import TrainingEngine, make_training_engine, shard_frozen_module
from oreal.training.logprobs import collate, response_logprobs
from oreal.training.models import (
    compile_decoder_layers,
    copy_tokenizer_files,
    enable_activation_checkpointing,
    load_causal_lm,
    load_reference,
)
from oreal.training.reward_model import TokenRewardModel, vocabulary_mismatch
from oreal.trajectory import ScoredSample

# Stats that are per-step sums over micro-batches and ranks (each micro-batch adds its share).
_ADDITIVE_PREFIXES = ("loss/", "rm/", "omega/", "kl", "entropy", "mismatch/", "offpolicy/")
_DUMMY = KeptSample(prompt_ids=[0], response_ids=[], reward=-1.0, advantage=0.0, pass_rate=0.0)


class OREALTrainer:
    def __init__(
        self,
        spec: OREALRunSpec,
        policy_path: str | Path,
        reference_path: str | Path | None = None,
        reward_model_path: str | Path | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        """`spec` is the run's spec: its algorithm, trainer and model.dtype sections are all the trainer
        reads (the model paths come as local folders: the worker resolves bucket URIs first)."""
        self.spec = spec
        self.algorithm = alg = spec.algorithm
        engine = spec.trainer
        self.policy_path = Path(policy_path)
        self.device = rank_device(device)
        self.dist = init_distributed(self.device, force=engine.backend == "deepspeed")
        self.compute_dtype = resolve_dtype(spec.model.dtype, self.device)
        torch.manual_seed(alg.seed)

        # Trainable networks keep fp32 weights (DeepSpeed casts to bf16 and keeps fp32 masters).
        policy = load_causal_lm(self.policy_path, torch.float32, self.device)
        if engine.gradient_checkpointing:
            enable_activation_checkpointing(policy)
        policy.train()
        self.policy: TrainingEngine = self._engine(policy, alg.policy_optimizer)

        self.reference = self._load_reference(reference_path) if alg.uses_kl else None
        self.reward_model: TrainingEngine | None = None
        if alg.uses_reward_model:
            self.reward_model = self._load_reward_model(reward_model_path)
        if engine.compile:
            rm_module = self.reward_model.module if self.reward_model is not None else None
            for net in (policy, self.reference, rm_module):
                if net is not None:
                    compile_decoder_layers(net)
        self.next_step = 0

    def _load_reference(self, path: str | Path | None):
        """The frozen KL reference in the compute dtype (partitioned too under ZeRO-3)."""
        engine = self.spec.trainer
        reference = load_reference(path or self.policy_path, self.compute_dtype, self.device)
        if engine.backend == "deepspeed" and engine.zero_stage == 3:
            low = self.compute_dtype in (torch.bfloat16, torch.float16)
            reference = shard_frozen_module(reference, bf16=low and self.device.type == "cuda")
        return reference

    def _load_reward_model(self, path: str | Path | None) -> TrainingEngine:
        """The token-level reward model: a fitted one (`oreal reward-model fit`) or the policy + zero head."""
        if path is not None:
            check_same_vocabulary(self.policy_path, Path(path))
        rm = TokenRewardModel.from_pretrained(path or self.policy_path, torch.float32, self.device)
        if self.spec.trainer.gradient_checkpointing:
            enable_activation_checkpointing(rm.backbone)
        rm.train()
        return self._engine(rm, self.algorithm.reward_model_optimizer)

    def _engine(self, module: torch.nn.Module, opt: OptimizerSpec) -> TrainingEngine:
        return make_training_engine(
            module,
            opt,
            self.dist,
            backend=self.spec.trainer.backend,
            zero_stage=self.spec.trainer.zero_stage,
            compute_dtype=self.compute_dtype,
        )

    @property
    def policy_model(self) -> torch.nn.Module:
        """The underlying Hugging Face policy (e.g. for in-process sampling with `generate`).

        Under DeepSpeed ZeRO-3 its parameters are partitioned: gather them first
        (`deepspeed.zero.GatheredParameters`) or sample from a `save_policy` copy.
        """
        return self.policy.module

    # ------------------------------------------------------------------ learning rates
    def policy_lr(self, step: int) -> float:
        alg = self.algorithm
        return alg.policy_optimizer.lr_at(step, alg.policy_warmup_steps, alg.steps)

    def reward_model_lr(self, step: int) -> float:
        """Linear warm-up over the policy-frozen steps (lr·(s+1)/W), then cosine to min_lr.

        As the released OREAL code schedules its token-level reward model (LambdaLR x/W, then
        CosineAnnealingLR over the remaining steps); without a warm-up, cosine from step 0.
        """
        alg = self.algorithm
        warmup = alg.policy_warmup_steps
        if step < warmup:
            return alg.reward_model_optimizer.lr * (step + 1) / warmup
        return alg.reward_model_optimizer.lr_at(step, warmup, alg.steps)

    def in_warmup(self, step: int) -> bool:
        return step < self.algorithm.policy_warmup_steps

    # ------------------------------------------------------------------ one step
    def train_step(self, samples: Sequence[ScoredSample], step: int) -> dict[str, float]:
        """One optimiser step on the global batch `samples` (the same list on every rank)."""
        start = time.perf_counter()
        alg = self.algorithm
        prepared = prepare_batch(
            samples,
            advantage=alg.advantage_estimator,
            keep=alg.keep_per_group,
            drop_uniform=alg.drop_uniform_groups,
            seed=alg.seed,
            step=step,
        )
        stats = dict(prepared.stats)
        warmup = self.in_warmup(step)
        stats["warmup"] = float(warmup)
        self.next_step = step + 1
        if not prepared.kept:
            stats["skipped"] = 1.0
            stats["step_seconds"] = time.perf_counter() - start
            return stats

        check_same_batch(samples, self.device)
        local = shard(prepared.kept, self.dist.rank, self.dist.world_size)
        chunks = micro_batches(local, self.spec.trainer.micro_batch_size)
        counts = self._global_counts(local, prepared.kept)
        n_micro = int(all_reduce_max(torch.tensor([len(chunks)], device=self.device)).item())

        sums: dict[str, torch.Tensor] = {}
        micro = [chunks[i] if i < len(chunks) else [_DUMMY] for i in range(n_micro)]
        weights = self._reward_model_pass(micro, counts, sums)
        if not warmup:
            for i, chunk in enumerate(micro):
                self._policy_micro_step(chunk, counts, weights[i], last=i == n_micro - 1, sums=sums)

        if self.reward_model is not None:
            stats["lr/reward_model"] = self.reward_model_lr(step)
            _set_known(stats, "grad_norm/reward_model", self.reward_model.step(stats["lr/reward_model"]))
        if not warmup:
            stats["lr/policy"] = self.policy_lr(step)
            _set_known(stats, "grad_norm/policy", self.policy.step(stats["lr/policy"]))

        stats |= _all_reduced(sums)
        stats |= {
            "tokens/positive": counts.positive,
            "tokens/negative": counts.negative,
            "tokens/total": counts.total,
            "step_seconds": time.perf_counter() - start,
        }
        return stats

    def _global_counts(self, local: list[KeptSample], kept: list[KeptSample]) -> TokenCounts:
        """N+, N-, N tokens and scored sequences over every rank's shard (all-reduced)."""
        counts = torch.tensor(
            [
                sum(len(k.response_ids) for k in local if k.reward > 0),
                sum(len(k.response_ids) for k in local if k.reward <= 0),
                sum(len(k.response_ids) for k in local),
                sum(1 for k in local if k.response_ids),  # sequences the reward-model BCE scores
            ],
            dtype=torch.float64,
            device=self.device,
        )
        all_reduce_sum(counts)
        return TokenCounts(*[float(c) for c in counts.tolist()], behaviour=behaviour_counts(kept))

    def _reward_model_pass(
        self, micro: list[list[KeptSample]], counts: TokenCounts, sums: dict[str, torch.Tensor]
    ) -> list[tuple[torch.Tensor, torch.Tensor] | None]:
        """Train the reward model on every micro-batch; return each one's detached (ω+, ω-)."""
        if self.reward_model is None:
            return [None] * len(micro)
        out: list[tuple[torch.Tensor, torch.Tensor] | None] = []
        for i, chunk in enumerate(micro):
            batch = collate([k.prompt_ids for k in chunk], [k.response_ids for k in chunk], self.device)
            mask = batch.response_mask
            rewards = torch.tensor([k.reward for k in chunk], device=self.device)
            scores = self.reward_model(input_ids=batch.input_ids, response_index=batch.response_index)
            rm_loss, rm_stats = reward_model_loss(scores, mask, rewards, counts.sequences)
            self.reward_model.backward(rm_loss, last=i == len(micro) - 1)
            _accumulate(sums, rm_stats)
            out.append(self.select_token_weights(chunk, scores.detach(), mask))
        return out

    def select_token_weights(
        self, chunk: list[KeptSample], scores: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(ω+, ω-) [B, T] of one micro-batch from the reward model's pre-update scores [B, T].

        spec.algorithm.tokenWeighting picks the function. A subclass may return other weights for
        a diagnostic (benchmarks/learning.py: ω ≡ 1, fixed ω, oracle weights); `chunk` holds the
        samples of the rows.
        """
        alg = self.algorithm
        return token_weights(scores, mask, alg.token_weighting, alg.topk_ratio)

    def _policy_micro_step(
        self,
        chunk: list[KeptSample],
        counts: TokenCounts,
        weights: tuple[torch.Tensor, torch.Tensor] | None,
        *,
        last: bool,
        sums: dict[str, torch.Tensor],
    ) -> None:
        batch = collate([k.prompt_ids for k in chunk], [k.response_ids for k in chunk], self.device)
        ref_logp = None
        if self.reference is not None:
            with torch.no_grad():
                ref_logp = response_logprobs(self.reference, batch, compiled=self.spec.trainer.compile)
        logp = response_logprobs(self.policy, batch, compiled=self.spec.trainer.compile)
        pb = PolicyBatch(
            logp=logp,
            mask=batch.response_mask,
            advantages=torch.tensor([k.advantage for k in chunk], device=self.device),
            rewards=torch.tensor([k.reward for k in chunk], device=self.device),
            pass_rate=torch.tensor([k.pass_rate for k in chunk], device=self.device),
            ref_logp=ref_logp,
            pos_weights=weights[0] if weights is not None else None,
            neg_weights=weights[1] if weights is not None else None,
            behaviour=behaviour(chunk, batch.num_response, self.device),
        )
        loss, pstats = policy_loss(pb, counts, self.algorithm)
        self.policy.backward(loss, last=last)
        _accumulate(sums, pstats)

    # ------------------------------------------------------------------ saving and resuming
    def save_policy(self, directory: str | Path, dtype: torch.dtype | None = None) -> None:
        """The policy in HF format (safetensors + config + tokenizer files of the initial policy).

        `dtype`: cast floating-point weights to it (e.g. the compute dtype that rollout engines
        load anyway: a bf16 copy is half the bytes to write, publish and read every step).
        """
        directory = Path(directory)
        sd = self.policy.full_state_dict()
        if sd is not None and dtype is not None:
            sd = {k: v.to(dtype) if v.is_floating_point() else v for k, v in sd.items()}
        if self.dist.is_main:
            directory.mkdir(parents=True, exist_ok=True)
            self.policy.module.save_pretrained(str(directory), state_dict=sd)
            if dtype is not None:  # config.json names the module's dtype, not the saved tensors'
                config_file = directory / "config.json"
                config = json.loads(config_file.read_text())
                config["dtype"] = str(dtype).removeprefix("torch.")
                config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
            copy_tokenizer_files(self.policy_path, directory)
        barrier()

    @property
    def published_dtype(self) -> torch.dtype | None:
        """The dtype policies are published in: the compute dtype when the trained weights are wider
        (fp32 weights under bf16 autocast), else None (saved as they are, losslessly)."""
        weights = next(self.policy.module.parameters()).dtype
        return self.compute_dtype if self.compute_dtype != weights else None

    def save_reward_model(self, directory: str | Path) -> None:
        if self.reward_model is None:
            return
        sd = self.reward_model.full_state_dict()
        if self.dist.is_main:
            self.reward_model.module.save_pretrained(directory, state_dict=sd)
        barrier()

    def save_weights(self, directory: str | Path, saved_policy: str | Path | None = None) -> None:
        """Policy and reward model in HF format, at full precision (the run's final weights).

        `saved_policy`: a folder that `save_policy` wrote for the current weights without a dtype
        cast (the policy just published); its files are hard-linked instead of saved again.
        """
        directory = Path(directory)
        if saved_policy is None:
            self.save_policy(directory / "policy")
        else:
            if self.dist.is_main:
                ckpt.link_tree(Path(saved_policy), directory / "policy")
            barrier()
        self.save_reward_model(directory / "reward_model")

    def save_checkpoint(self, directory: str | Path, saved_policy: str | Path | None = None) -> None:
        """Weights, optimiser states, RNG and step: everything an exact resume needs."""
        directory = Path(directory)
        self.save_weights(directory, saved_policy=saved_policy)
        self.policy.save_optimizer(directory / "optimizer" / "policy")
        if self.reward_model is not None:
            self.reward_model.save_optimizer(directory / "optimizer" / "reward_model")
        ckpt.save_rng(directory, self.dist.rank)
        if self.dist.is_main:
            ckpt.write_state(
                directory,
                {"next_step": self.next_step, "world_size": self.dist.world_size},
            )
        barrier()

    def load_checkpoint(self, directory: str | Path) -> int:
        """Restore weights, optimiser states and RNG; returns the next step to run."""
        directory = Path(directory)
        state = ckpt.read_state(directory)
        if self.spec.trainer.backend == "deepspeed":
            # DeepSpeed's own checkpoint restores module weights and optimiser state together.
            self.policy.load_optimizer(directory / "optimizer" / "policy")
            if self.reward_model is not None:
                self.reward_model.load_optimizer(directory / "optimizer" / "reward_model")
        else:
            ckpt.load_weights_into(self.policy.module, ckpt.load_safetensors_dir(directory / "policy"))
            self.policy.load_optimizer(directory / "optimizer" / "policy")
            if self.reward_model is not None:
                self.reward_model.module.load_weights(directory / "reward_model")
                self.reward_model.load_optimizer(directory / "optimizer" / "reward_model")
        ckpt.load_rng(directory, self.dist.rank)
        self.next_step = int(state["next_step"])
        return self.next_step


def check_same_vocabulary(policy_path: Path, reward_model_path: Path) -> None:
    """The reward model reads the policy's token ids: refuse one built for another vocabulary."""
    why = vocabulary_mismatch(policy_path, reward_model_path)
    if why is not None:
        raise ValueError(f"spec.model.tokenRewardModel {reward_model_path}: {why}")


def check_same_batch(samples: Sequence[ScoredSample], device: torch.device) -> None:
    """Every rank must pass the same global batch: compare a cheap fingerprint across ranks."""
    if not is_distributed():
        return
    fingerprint = zlib.crc32(
        repr(
            [
                (s.sample.prompt_id, s.sample.sample_index, s.reward, len(s.sample.response_token_ids))
                for s in samples
            ]
        ).encode()
    )
    both = torch.tensor([fingerprint, -fingerprint], dtype=torch.int64, device=device)
    all_reduce_max(both)  # [max, -min] over ranks: equal on every rank, so every rank decides alike
    if int(both[0]) != -int(both[1]):
        raise ValueError(
            "ranks were given different batches: train_step needs the same global batch on every rank"
        )


def rank_device(device: str | torch.device | None) -> torch.device:
    """The device given, else this rank's GPU ($LOCAL_RANK), else the CPU; a GPU is made current."""
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = f"cuda:{local}" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:  # "cuda" -> this rank's GPU
        device = torch.device("cuda", local)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def _all_reduced(sums: dict[str, torch.Tensor]) -> dict[str, float]:
    """Additive stats summed over micro-batches here, then over ranks."""
    names = sorted(sums)
    if not names:
        return {}
    flat = torch.stack([sums[n].to(torch.float64) for n in names])
    all_reduce_sum(flat)
    return {n: float(v) for n, v in zip(names, flat.tolist(), strict=True)}


def _set_known(stats: dict[str, float], key: str, value: float | None) -> None:
    """A stat that may be unknown is left out, never NaN."""
    if value is not None:
        stats[key] = value


def _accumulate(sums: dict[str, torch.Tensor], stats: dict[str, torch.Tensor]) -> None:
    for name, value in stats.items():
        if name.startswith(_ADDITIVE_PREFIXES):
            v = value.detach().to(torch.float64)
            sums[name] = sums[name] + v if name in sums else v
