"""Fitting the token-level reward model offline on verified trajectories (`oreal reward-model fit`).

The model, its loss and its optimiser are the trainer's (`TokenRewardModel`, `reward_model_loss`:
BCE(σ(mean_t w_t), max(r, 0)), the torch engine's AdamW with gradient clipping), so a fitted folder is
what the trainer would have after as many reward-model steps, and `spec.model.tokenRewardModel` can
name it. Samples come from a run bucket's committed steps (rollouts joined with verdicts) or a JSONL
file of scored samples; they are split into train and held-out by prompt, and the held-out AUC of the
sequence score σ(mean_t w_t) is reported after every epoch.

Resume: OUT/.fit-state holds the model, the optimiser state and the position in the data (saved
every `save_every` optimiser steps and at each epoch's end); a second run with the same data and
settings continues from it. The finished folder has `reward_model.json` (written last).
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from oreal.algorithm import reward_model_loss
from oreal.algorithm.token_weights import sequence_logits
from oreal.jsonl import JSONLError, json_objects
from oreal.spec.models import OptimizerSpec
from oreal.training.distributed import DistInfo
from oreal.training.engine import make_training_engine
from oreal.training.logprobs import collate
from oreal.training.models import copy_tokenizer_files
from oreal.training.reward_model import TokenRewardModel, vocabulary_mismatch
from oreal.trajectory import ScoredSample

STATE_DIR = ".fit-state"
SUMMARY_FILE = "reward_model.json"


class FitError(Exception):
    """A problem with the inputs, said in one line (the CLI prints it and exits 1)."""


@dataclass(frozen=True)
class FitSample:
    prompt_ids: list[int]
    response_ids: list[int]
    correct: bool
    group: str  # the prompt: the train/held-out split and the pair balancing go by it
    response_text: str | None = None  # when known: checked against the tokenizer


@dataclass(frozen=True)
class FitConfig:
    epochs: int = 2
    lr: float = 2e-6  # the spec's default reward-model lr
    min_lr: float | None = None  # default lr / 5, as the spec's default reward-model optimiser
    weight_decay: float = 0.01
    batch_size: int = 64  # sequences per optimiser step
    micro_batch_size: int | None = None  # sequences per forward/backward (default: batch_size)
    held_out: float = 0.1  # share of prompts kept for the AUC
    balance: str = "pairs"  # pairs: per prompt as many correct as wrong answers (OREAL's filter); none
    seed: int = 0
    save_every: int = 200  # optimiser steps between resumable states


# ----------------------------------------------------------------------------- reading samples


def from_scored(samples: Sequence[ScoredSample]) -> list[FitSample]:
    return [
        FitSample(
            prompt_ids=list(s.sample.prompt_token_ids),
            response_ids=list(s.sample.response_token_ids),
            correct=s.verdict.correct,
            group=f"{s.sample.step}/{s.sample.prompt_id}",
            response_text=s.sample.response_text,
        )
        for s in samples
    ]


def read_bucket(uri: str, steps: range | None = None, endpoint: str | None = None) -> list[FitSample]:
    """Every committed step of a run bucket (or those in `steps`): rollouts joined with verdicts."""
    from oreal.bucket import Bucket, BucketError
    from oreal.trajectory import join_verdicts

    try:
        bucket = Bucket.open(uri, endpoint=endpoint)
        committed = [s for s in bucket.committed_steps("verdicts") if steps is None or s in steps]
        out: list[FitSample] = []
        for step in committed:
            if bucket.rollouts_committed(step):
                out += from_scored(join_verdicts(bucket.read_rollouts(step), bucket.read_verdicts(step)))
    except (BucketError, OSError, ValueError) as err:
        raise FitError(f"{uri}: {err}") from None
    if not out:
        raise FitError(f"{uri}: no committed step with rollouts and verdicts")
    return out


def read_jsonl(path: Path, tokenizer) -> list[FitSample]:
    """One scored sample per line: prompt_token_ids + response_token_ids, or prompt + response texts
    (tokenized with the policy's tokenizer: the prompt with its special tokens, the response followed
    by eos unless "truncated"); the outcome in "correct" (bool) or "reward" (> 0 is correct); the
    prompt id in "prompt_id" (default: the prompt). "response_text" is checked when given."""
    out: list[FitSample] = []
    try:
        with path.open("rb") as handle:
            rows = list(json_objects(handle))
    except OSError as err:
        raise FitError(f"{path}: {err.strerror or err}") from None
    except JSONLError as err:
        raise FitError(f"{path} {err}") from None
    for n, row in rows:
        try:
            correct = bool(row["correct"]) if "correct" in row else float(row["reward"]) > 0
            if "response_token_ids" in row:
                prompt_ids = [int(t) for t in row["prompt_token_ids"]]
                response_ids = [int(t) for t in row["response_token_ids"]]
                text = row.get("response_text", row.get("response"))
            else:
                prompt_ids = list(tokenizer(row["prompt"])["input_ids"])
                response_ids = list(tokenizer(row["response"], add_special_tokens=False)["input_ids"])
                if not row.get("truncated") and tokenizer.eos_token_id is not None:
                    response_ids.append(tokenizer.eos_token_id)
                text = None
            group = str(row.get("prompt_id", row.get("prompt", prompt_ids)))
        except (ValueError, KeyError, TypeError) as err:
            what = f"missing field {err}" if isinstance(err, KeyError) else str(err)
            raise FitError(f"{path} line {n}: not a scored sample ({what})") from None
        if not prompt_ids:
            raise FitError(f"{path} line {n}: empty prompt")
        out.append(FitSample(prompt_ids, response_ids, correct, group, text))
    if not out:
        raise FitError(f"{path}: no samples")
    return out


def check_tokenizer(samples: Sequence[FitSample], tokenizer, vocab_size: int, source: str) -> None:
    """Refuse samples whose token ids another tokenizer made: ids beyond the vocabulary, or (where the
    text is known) ids that do not decode to their text for most of the first 64 samples."""
    top = max((max(s.prompt_ids + s.response_ids, default=0) for s in samples), default=0)
    if top >= vocab_size:
        raise FitError(
            f"{source}: token id {top} is beyond the policy's vocabulary ({vocab_size} tokens): "
            "the samples come from another tokenizer"
        )
    checked = [s for s in samples if s.response_text is not None][:64]
    if not checked:
        return
    differ = sum(
        tokenizer.decode(s.response_ids, skip_special_tokens=True).strip() != s.response_text.strip()
        for s in checked
    )
    if differ * 2 > len(checked):
        raise FitError(
            f"{source}: {differ} of {len(checked)} responses do not decode to their text with the "
            "policy's tokenizer: the samples come from another tokenizer"
        )


# ----------------------------------------------------------------------------- data preparation


def balance_pairs(samples: Sequence[FitSample], seed: int) -> list[FitSample]:
    """Per prompt, min(correct, wrong) of each, drawn at random: the classes OREAL's filter gives the
    reward model during RL (prompts whose answers are all correct or all wrong drop out)."""
    rng = random.Random(seed)
    groups: dict[str, list[FitSample]] = {}
    for s in samples:
        groups.setdefault(s.group, []).append(s)
    out = []
    for members in groups.values():
        right = [s for s in members if s.correct]
        wrong = [s for s in members if not s.correct]
        k = min(len(right), len(wrong))
        out += rng.sample(right, k) + rng.sample(wrong, k)
    return out


def split_by_prompt(
    samples: Sequence[FitSample], held_out: float, seed: int
) -> tuple[list[FitSample], list[FitSample]]:
    """(train, held-out): a prompt's samples all land on the same side (a hash of seed and prompt)."""

    def side(group: str) -> float:
        digest = hashlib.sha256(f"{seed}/{group}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    train = [s for s in samples if side(s.group) >= held_out]
    test = [s for s in samples if side(s.group) < held_out]
    return train, test


def roc_auc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """P(a random positive scores above a random negative), ties counting 1/2; NaN without both."""
    pos = sum(labels)
    neg = len(labels) - pos
    if pos == 0 or neg == 0:
        return float("nan")
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    rank_sum, i = 0.0, 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        mid = (i + j) / 2 + 1  # the average 1-based rank of the tied block
        rank_sum += mid * sum(labels[order[k]] for k in range(i, j + 1))
        i = j + 1
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)


def fingerprint(samples: Sequence[FitSample]) -> str:
    h = hashlib.sha256()
    for s in samples:
        h.update(json.dumps([s.prompt_ids, s.response_ids, s.correct, s.group]).encode())
    return h.hexdigest()[:16]


def model_shape(config) -> dict[str, object]:
    keys = ("model_type", "hidden_size", "num_hidden_layers", "vocab_size")
    return {k: getattr(config, k, None) for k in keys}


# ----------------------------------------------------------------------------- evaluation


@torch.no_grad()
def sequence_scores(model: TokenRewardModel, samples: Sequence[FitSample], batch: int) -> list[float]:
    """σ(mean_t w_t) per sample: the reward model's probability that the answer is correct."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out: list[float] = []
    for i in range(0, len(samples), batch):
        chunk = samples[i : i + batch]
        tb = collate([s.prompt_ids for s in chunk], [s.response_ids for s in chunk], device)
        scores = model(input_ids=tb.input_ids, response_index=tb.response_index)
        out += torch.sigmoid(sequence_logits(scores, tb.response_mask)).tolist()
    model.train(was_training)
    return out


def evaluate(model: TokenRewardModel, samples: Sequence[FitSample], batch: int) -> dict[str, float]:
    """Held-out AUC, accuracy (threshold 0.5) and the share of correct answers."""
    if not samples:
        return {}
    probs = sequence_scores(model, samples, batch)
    labels = [s.correct for s in samples]
    acc = sum((p > 0.5) == y for p, y in zip(probs, labels, strict=True)) / len(samples)
    return {"auc": roc_auc(probs, labels), "accuracy": acc, "correct_share": sum(labels) / len(labels)}


# ----------------------------------------------------------------------------- fitting


def _save_state(out: Path, engine, state: dict) -> None:
    tmp = out / (STATE_DIR + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    engine.module.save_pretrained(tmp / "model")
    engine.save_optimizer(tmp / "optimizer")
    (tmp / "state.json").write_text(json.dumps(state, indent=1))
    shutil.rmtree(out / STATE_DIR, ignore_errors=True)
    tmp.rename(out / STATE_DIR)


def _resume_state(out: Path, expected: dict, restart: bool) -> dict | None:
    """The saved state when it belongs to this fit; a FitError when it belongs to another."""
    state_file = out / STATE_DIR / "state.json"
    if restart or not state_file.is_file():
        return None
    state = json.loads(state_file.read_text())
    if state["shape"] != expected["shape"]:
        raise FitError(
            f"{out / STATE_DIR}: a checkpoint of a model of another shape ({state['shape']}, this one "
            f"{expected['shape']}): pick another --out or pass --restart"
        )
    differ = sorted(k for k in ("data", "config") if state[k] != expected[k])
    if differ:
        raise FitError(
            f"{out / STATE_DIR}: a fit of other {' and '.join(differ)}: pick another --out or pass --restart"
        )
    return state


def fit(
    policy: Path,
    samples: Sequence[FitSample],
    out: Path,
    cfg: FitConfig,
    *,
    init: Path | None = None,
    device: str | torch.device = "cpu",
    restart: bool = False,
    progress: Callable[[int, int, dict], None] | None = None,
    source: str = "",
) -> dict:
    """Fit the reward model that starts from `init` (default: the policy, zero head) on `samples`;
    write it to `out` and return the summary that is also `out/reward_model.json`.

    `progress(done, total, info)` is called after every optimiser step (info: loss, epoch, and the
    held-out metrics after each epoch).
    """
    init = init or policy
    for folder, what in ((policy, "policy"), (init, "init")):
        if not (folder / "config.json").is_file():
            raise FitError(f"--{what} {folder}: not a model folder (no config.json)")
    if init != policy and (why := vocabulary_mismatch(policy, init)) is not None:
        raise FitError(f"--init {init}: {why}")
    device = torch.device(device)
    try:
        model = TokenRewardModel.from_pretrained(init, torch.float32, device)
    except ValueError as err:
        raise FitError(str(err)) from None
    chosen = balance_pairs(samples, cfg.seed) if cfg.balance == "pairs" else list(samples)
    train, test = split_by_prompt(chosen, cfg.held_out, cfg.seed)
    if not train or len({s.correct for s in train}) < 2:
        raise FitError(
            f"{source or 'the data'}: {len(train)} training samples after balancing and the split; "
            "the fit needs both correct and wrong answers"
        )
    opt = OptimizerSpec(
        lr=cfg.lr,
        min_lr=cfg.lr / 5 if cfg.min_lr is None else cfg.min_lr,
        weight_decay=cfg.weight_decay,
    )
    engine = make_training_engine(
        model, opt, DistInfo(0, 1, 0), backend="torch", zero_stage=0, compute_dtype=torch.float32
    )
    per_epoch = -(-len(train) // cfg.batch_size)
    total = per_epoch * cfg.epochs
    micro = cfg.micro_batch_size or cfg.batch_size
    settings = asdict(cfg) | {"save_every": None}  # how often state is saved does not change the fit
    expected = {"shape": model_shape(model.config), "data": fingerprint(samples), "config": settings}
    done = out / SUMMARY_FILE
    if done.is_file() and not restart:
        summary = json.loads(done.read_text())
        if summary.get("fingerprint") != expected:
            raise FitError(
                f"{out}: holds a reward model fitted on other data or settings: pick another --out or pass --restart"
            )
        return summary | {"already_fitted": True}
    state = _resume_state(out, expected, restart)
    step, history = 0, []
    out.mkdir(parents=True, exist_ok=True)
    done.unlink(missing_ok=True)  # an unfinished folder has no summary
    if state is not None:
        model.load_weights(out / STATE_DIR / "model")
        engine.load_optimizer(out / STATE_DIR / "optimizer")
        step, history = int(state["step"]), list(state["history"])
    model.train()
    while step < total:
        epoch, index = divmod(step, per_epoch)
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(cfg.seed * 1009 + epoch))
        batch = [train[i] for i in order[index * cfg.batch_size : (index + 1) * cfg.batch_size].tolist()]
        loss_sum = 0.0
        for start in range(0, len(batch), micro):
            chunk = batch[start : start + micro]
            tb = collate([s.prompt_ids for s in chunk], [s.response_ids for s in chunk], device)
            rewards = torch.tensor([1.0 if s.correct else -1.0 for s in chunk], device=device)
            scores = engine(input_ids=tb.input_ids, response_index=tb.response_index)
            scored = sum(1 for s in batch if s.response_ids)  # as the trainer counts (TokenCounts.sequences)
            loss, _ = reward_model_loss(scores, tb.response_mask, rewards, float(scored))
            engine.backward(loss, last=start + micro >= len(batch))
            loss_sum += float(loss.detach())
        engine.step(opt.lr_at(step, 0, total))
        step += 1
        info: dict = {"epoch": epoch + 1, "loss": loss_sum}
        if step % per_epoch == 0 or step == total:
            held = evaluate(model, test, micro)
            history.append({"epoch": epoch + 1, "step": step, "train_loss": loss_sum} | held)
            info |= {f"held_out/{k}": v for k, v in held.items()}
        if step % cfg.save_every == 0 or step % per_epoch == 0 or step == total:
            _save_state(out, engine, expected | {"step": step, "history": history})
        if progress is not None:
            progress(step, total, info)
    model.save_pretrained(out)
    copy_tokenizer_files(policy, out)
    summary = {
        "policy": str(policy),
        "init": str(init),
        "source": source,
        "samples": len(samples),
        "train_samples": len(train),
        "held_out_samples": len(test),
        "steps": total,
        "config": asdict(cfg),
        "held_out": history[-1] if history else {},
        "history": history,
        "fingerprint": expected,
    }
    done.write_text(json.dumps(summary, indent=1))
    shutil.rmtree(out / STATE_DIR, ignore_errors=True)
    return summary
