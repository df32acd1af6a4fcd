"""Offline probe: can the token-level reward model of the learning benchmark learn, at a given model size?

    python benchmarks/reward_model_probe.py [--hidden-size 64] [--layers 2] [--heads 4]
        [--prompts 300] [--samples 8] [--epochs 6] [--lr 1.2e-3]

Steps: the SFT warm start of `learning.py` at the requested size (cached under --cache, keyed by
the task + SFT config exactly like learning.py, so the default size reuses its checkpoint); K answers
per prompt at temperature 1 for P prompts, checked by `oreal.verifier.Verifier`; a split by PROMPT
into train / held-out; the reward model built and trained as `OREALTrainer` does it
(`TokenRewardModel.from_pretrained` on the policy, the torch engine's AdamW with grad clipping,
`reward_model_loss` = BCE(σ(mean_t w_t), max(r, 0))), for a few epochs over the train split.

Reported on the held-out split: AUC of σ(mean_t w_t), its accuracy, the "always wrong" accuracy,
the AUC of the policy's own summed and mean log-probability, and the mean ω+ on correct / ω- on
wrong tokens (`oreal.algorithm.token_weights`). Also: seconds per forward+backward of the policy on
one RL-sized batch, and seconds to sample it. One markdown row per run is appended to --table.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import learning  # noqa: E402
import learning_task as lt  # noqa: E402
import torch  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from oreal.algorithm import reward_model_loss, token_weights  # noqa: E402
from oreal.algorithm.token_weights import sequence_logits  # noqa: E402
from oreal.spec.models import OptimizerSpec  # noqa: E402
from oreal.training.distributed import init_distributed  # noqa: E402
from oreal.training.engine import make_training_engine  # noqa: E402
from oreal.training.logprobs import collate, response_logprobs  # noqa: E402
from oreal.training.models import load_causal_lm  # noqa: E402
from oreal.training.reward_model import TokenRewardModel  # noqa: E402
from oreal.training.rm_fit import roc_auc as auc  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
HEADER = (
    "| size (hidden x layers, heads) | params | SFT val pass@1 (steps) | samples train/held-out | "
    "held-out correct | RM AUC held-out (train) | logp AUC sum / mean | RM acc vs always-wrong | "
    "mean ω+ correct / ω- wrong | s per RL batch fwd+bwd / sampling | probe time | command |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|"
)


@dataclass
class Sample:
    prompt: int
    prompt_ids: list[int]
    response_ids: list[int]
    logprobs: list[float]
    correct: bool


# ----------------------------------------------------------------------------- metrics


# ----------------------------------------------------------------------------- data


def sample_answers(
    model, tokenizer, prompts, samples: int, cfg: lt.TaskConfig, verifier, seed: int
) -> tuple[list[Sample], float]:
    """K answers per prompt at temperature 1; returns the samples and seconds per 256 samples."""
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    gens = lt.generate(
        model,
        tokenizer,
        [p.problem for p in prompts],
        samples=samples,
        greedy=False,
        max_new_tokens=cfg.max_new_tokens,
    )
    per_256 = (time.perf_counter() - t0) / (len(prompts) * samples) * 256
    flat = [(i, p, g) for i, (p, group) in enumerate(zip(prompts, gens, strict=True)) for g in group]
    verdicts = verifier.verify_batch([(p.gold, g.response_text, g.truncated) for _, p, g in flat])
    out = [
        Sample(i, g.prompt_token_ids, g.response_token_ids, g.logprobs, v.correct)
        for (i, _, g), v in zip(flat, verdicts, strict=True)
    ]
    return out, per_256


def split_by_prompt(
    samples: list[Sample], held_fraction: float, seed: int
) -> tuple[list[Sample], list[Sample]]:
    prompts = sorted({s.prompt for s in samples})
    random.Random(seed).shuffle(prompts)
    held = set(prompts[: round(held_fraction * len(prompts))])
    return [s for s in samples if s.prompt not in held], [s for s in samples if s.prompt in held]


# ----------------------------------------------------------------------------- reward model


def rm_scores(rm, batch: list[Sample]) -> tuple[torch.Tensor, torch.Tensor]:
    tb = collate([s.prompt_ids for s in batch], [s.response_ids for s in batch], torch.device("cpu"))
    return rm(input_ids=tb.input_ids, response_index=tb.response_index), tb.response_mask


@torch.no_grad()
def evaluate_rm(rm, data: list[Sample], batch_size: int = 256) -> dict[str, float]:
    """Sequence logits, AUC, accuracy and mean token weights of the reward model on `data`."""
    rm.eval()
    logits: list[float] = []
    pos_sum = pos_n = neg_sum = neg_n = 0.0
    for start in range(0, len(data), batch_size):
        chunk = data[start : start + batch_size]
        scores, mask = rm_scores(rm, chunk)
        logits += sequence_logits(scores, mask).tolist()
        pos_w, neg_w = token_weights(scores, mask)
        is_pos = torch.tensor([s.correct for s in chunk])[:, None] & mask.bool()
        is_neg = ~torch.tensor([s.correct for s in chunk])[:, None] & mask.bool()
        pos_sum += float(pos_w[is_pos].sum())
        pos_n += float(is_pos.sum())
        neg_sum += float(neg_w[is_neg].sum())
        neg_n += float(is_neg.sum())
    rm.train()
    labels = [s.correct for s in data]
    return {
        "auc": auc(logits, labels),
        "accuracy": statistics.fmean((x > 0) == y for x, y in zip(logits, labels, strict=True)),
        "omega_pos": pos_sum / max(pos_n, 1),
        "omega_neg": neg_sum / max(neg_n, 1),
    }


def train_rm(
    policy_path: Path,
    train: list[Sample],
    held: list[Sample],
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
) -> tuple[TokenRewardModel, list[dict[str, float]]]:
    """The trainer's reward model and optimiser; one engine step per mini-batch, `epochs` passes."""
    torch.manual_seed(seed)
    rm = TokenRewardModel.from_pretrained(policy_path, torch.float32, torch.device("cpu"))
    rm.train()
    engine = make_training_engine(
        rm,
        OptimizerSpec(lr=lr, min_lr=lr, weight_decay=0.0),
        init_distributed(torch.device("cpu")),
        backend="torch",
        zero_stage=0,
        compute_dtype=torch.float32,
    )
    rng = random.Random(seed)
    history = []
    for epoch in range(epochs):
        order = list(train)
        rng.shuffle(order)
        losses = []
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            scores, mask = rm_scores(engine, chunk)
            rewards = torch.tensor([1.0 if s.correct else -1.0 for s in chunk])
            loss, _ = reward_model_loss(scores, mask, rewards, float(len(chunk)))
            engine.backward(loss, last=True)
            engine.step(lr)
            losses.append(loss.item())
        tr, ho = evaluate_rm(rm, train), evaluate_rm(rm, held)
        history.append({"epoch": epoch + 1, "loss": statistics.fmean(losses), "train": tr, "held": ho})
        print(
            f"  epoch {epoch + 1}: loss {statistics.fmean(losses):.3f}  train AUC {tr['auc']:.3f}  "
            f"held-out AUC {ho['auc']:.3f} acc {ho['accuracy']:.3f}  "
            f"ω+ {ho['omega_pos']:.3f} ω- {ho['omega_neg']:.3f}",
            flush=True,
        )
    return rm, history


# ----------------------------------------------------------------------------- cost


def policy_fwd_bwd_seconds(policy_path: Path, batch: list[Sample], repeats: int = 3) -> float:
    """Median seconds of log π forward + backward on `batch` (one RL step's policy pass, 1 micro-batch)."""
    policy = load_causal_lm(policy_path, torch.float32, torch.device("cpu"))
    policy.train()
    times = []
    for _ in range(repeats):
        tb = collate([s.prompt_ids for s in batch], [s.response_ids for s in batch], torch.device("cpu"))
        t0 = time.perf_counter()
        logp = response_logprobs(policy, tb)
        (-(logp * tb.response_mask).sum() / tb.response_mask.sum()).backward()
        times.append(time.perf_counter() - t0)
        policy.zero_grad(set_to_none=True)
    return statistics.median(times)


# ----------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", choices=lt.KINDS, default=lt.TaskConfig.kind, help="chain or sort")
    ap.add_argument(
        "--digits", type=int, nargs=2, metavar=("MIN", "MAX"), help="sort task: digits per prompt"
    )
    ap.add_argument("--hidden-size", type=int, default=lt.TaskConfig.hidden_size)
    ap.add_argument("--layers", type=int, default=lt.TaskConfig.layers)
    ap.add_argument("--heads", type=int, default=lt.TaskConfig.heads)
    ap.add_argument(
        "--sft-target", type=float, default=lt.SFTConfig.target, help="stop SFT at this val pass@1"
    )
    ap.add_argument("--sft-check-every", type=int, default=lt.SFTConfig.check_every)
    ap.add_argument("--sft-lr", type=float, default=lt.SFTConfig.lr)
    ap.add_argument("--prompts", type=int, default=400, help="P prompts sampled")
    ap.add_argument("--samples", type=int, default=8, help="K answers per prompt (temperature 1)")
    ap.add_argument("--held-out", type=float, default=0.25, help="fraction of PROMPTS held out")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--lr", type=float, default=1.2e-3, help="reward-model lr (learning.py's default)")
    ap.add_argument("--batch-size", type=int, default=64, help="reward-model mini-batch (sequences)")
    ap.add_argument("--rl-batch", type=int, default=256, help="samples in the timed RL batch")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", type=Path, default=RESULTS / "cache", help="SFT cache (learning.py's)")
    ap.add_argument("--table", type=Path, default=RESULTS / "diag-scale" / "probe.md")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    from oreal.verifier import Verifier

    t0 = time.time()
    task = replace(
        lt.TaskConfig(), kind=args.task, hidden_size=args.hidden_size, layers=args.layers, heads=args.heads
    )
    if args.digits:
        task = replace(task, min_digits=args.digits[0], max_digits=args.digits[1])
    sft = replace(lt.SFTConfig(), target=args.sft_target, check_every=args.sft_check_every, lr=args.sft_lr)
    cfg = replace(learning.BenchConfig(), task=task, sft=sft)
    test = learning.held_out(cfg)
    exclude = frozenset(p.problem for p in test)
    with Verifier(timeout_seconds=5.0, workers=1) as verifier:
        sft_path = learning.sft_checkpoint(cfg, args.cache, exclude, verifier)
        info = json.loads((sft_path / "info.json").read_text())
        print(f"SFT checkpoint {sft_path}: {info}", flush=True)
        policy = load_causal_lm(sft_path, torch.float32, torch.device("cpu"))
        tokenizer = AutoTokenizer.from_pretrained(str(sft_path))
        params = sum(p.numel() for p in policy.parameters())
        prompts = lt.problem_set(seed=4242 + args.seed, n=args.prompts, cfg=task, exclude=exclude)
        samples, sample_s = sample_answers(
            policy, tokenizer, prompts, args.samples, task, verifier, args.seed
        )
    samples = [s for s in samples if s.response_ids]  # the trainer's BCE skips empty responses
    train, held = split_by_prompt(samples, args.held_out, args.seed)
    print(
        f"{params} params; {len(samples)} samples, pass rate {statistics.fmean(s.correct for s in samples):.3f}; "
        f"train {len(train)} / held-out {len(held)}; sampling {sample_s:.2f}s per 256 ({time.time() - t0:.0f}s)",
        flush=True,
    )

    labels = [s.correct for s in held]
    logp_sum = auc([sum(s.logprobs) for s in held], labels)
    logp_mean = auc([statistics.fmean(s.logprobs) for s in held], labels)
    always_wrong = 1 - statistics.fmean(labels)
    _, history = train_rm(sft_path, train, held, args.epochs, args.lr, args.batch_size, args.seed)
    last = history[-1]
    rl_batch = (samples * (args.rl_batch // len(samples) + 1))[: args.rl_batch]
    fwd_bwd = policy_fwd_bwd_seconds(sft_path, rl_batch)
    wall = time.time() - t0
    ho, tr = last["held"], last["train"]
    command = "python benchmarks/reward_model_probe.py " + " ".join(
        shlex.quote(a) for a in (argv or sys.argv[1:])
    )
    row = (
        f"| {args.hidden_size} x {args.layers}, {args.heads} | {params / 1e6:.2f}M "
        f"| {info['validation_pass_at_1']:.2f} ({info['steps']}) | {len(train)}/{len(held)} "
        f"| {statistics.fmean(labels):.2f} | {ho['auc']:.3f} ({tr['auc']:.3f}) | {logp_sum:.3f} / {logp_mean:.3f} "
        f"| {ho['accuracy']:.3f} vs {always_wrong:.3f} | {ho['omega_pos']:.3f} / {ho['omega_neg']:.3f} "
        f"| {fwd_bwd:.2f} / {sample_s:.2f} | {wall / 60:.1f} min | `{command}` |"
    )
    print("\nheld-out AUC per epoch: " + ", ".join(f"{h['held']['auc']:.3f}" for h in history))
    print(HEADER + "\n" + row)
    args.table.parent.mkdir(parents=True, exist_ok=True)
    if not args.table.is_file():
        args.table.write_text(
            "# Reward-model probe at several tiny-model sizes (benchmarks/reward_model_probe.py)\n\n"
            "One row per run; AUC/accuracy/ω± after the last epoch on prompts never trained on; "
            "timings on 1 CPU thread.\n\n" + HEADER + "\n"
        )
    with args.table.open("a") as f:
        f.write(row + "\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    raise SystemExit(main())
