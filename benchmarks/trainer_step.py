"""Cost of one OREAL trainer step against a plain SFT step on the same tokens.

OREAL runs three networks per step: policy forward+backward, reference forward, token-level reward
model forward+backward. With training ≈ 3 forward passes, that is (3 + 1 + 3) / 3 ≈ 2.33× an SFT
step on the same tokens: the model-count bound. Target: ≤ 2.5×.

Default: a small random Qwen2 on CPU, about a minute. On a GPU:

    python benchmarks/trainer_step.py --device cuda --model /models/Qwen2.5-0.5B --dtype bfloat16 \
        --prompts 16 --samples 4 --prompt-len 256 --response-len 1024 --micro-batch 4

(or --hidden/--layers/--vocab for a random model of that shape; --backend deepspeed --zero-stage 2).
The last line printed is `oreal/sft step ratio: X.XX`.
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from oreal.algorithm.reduction import normalized_sum
from oreal.training import OREALTrainer, TrainerOptions
from oreal.training.batch import micro_batches, prepare
from oreal.training.engine import make_engine
from oreal.training.logprobs import collate, response_logprobs
from oreal.training.models import enable_activation_checkpointing, load_causal_lm, resolve_dtype
from oreal.trajectory import RolloutSample, ScoredSample, Verdict

H100_BF16_TFLOPS = 989.0


def random_model(directory: Path, args: argparse.Namespace) -> Path:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        intermediate_size=args.hidden * 4,
        num_hidden_layers=args.layers,
        num_attention_heads=max(args.hidden // 64, 1),
        num_key_value_heads=max(args.hidden // 128, 1),
        max_position_embeddings=args.prompt_len + args.response_len + 8,
        tie_word_embeddings=False,
    )
    Qwen2ForCausalLM(config).save_pretrained(str(directory))
    return directory


def synthetic_batch(args: argparse.Namespace, vocab: int) -> list[ScoredSample]:
    rng = random.Random(0)
    out = []
    for g in range(args.prompts):
        prompt = [rng.randrange(vocab) for _ in range(args.prompt_len)]
        for i in range(args.samples):
            length = rng.randint(args.response_len // 2, args.response_len)
            response = [rng.randrange(vocab) for _ in range(length)]
            correct = i % 2 == 0  # every group mixed: nothing is filtered away
            s = RolloutSample(0, f"p{g}", i, "", prompt, response, "", "", 0)
            out.append(
                ScoredSample(s, Verdict(0, f"p{g}", i, correct, "correct" if correct else "incorrect"))
            )
    return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # process peak RSS (KiB -> GiB)


class SFTStep:
    """Plain SFT on the same micro-batches: token-mean NLL of the responses, same engine and optimiser."""

    def __init__(self, policy_path: Path, opts: TrainerOptions, device: torch.device, dist_info) -> None:
        model = load_causal_lm(policy_path, torch.float32, device)
        if opts.gradient_checkpointing:
            enable_activation_checkpointing(model)
        model.train()
        self.engine = make_engine(
            model,
            opts.policy_optimizer,
            dist_info,
            backend=opts.backend,
            zero_stage=opts.zero_stage,
            compute_dtype=resolve_dtype(opts.dtype, device),
        )
        self.device = device

    def __call__(self, chunks) -> None:
        total = sum(len(k.response_ids) for chunk in chunks for k in chunk)
        for i, chunk in enumerate(chunks):
            batch = collate([k.prompt_ids for k in chunk], [k.response_ids for k in chunk], self.device)
            logp = response_logprobs(self.engine, batch)
            loss = normalized_sum(-logp, batch.response_mask, total)
            self.engine.backward(loss, last=i == len(chunks) - 1)
        self.engine.step(1e-6)


def measure(phases: dict, repeats: int, device: torch.device) -> tuple[dict[str, float], dict[str, float]]:
    """Median seconds and peak memory per phase; phases interleave so load drift hits both alike."""
    samples: dict[str, list[float]] = {name: [] for name in phases}
    peaks: dict[str, float] = dict.fromkeys(phases, 0.0)
    for r in range(repeats + 1):  # round 0 warms up (allocator, kernels, optimiser state)
        for name, fn in phases.items():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            if r > 0:
                samples[name].append(time.perf_counter() - start)
            peaks[name] = max(peaks[name], peak_memory_gib(device))
    return {name: statistics.median(v) for name, v in samples.items()}, peaks


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="HF model directory; default: a random Qwen2 of the shape below")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--vocab", type=int, default=8192)
    p.add_argument("--prompts", type=int, default=4)
    p.add_argument("--samples", type=int, default=4)
    p.add_argument("--prompt-len", type=int, default=32)
    p.add_argument("--response-len", type=int, default=192)
    p.add_argument("--micro-batch", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float32"])
    p.add_argument("--backend", default="torch", choices=["torch", "deepspeed"])
    p.add_argument("--zero-stage", type=int, default=2)
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--peak-tflops", type=float, default=H100_BF16_TFLOPS, help="for MFU on GPU")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch default)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    with tempfile.TemporaryDirectory() as tmp:
        policy = Path(args.model) if args.model else random_model(Path(tmp) / "policy", args)
        opts = TrainerOptions(
            steps=1000,
            warmup_steps=0,  # measure full steps: policy, reference and reward model all run
            keep_per_prompt="all",
            micro_batch_size=args.micro_batch,
            backend=args.backend,
            zero_stage=args.zero_stage,
            gradient_checkpointing=args.gradient_checkpointing,
            dtype=args.dtype,
        )
        trainer = OREALTrainer(opts, policy_path=policy, device=device)
        vocab = int(trainer.policy.module.config.vocab_size)
        n_params = sum(p.numel() for p in trainer.policy.module.parameters())
        samples = synthetic_batch(args, vocab)
        kept = prepare(samples, advantage="rloo", keep=None, drop_uniform=True, seed=0, step=0).kept
        tokens = sum(k.length for k in kept)
        chunks = micro_batches(sorted(kept, key=lambda k: -k.length), args.micro_batch)

        sft = SFTStep(policy, opts, device, trainer.dist)
        step = iter(range(10**6))
        phases = {"sft": lambda: sft(chunks), "oreal": lambda: trainer.train_step(samples, next(step))}
        times, peaks = measure(phases, args.repeats, device)
        sft_s, oreal_s = times["sft"], times["oreal"]
        sft_mem, oreal_mem = peaks["sft"], peaks["oreal"]

    print(f"model: {n_params / 1e6:.1f}M params, device {device}, backend {args.backend}, dtype {args.dtype}")
    print(f"batch: {len(kept)} sequences, {tokens} tokens, micro-batch {args.micro_batch}")
    mem_note = "peak allocated" if device.type == "cuda" else "process peak RSS so far"
    for name, secs, mem, flops_per_token in (
        ("sft", sft_s, sft_mem, 6 * n_params),
        ("oreal", oreal_s, oreal_mem, 14 * n_params),  # policy 6N + reference 2N + reward model 6N
    ):
        line = f"{name:>5}: {secs * 1000:9.1f} ms/step  {tokens / secs:10.1f} tokens/s  {mem:6.2f} GiB {mem_note}"
        if device.type == "cuda":
            mfu = flops_per_token * tokens / secs / (args.peak_tflops * 1e12)
            line += f"  MFU {100 * mfu:.1f}%"
        print(line)
    print(f"oreal/sft step ratio: {oreal_s / sft_s:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
