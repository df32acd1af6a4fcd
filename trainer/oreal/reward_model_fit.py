"""`oreal reward-model fit`: train the token-level reward model offline on verified trajectories.

    oreal reward-model fit --policy models/sft --data s3://team-rl/runs/rl/sft-samples/ --out models/sft-rm
    oreal reward-model fit --policy models/sft --data scored.jsonl --out models/sft-rm --epochs 3

DATA is a run bucket (its committed steps: rollouts joined with verdicts; `--steps 0:40` picks some)
or a JSONL file of scored samples (see `oreal.training.rm_fit.read_jsonl`). The output folder is a
reward model (backbone, reward_head.safetensors, the policy's tokenizer files, reward_model.json
with the held-out AUC) that `spec.model.tokenRewardModel` can name: the trainer then starts from it
instead of a zero-head copy of the policy. An interrupted fit resumes when run again with the same
arguments (`--restart` starts over).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    group = subparsers.add_parser(
        "reward-model",
        help="the token-level reward model: fit it offline",
        description=__doc__.splitlines()[0],
    )
    commands = group.add_subparsers(dest="reward_model_command", metavar="COMMAND", required=True)
    p = commands.add_parser(
        "fit",
        help="fit the token-level reward model on verified trajectories",
        description=__doc__.splitlines()[0],
    )
    p.add_argument(
        "--policy", type=Path, required=True, help="the policy the reward model will serve (HF folder)"
    )
    p.add_argument("--data", required=True, help="run bucket URI or path, or a JSONL file of scored samples")
    p.add_argument("--out", type=Path, required=True, help="output folder (spec.model.tokenRewardModel)")
    p.add_argument(
        "--init",
        type=Path,
        default=None,
        help="start from this reward model (default: the policy, zero head)",
    )
    p.add_argument("--steps", default=None, help="bucket steps to read, as FIRST:END (END excluded)")
    p.add_argument("--endpoint", default=None, help="S3-compatible endpoint of the bucket")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--lr", type=float, default=2e-6, help="peak learning rate (cosine to lr/5)")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--batch-size", type=int, default=64, help="sequences per optimiser step")
    p.add_argument("--micro-batch-size", type=int, default=None, help="sequences per forward pass")
    p.add_argument("--held-out", type=float, default=0.1, help="share of prompts held out for the AUC")
    p.add_argument(
        "--balance",
        choices=("pairs", "none"),
        default="pairs",
        help="pairs: per prompt as many correct as wrong answers, as OREAL's filter feeds it (default)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-every", type=int, default=200, help="optimiser steps between resumable states")
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--restart", action="store_true", help="ignore a saved state or a finished fit in --out")
    p.set_defaults(func=main)


def _steps(text: str | None) -> range | None:
    if text is None:
        return None
    first, _, end = text.partition(":")
    try:
        return range(int(first or 0), int(end) if end else 1 << 62)
    except ValueError:
        raise SystemExit(f"oreal reward-model fit: --steps must be FIRST:END, got {text!r}") from None


def main(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: idle threads sleep on a shared CPU
    import torch
    from transformers import AutoTokenizer

    from oreal.training import rm_fit

    cfg = rm_fit.FitConfig(
        epochs=args.epochs,
        lr=args.lr,
        weight_decay=args.weight_decay,
        batch_size=args.batch_size,
        micro_batch_size=args.micro_batch_size,
        held_out=args.held_out,
        balance=args.balance,
        seed=args.seed,
        save_every=args.save_every,
    )
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        if not (args.policy / "config.json").is_file():
            raise rm_fit.FitError(f"--policy {args.policy}: not a model folder (no config.json)")
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(args.policy))
        except (OSError, ValueError) as err:
            raise rm_fit.FitError(f"--policy {args.policy}: no usable tokenizer ({err})") from None
        if args.data.endswith((".jsonl", ".json")):
            samples = rm_fit.read_jsonl(Path(args.data), tokenizer)
        else:
            samples = rm_fit.read_bucket(args.data, _steps(args.steps), args.endpoint)
        vocab = int(getattr(_config(args.policy), "vocab_size", len(tokenizer)))
        rm_fit.check_tokenizer(samples, tokenizer, vocab, args.data)
        with _Progress() as bar:
            summary = rm_fit.fit(
                args.policy,
                samples,
                args.out,
                cfg,
                init=args.init,
                device=device,
                restart=args.restart,
                progress=bar.update,
                source=args.data,
            )
    except rm_fit.FitError as err:
        print(f"oreal reward-model fit: {err}", file=sys.stderr)
        return 1
    held = summary.get("held_out", {})
    again = " (already fitted; --restart fits again)" if summary.get("already_fitted") else ""
    print(
        f"reward model in {args.out}{again}: {summary['train_samples']} training samples, "
        f"held-out AUC {held.get('auc', float('nan')):.3f}, accuracy {held.get('accuracy', float('nan')):.3f} "
        f"on {summary['held_out_samples']}"
    )
    return 0


def _config(policy: Path):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(str(policy))


class _Progress:
    """A rich progress bar on a terminal; otherwise one line per epoch (logs, CI)."""

    def __enter__(self) -> _Progress:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar, self.held = None, ""
        if sys.stderr.isatty():
            self.bar = Progress(
                TextColumn("fit"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[note]}"),
                TimeRemainingColumn(),
                console=Console(stderr=True),  # the terminal it checked; stdout keeps the summary line
                transient=False,
            )
            self.bar.__enter__()
            self.task = self.bar.add_task("fit", total=None, note="")
        return self

    def update(self, done: int, total: int, info: dict) -> None:
        if "held_out/auc" in info:
            self.held = f" held-out AUC {info['held_out/auc']:.3f} after epoch {info['epoch']}"
        note = f"epoch {info['epoch']} loss {info['loss']:.4f}{self.held}"
        if self.bar is None and "held_out/auc" in info:
            print(f"step {done}/{total}: {note}", file=sys.stderr, flush=True)
        if self.bar is not None:
            self.bar.update(self.task, completed=done, total=total, note=note)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)
