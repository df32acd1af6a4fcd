"""Diagnostics of the learning benchmark: token weights the spec does not offer, the reward model's
held-out quality during a run, and the offline reward-model fit (the "fair start").

- `DiagnosticTrainer` replaces ω± for one micro-batch (`OREALTrainer.select_token_weights`):
  `pos1` (ω+ ≡ 1, the reward model's ω- on negatives), `neg1` (ω- ≡ 1), `fixed` (ω± constant, e.g.
  at the means a full run measured) and `oracle` (ω+ = 1; ω- = 1 from the first token that leaves the
  gold worked solution on, 0 before). These are diagnostics, not user options: the first three only
  isolate which part of the weights costs what, and oracle weights need the gold solution.
- `probe_metrics` scores a fixed held-out set of SFT samples with the run's reward model: AUC of
  σ(mean_t w_t), ω+ / ω- by quarter of the response, and ω- before / from the first error.
- `offline_reward_model` samples ~10k answers of the SFT policy, writes them as a JSONL of scored
  samples and fits the reward model with `oreal reward-model fit` (the user-facing command).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import learning_task as lt
import torch

from oreal.algorithm import token_weights
from oreal.training import OREALTrainer
from oreal.training.logprobs import collate
from oreal.training.rm_fit import roc_auc

WEIGHT_MODES = ("pos1", "neg1", "fixed", "oracle")
QUARTERS = 4


class DiagnosticTrainer(OREALTrainer):
    """OREALTrainer whose ω± come from `mode` instead of (or besides) the reward model."""

    def __init__(self, *args, mode: str, fixed=(1.0, 1.0), gold: dict | None = None, **kwargs) -> None:
        if mode not in WEIGHT_MODES:
            raise ValueError(f"unknown weight mode {mode!r}")
        super().__init__(*args, **kwargs)
        self.mode, self.fixed, self.gold = mode, fixed, gold or {}

    def select_token_weights(self, chunk, scores, mask):
        pos, neg = super().select_token_weights(chunk, scores, mask)
        ones = mask.to(pos.dtype)
        if self.mode == "pos1":
            return ones, neg
        if self.mode == "neg1":
            return pos, ones
        if self.mode == "fixed":
            return ones * self.fixed[0], ones * self.fixed[1]
        return ones, oracle_negative_weights(chunk, self.gold, mask)


def oracle_negative_weights(chunk, gold: dict, mask: torch.Tensor) -> torch.Tensor:
    """1 from each row's first error on (its response vs the gold token ids of its prompt), 0 before."""
    out = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
    for row, k in enumerate(chunk):
        target = gold.get(tuple(k.prompt_ids))
        if target is None or not k.response_ids:
            continue  # padding rows of a rank with fewer micro-batches
        out[row, lt.first_error(list(k.response_ids), target) :] = 1.0
    return out * mask.to(out.dtype)


def gold_ids(tokenizer, problems, task: lt.TaskConfig) -> dict[tuple[int, ...], list[int]]:
    """prompt token ids -> token ids of the gold worked solution + eos."""
    return {
        tuple(lt.encode_prompt(tokenizer, p)): tokenizer(
            lt.worked_solution(p, task), add_special_tokens=False
        )["input_ids"]
        + [tokenizer.eos_token_id]
        for p in problems
    }


# ----------------------------------------------------------------------------- scored SFT samples


def scored_samples(policy, tokenizer, prompts, samples: int, task, top_p: float, verifier, seed: int):
    """`samples` answers per prompt (T = 1, nucleus top_p), verified: a list of JSON-ready dicts."""
    torch.manual_seed(seed)
    rows = []
    for start in range(0, len(prompts), 64):
        chunk = prompts[start : start + 64]
        gens = lt.generate(
            policy,
            tokenizer,
            [p.problem for p in chunk],
            samples=samples,
            greedy=False,
            max_new_tokens=task.max_new_tokens,
            top_p=top_p,
        )
        flat = [(p, g) for p, group in zip(chunk, gens, strict=True) for g in group]
        verdicts = verifier.verify_batch([(p.gold, g.response_text, g.truncated) for p, g in flat])
        rows += [
            {
                "prompt_id": p.prompt_id,
                "problem": p.problem,
                "prompt_token_ids": g.prompt_token_ids,
                "response_token_ids": g.response_token_ids,
                "response_text": g.response_text,
                "correct": bool(v.correct),
            }
            for (p, g), v in zip(flat, verdicts, strict=True)
        ]
    return rows


def gold_rows(tokenizer, prompts, task) -> list[dict]:
    """Each prompt's gold worked solution as a correct scored sample (the smoke test's only correct ones)."""
    rows = []
    for p in prompts:
        text = lt.worked_solution(p.problem, task)
        rows.append(
            {
                "prompt_id": p.prompt_id,
                "problem": p.problem,
                "prompt_token_ids": lt.encode_prompt(tokenizer, p.problem),
                "response_token_ids": tokenizer(text, add_special_tokens=False)["input_ids"]
                + [tokenizer.eos_token_id],
                "response_text": text,
                "correct": True,
            }
        )
    return rows


def cached_samples(path: Path, make) -> list[dict]:
    if path.is_file():
        return [json.loads(line) for line in path.read_text().splitlines() if line]
    rows = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tmp.rename(path)
    return rows


def offline_reward_model(
    sft_path: Path, rows: list[dict], cache: Path, fit_args: list[str], log=print
) -> Path:
    """Fit the reward model on `rows` with `oreal reward-model fit` (cached by data + arguments)."""
    from oreal.cli import main as oreal_main

    key = hashlib.sha256(json.dumps([str(sft_path), len(rows), fit_args]).encode()).hexdigest()[:12]
    data = cache / f"rm-data-{key}.jsonl"
    out = cache / f"rm-{key}"
    if not (out / "reward_model.json").is_file():
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
        argv = ["reward-model", "fit", "--policy", str(sft_path), "--data", str(data), "--out", str(out)]
        log(f"oreal {' '.join(argv + fit_args)}")
        if oreal_main(argv + fit_args + ["--device", "cpu"]) != 0:
            raise RuntimeError("oreal reward-model fit failed")
    return out


# ----------------------------------------------------------------------------- held-out probe


@torch.no_grad()
def probe_metrics(trainer: OREALTrainer, rows: list[dict], gold: dict, batch: int = 256) -> dict[str, float]:
    """The run's reward model on fixed held-out SFT samples (see the module docstring)."""
    rm = trainer.reward_model.module
    alg = trainer.algorithm
    was_training = rm.training
    rm.eval()
    seq, labels = [], []
    sums: dict[str, list[float]] = {}

    def add(name: str, values: torch.Tensor) -> None:
        acc = sums.setdefault(name, [0.0, 0.0])
        acc[0] += float(values.sum())
        acc[1] += values.numel()

    for start in range(0, len(rows), batch):
        chunk = rows[start : start + batch]
        tb = collate([r["prompt_token_ids"] for r in chunk], [r["response_token_ids"] for r in chunk], "cpu")
        scores = rm(input_ids=tb.input_ids, response_index=tb.response_index)
        mask = tb.response_mask
        m = mask.float()
        seq += ((scores * m).sum(-1) / m.sum(-1).clamp(min=1)).tolist()
        labels += [r["correct"] for r in chunk]
        pos, neg = token_weights(scores, mask, alg.token_weighting, alg.topk_ratio)
        for row, r in enumerate(chunk):
            n = int(mask[row].sum())
            if n == 0:
                continue
            w = (pos if r["correct"] else neg)[row, :n]
            side = "pos" if r["correct"] else "neg"
            for q in range(QUARTERS):
                part = w[q * n // QUARTERS : (q + 1) * n // QUARTERS]
                if part.numel():
                    add(f"omega_{side}/q{q + 1}", part)
            add(f"omega_{side}", w)
            if not r["correct"]:
                target = gold.get(tuple(r["prompt_token_ids"]))
                e = lt.first_error(r["response_token_ids"], target) if target else n
                if e > 0:
                    add("omega_neg/before_error", w[:e])
                if e < n:
                    add("omega_neg/from_error", w[e:])
    rm.train(was_training)
    out = {"auc": roc_auc(seq, labels)}
    out |= {name: s / max(c, 1) for name, (s, c) in sums.items()}
    return out
