"""Where do the token weights land? The reward model trained offline on OREAL-style balanced data.

    python benchmarks/results/sort/prefix_weights.py --task sort --digits 4 6 --sft-target 0.35 \\
        --sft-check-every 25 [--prompts 2000] [--epochs 6]

SFT checkpoint as learning.py builds it (same cache); K=8 answers per prompt at temperature 1; split
by prompt into train / held-out (25%); from each train prompt whose group is mixed, 1 correct + 1
wrong answer (OREAL's filter at keep_per_prompt 1), so the training data is balanced as in RL; the
reward model trained as reward_model_probe.py does. On the held-out answers: the first token where
a wrong answer leaves the gold worked solution splits it into a correct prefix and the rest; we
report mean ω- on the correct prefix vs from the first error on, mean ω+ (and ω-) on correct
answers, and the AUC of the prompt length alone (an answer-blind difficulty score).
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
from dataclasses import replace
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(BENCH))

import learning  # noqa: E402
import learning_task as lt  # noqa: E402
import reward_model_probe as probe  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from oreal.algorithm import token_weights  # noqa: E402
from oreal.training.models import load_causal_lm  # noqa: E402


def gold_solution(problem: str, gold: str, cfg: lt.TaskConfig) -> str:
    """The worked solution of `problem` (the SFT target)."""
    if cfg.kind == "sort":
        return ",".join(gold) + f". {lt.BOXED}{gold}}}"
    values = [int(v) for v in re.findall(r"\d+", problem)]
    ops = re.findall(r"[+-]", problem)
    steps, total = [], values[0]
    for op, v in zip(ops, values[1:], strict=True):
        new = total + v if op == "+" else total - v
        steps.append(f"{total}{op}{v}={new}")
        total = new
    return ", ".join(steps) + f". {lt.BOXED}{total}}}"


def balanced(train: list[probe.Sample], seed: int) -> list[probe.Sample]:
    """1 correct + 1 wrong per mixed group, as OREAL's filter keeps them."""
    rng = random.Random(seed)
    out = []
    for p in sorted({s.prompt for s in train}):
        group = [s for s in train if s.prompt == p]
        good = [s for s in group if s.correct]
        bad = [s for s in group if not s.correct]
        if good and bad:
            out += [rng.choice(good), rng.choice(bad)]
    return out


@torch.no_grad()
def weights_by_region(rm, held, solutions: dict[int, list[int]]) -> dict[str, float]:
    sums = {"w+ correct": [], "w- wrong prefix": [], "w- wrong from error": [], "w- correct": []}
    rm.eval()
    for start in range(0, len(held), 256):
        chunk = held[start : start + 256]
        scores, mask = probe.rm_scores(rm, chunk)
        pos, neg = token_weights(scores, mask)
        for row, s in enumerate(chunk):
            n = len(s.response_ids)
            if s.correct:
                sums["w+ correct"] += pos[row, :n].tolist()
                sums["w- correct"] += neg[row, :n].tolist()
                continue
            ref = solutions[s.prompt]
            pairs = zip(s.response_ids, ref, strict=False)
            err = next((i for i, (a, b) in enumerate(pairs) if a != b), min(n, len(ref)))
            sums["w- wrong prefix"] += neg[row, :err].tolist()
            sums["w- wrong from error"] += neg[row, err:n].tolist()
    return {k: statistics.fmean(v) if v else float("nan") for k, v in sums.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", choices=lt.KINDS, default="chain")
    ap.add_argument("--digits", type=int, nargs=2)
    ap.add_argument("--sft-target", type=float, default=lt.SFTConfig.target)
    ap.add_argument("--sft-check-every", type=int, default=lt.SFTConfig.check_every)
    ap.add_argument("--prompts", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--lr", type=float, default=1.2e-3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from oreal.verifier import Verifier

    task = replace(lt.TaskConfig(), kind=args.task)
    if args.digits:
        task = replace(task, min_digits=args.digits[0], max_digits=args.digits[1])
    sft = replace(lt.SFTConfig(), target=args.sft_target, check_every=args.sft_check_every)
    cfg = replace(learning.BenchConfig(), task=task, sft=sft)
    exclude = frozenset(p.problem for p in learning.held_out(cfg))
    with Verifier(timeout_seconds=5.0, workers=1) as verifier:
        path = learning.sft_checkpoint(cfg, BENCH / "results" / "cache", exclude, verifier)
        policy = load_causal_lm(path, torch.float32, torch.device("cpu"))
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        prompts = lt.problem_set(seed=4242 + args.seed, n=args.prompts, cfg=task, exclude=exclude)
        samples, _ = probe.sample_answers(policy, tokenizer, prompts, 8, task, verifier, args.seed)
    samples = [s for s in samples if s.response_ids]
    solutions = {
        i: tokenizer(gold_solution(p.problem, p.gold, task), add_special_tokens=False)["input_ids"]
        + [tokenizer.eos_token_id]
        for i, p in enumerate(prompts)
    }
    train, held = probe.split_by_prompt(samples, 0.25, args.seed)
    train = balanced(train, args.seed)
    print(f"{path.name}: train {len(train)} balanced samples, held-out {len(held)}", flush=True)
    rm, history = probe.train_rm(path, train, held, args.epochs, args.lr, 64, args.seed)
    region = weights_by_region(rm, held, solutions)
    # a prompt-only baseline: fewer prompt tokens = easier (no look at the answer at all)
    length_auc = probe.auc([-len(s.prompt_ids) for s in held], [s.correct for s in held])
    print(f"held-out AUC of the prompt length alone: {length_auc:.3f}")
    print(
        f"held-out AUC {history[-1]['held']['auc']:.3f}; "
        + "; ".join(f"{k} {v:.3f}" for k, v in region.items())
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
