"""Cost of one OREAL trainer step against a plain SFT step on the same tokens.

OREAL runs three networks per step: policy forward+backward, reference forward, token-level reward
model forward+backward. With training ≈ 3 forward passes, that is (3 + 1 + 3) / 3 ≈ 2.33× an SFT
step on the same tokens: the model-count bound. Target: ≤ 2.5×.

Default: a small random Qwen2 on CPU, about a minute. On a GPU (random init, Qwen2.5-0.5B's shape):

    python benchmarks/trainer_step.py --device cuda --preset qwen2.5-0.5b --dtype bfloat16 \
        --backend deepspeed --zero-stage 2 --prompts 16 --samples 8 --prompt-len 256 \
        --response-len 1024 --micro-batch 16 --threads 0

(or --model DIR for real weights; --hidden/--layers/--vocab/... for another random shape).
MFU counts model FLOPs exactly (`step_flops`): matmul parameters × tokens, causal attention, the LM
head only on the response positions it projects; training = 3 × forward; no recomputation counted.
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
from oreal.dtypes import resolve_dtype
from oreal.spec.models import OREALRunSpec
from oreal.training import OREALTrainer
from oreal.training.batch import micro_batches, prepare_batch
from oreal.training.engine import make_training_engine
from oreal.training.logprobs import collate, response_logprobs
from oreal.training.models import compile_decoder_layers, enable_activation_checkpointing, load_causal_lm
from oreal.trajectory import RolloutSample, ScoredSample, Verdict

H100_BF16_TFLOPS = 989.0  # dense bf16 peak of an H100 SXM; the H200 has the same

# Published shapes for random-init GPU runs: (hidden, intermediate, layers, heads, kv heads, vocab, tied).
PRESETS = {
    "qwen2.5-0.5b": (896, 4864, 24, 14, 2, 151936, True),
    "qwen2.5-1.5b": (1536, 8960, 28, 12, 2, 151936, True),
}


def random_model(directory: Path, args: argparse.Namespace) -> Path:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    if args.preset:
        hidden, inter, layers, heads, kv_heads, vocab, tied = PRESETS[args.preset]
    else:
        hidden, layers, vocab, tied = args.hidden, args.layers, args.vocab, False
        inter, heads, kv_heads = hidden * 4, max(hidden // 64, 1), max(hidden // 128, 1)
    config = Qwen2Config(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=max(args.prompt_len + args.response_len + 8, 4096),
        tie_word_embeddings=tied,
    )
    Qwen2ForCausalLM(config).save_pretrained(str(directory))
    return directory


def forward_flops(model: torch.nn.Module, lengths: list[tuple[int, int]], lm_head: bool) -> float:
    """Model FLOPs of one forward pass over sequences of (prompt, response) lengths.

    2 × (matrix parameters of the decoder layers) per token; causal attention 2·d_attn·n(n+1) per layer
    (QKᵀ and AV: query i attends to i keys, 2·d_attn·i FLOPs each); the LM head (2·V·d) only on the
    response positions that `response_logprobs` projects; the reward model's scalar head 2·d per token.
    """
    config = model.config
    layers = model.model.layers if hasattr(model, "model") else model.layers
    body = sum(p.numel() for p in layers.parameters() if p.ndim >= 2)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    d_attn = config.num_attention_heads * head_dim
    head = config.vocab_size * config.hidden_size if lm_head else config.hidden_size
    total = 0.0
    for p_len, r_len in lengths:
        n = p_len + r_len
        total += 2 * body * n + config.num_hidden_layers * 2 * d_attn * n * (n + 1) + 2 * head * r_len
    return total


def step_flops(policy: torch.nn.Module, lengths: list[tuple[int, int]]) -> dict[str, float]:
    """SFT = policy fwd+bwd (3 forwards); OREAL adds the reference forward and the reward model's 3."""
    policy_fwd = forward_flops(policy, lengths, lm_head=True)
    rm_fwd = forward_flops(policy, lengths, lm_head=False)
    return {"sft": 3 * policy_fwd, "oreal": 3 * policy_fwd + policy_fwd + 3 * rm_fwd}


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

    def __init__(self, policy_path: Path, spec: OREALRunSpec, device: torch.device, dist_info) -> None:
        model = load_causal_lm(policy_path, torch.float32, device)
        if spec.trainer.gradient_checkpointing:
            enable_activation_checkpointing(model)
        model.train()
        self.engine = make_training_engine(
            model,
            spec.algorithm.policy_optimizer,
            dist_info,
            backend=spec.trainer.backend,
            zero_stage=spec.trainer.zero_stage,
            compute_dtype=resolve_dtype(spec.model.dtype, device),
        )
        self.device = device
        self.compiled = spec.trainer.compile

    def __call__(self, chunks) -> None:
        total = sum(len(k.response_ids) for chunk in chunks for k in chunk)
        for i, chunk in enumerate(chunks):
            batch = collate([k.prompt_ids for k in chunk], [k.response_ids for k in chunk], self.device)
            logp = response_logprobs(self.engine, batch, compiled=self.compiled)
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


KERNEL_KINDS = (  # (category, substrings of CUDA kernel names), first match wins
    ("matmul", ("gemm", "xmma", "cutlass", "cublas", "wgmma", "nvjet")),
    ("attention", ("fmha", "attention", "flash", "attn")),
    ("optimizer", ("multi_tensor", "adam", "foreach")),
    ("reduction/softmax", ("reduce", "softmax", "logsumexp", "norm")),
    ("copy/cast", ("copy", "memcpy", "memset", "cat", "fill")),
    ("elementwise", ("elementwise", "vectorized", "unrolled", "index", "scatter", "gather")),
)


def profile_phase(name: str, fn, device: torch.device, top: int = 8) -> None:
    """One more run of `fn` under torch.profiler: GPU busy share and kernel time by category."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    if device.type != "cuda":
        print(f"profile {name}: only on CUDA devices")
        return
    sync(device)
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fn()
        sync(device)
    wall_us = (time.perf_counter() - start) * 1e6
    kernels = [e for e in prof.key_averages() if e.device_type == DeviceType.CUDA]
    busy = sum(e.self_device_time_total for e in kernels)
    by_kind: dict[str, float] = {}
    for e in kernels:
        kind = next((k for k, keys in KERNEL_KINDS if any(x in e.key.lower() for x in keys)), "other")
        by_kind[kind] = by_kind.get(kind, 0.0) + e.self_device_time_total
    launches = sum(e.count for e in kernels)
    print(f"profile {name}: wall {wall_us / 1e3:.0f} ms (profiled), kernels {busy / 1e3:.0f} ms = ", end="")
    print(f"{100 * busy / wall_us:.0f}% GPU busy, {launches} kernel launches")
    for kind, us in sorted(by_kind.items(), key=lambda kv: -kv[1]):
        print(f"  {kind:<18} {us / 1e3:8.1f} ms  {100 * us / busy:5.1f}%")
    for e in sorted(kernels, key=lambda e: -e.self_device_time_total)[:top]:
        print(f"    {e.self_device_time_total / 1e3:8.1f} ms  x{e.count:<5} {e.key[:90]}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="HF model directory; default: a random Qwen2 of the shape below")
    p.add_argument("--preset", choices=sorted(PRESETS), help="random model with a published shape")
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
    p.add_argument("--profile", action="store_true", help="then profile one step of each (CUDA only)")
    p.add_argument("--compile", action="store_true", help="torch.compile every decoder layer (experiment)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    with tempfile.TemporaryDirectory() as tmp:
        policy = Path(args.model) if args.model else random_model(Path(tmp) / "policy", args)
        spec = OREALRunSpec.model_validate(
            {
                "model": {"policy": str(policy), "dtype": args.dtype},
                "data": {"prompts": "unused"},
                # measure full steps (warmupSteps 0): policy, reference and reward model all run
                "algorithm": {"steps": 1000, "warmupSteps": 0, "keepPerPrompt": "all"},
                "trainer": {
                    "microBatchSize": args.micro_batch,
                    "backend": args.backend,
                    "zeroStage": args.zero_stage,
                    "gradientCheckpointing": args.gradient_checkpointing,
                    "compile": args.compile,
                },
            }
        )
        trainer = OREALTrainer(spec, policy_path=policy, device=device)
        vocab = int(trainer.policy.module.config.vocab_size)
        n_params = sum(p.numel() for p in trainer.policy.module.parameters())
        samples = synthetic_batch(args, vocab)
        kept = prepare_batch(samples, advantage="rloo", keep=None, drop_uniform=True, seed=0, step=0).kept
        tokens = sum(k.length for k in kept)
        flops = step_flops(trainer.policy.module, [(len(k.prompt_ids), len(k.response_ids)) for k in kept])
        chunks = micro_batches(sorted(kept, key=lambda k: -k.length), args.micro_batch)

        sft = SFTStep(policy, spec, device, trainer.dist)
        if args.compile:  # the trainer's own networks are compiled by spec.trainer.compile
            print(f"compiled {compile_decoder_layers(sft.engine.module)} decoder layers of the SFT model")
        step = iter(range(10**6))
        phases = {"sft": lambda: sft(chunks), "oreal": lambda: trainer.train_step(samples, next(step))}
        times, peaks = measure(phases, args.repeats, device)
        sft_s, oreal_s = times["sft"], times["oreal"]
        sft_mem, oreal_mem = peaks["sft"], peaks["oreal"]
        if args.profile:
            for name, fn in phases.items():
                profile_phase(name, fn, device)

    gpu = f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""
    print(f"model: {n_params / 1e6:.1f}M params, device {device}{gpu}, backend {args.backend}", end="")
    print(f"{f' ZeRO-{args.zero_stage}' if args.backend == 'deepspeed' else ''}, dtype {args.dtype}", end="")
    print(", decoder layers torch.compile'd" if args.compile else "")
    print(f"batch: {len(kept)} sequences, {tokens} tokens, micro-batch {args.micro_batch}")
    mem_note = "peak allocated" if device.type == "cuda" else "process peak RSS so far"
    for name, secs, mem in (("sft", sft_s, sft_mem), ("oreal", oreal_s, oreal_mem)):
        achieved = flops[name] / secs / 1e12
        line = f"{name:>5}: {secs * 1000:9.1f} ms/step  {tokens / secs:10.1f} tokens/s  {mem:6.2f} GiB {mem_note}"
        line += f"  {achieved:7.1f} TFLOP/s"
        if device.type == "cuda":
            line += f"  MFU {100 * achieved / args.peak_tflops:.1f}% of {args.peak_tflops:.0f}"
        print(line)
    print(f"oreal/sft step ratio: {oreal_s / sft_s:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
